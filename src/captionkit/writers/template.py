"""The model-free writer: composes a post from the prompt's structured context, offline and deterministically.

It reads ``prompt.context`` (the model writers read the rendered system/user text instead):

* ``description`` (the caption), ``ocr_text`` (text visible in the media), ``transcript`` (speech);
* ``brand``, ``handle``, ``hashtags`` (how many), ``emoji`` (bool), ``call_to_action``, ``tone``;
* ``platform``: ``{"name": ..., "max_chars": ..., "allow_hashtags": ..., "allow_emoji": ...}`` as
  :class:`~captionkit.prompts.platforms.PlatformRules` gives it (a bare name string works too; a top-level
  ``max_chars`` is used when the platform has none).

``metadata`` and ``examples`` are accepted and not used: copying past posts' wording is a model's job.

A post is: an opener with the description's first sentence ("New from Acme: a red sneaker on a table."), the
visible text as a quoted tagline when it is short (else the transcript's first sentence, when short), the call
to action, the handle, and hashtags made from the description's most frequent non-stopwords (CamelCased).
Candidate ``i`` uses opener pattern ``i`` (cycling through four), so ``n`` candidates differ while every run
gives the same posts. To stay within ``max_chars`` the tagline, hashtags and emoji are dropped (in that order);
then the sentence is shortened at a word ("…") when the call to action and handle take at most half the room,
else those go too and the sentence is shortened last.

Alt text (platform ``alt-text``) is the plain description only: no opener, hashtags, handle, emoji or call to
action. Its variants are the full description, the description with the visible text ("Text in the image
reads: ..."), and the first sentence alone, as far as those differ.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from captionkit.models.options import GenerationOptions
from captionkit.writers.base import Prompt, register_writer

ALT_TEXT_PLATFORMS = {"alt-text", "alt_text", "alttext", "alt"}
TAGLINE_MAX = 60  # visible text / transcript quoted only when this short
EMOJI = ("✨", "👀", "📸", "🎉")
FORMAL_TONES = {"professional", "formal", "informative", "neutral", "corporate", "serious"}

# Openers: {brand} is the brand, {s} the sentence starting lower-case, {S} starting upper-case.
CASUAL = ("New from {brand}: {s}", "{S}", "Take a look: {s}", "Just in: {s}")
CASUAL_NO_BRAND = ("Just in: {s}", "{S}", "Take a look: {s}", "Spotted: {s}")
FORMAL = ("Introducing from {brand}: {s}", "{S}", "Featured: {s}", "A closer look: {s}")
FORMAL_NO_BRAND = ("Introducing: {s}", "{S}", "Featured: {s}", "A closer look: {s}")

# Words a caption starts with that read fine in lower case after an opener ("New from Acme: a dog ...").
LOWER_STARTS = {"a", "an", "the", "this", "these", "that", "those", "two", "three", "four", "five", "several",
                "some", "many", "close", "closeup", "people", "there", "it", "one"}
STOPWORDS = set("""
a about above after again against all also an and any are as at be been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers him his
how i if in into is it its itself just like me more most my no nor not now of off on once only or other our out
over own same she should so some such than that the their them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your yours
image images photo photos picture pictures shows showing shown show features featuring featured depicts
depicting view close closeup front back left right top bottom side background foreground there one two three
several some many next near onto into text reads reading visible appears seen looking look made
welcome today new get got make let lets us here
mostly mainly landscape portrait square second seconds minute minutes media video gif frame frames colour colours
""".split())


def _platform(context: dict[str, Any]) -> tuple[str, int | None]:
    platform = context.get("platform") or {}
    name = platform.lower() if isinstance(platform, str) else str(platform.get("name") or "").lower()
    limit = platform.get("max_chars") if isinstance(platform, dict) else None
    limit = limit if limit is not None else context.get("max_chars")
    return name, int(limit) if isinstance(limit, (int, float)) and limit > 0 else None


def _allowed(context: dict[str, Any], what: str) -> bool:
    """The platform's hard rule (``allow_hashtags`` / ``allow_emoji``), when the context carries it."""
    platform = context.get("platform")
    return not isinstance(platform, dict) or platform.get(f"allow_{what}", True) is not False


def _clean(text: Any) -> str:
    return " ".join(str(text).split()) if text else ""


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` without its final full stop ("" for no text)."""
    text = _clean(text)
    if not text:
        return ""
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence[:-1].rstrip() if sentence.endswith(".") else sentence


def _lower_start(sentence: str) -> str:
    word = sentence.split(" ", 1)[0]
    return sentence[0].lower() + sentence[1:] if word.lower() in LOWER_STARTS and word[:1].isupper() else sentence


def _upper_start(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _end(sentence: str) -> str:
    return sentence if sentence.endswith(("!", "?", ".", "…")) else sentence + "."


def hashtags(text: str, count: int, exclude: Sequence[str] = ()) -> list[str]:
    """``count`` hashtags from the most frequent non-stopwords of ``text`` (ties: first seen first), CamelCased."""
    if count <= 0:
        return []
    skip = {w.lower() for w in exclude}
    words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]+", text)]
    words = [w for w in words if len(w) >= 3 and w not in STOPWORDS and w not in skip]
    order = {w: i for i, w in reversed(list(enumerate(words)))}
    ranked = sorted(Counter(words).items(), key=lambda kv: (-kv[1], order[kv[0]]))
    return ["#" + word[:1].upper() + word[1:] for word, _ in ranked[:count]]


def _trim(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rstrip()
    if " " in cut[1:]:
        cut = cut[: cut.rfind(" ")].rstrip(" ,;:-—")
    return cut + "…" if limit >= 1 else ""


def _fit(parts: list[tuple[str, str]], limit: int | None) -> str:
    """Join (kind, text) parts with spaces, dropping optional kinds then trimming the core to fit ``limit``."""
    def joined(ps: list[tuple[str, str]]) -> str:
        return " ".join(text for _, text in ps if text)

    if limit is None or len(joined(parts)) <= limit:
        return joined(parts)
    for kind in ("tagline", "hashtag", "emoji", "handle", "cta"):
        if kind == "handle":  # a long sentence is shortened to keep the call to action and handle, if they are short
            rest = joined([p for p in parts if p[0] != "core"])
            core = joined([p for p in parts if p[0] == "core"])
            if core and rest and len(rest) + 1 <= limit // 2:
                return joined([("core", _trim(core, limit - len(rest) - 1)), ("rest", rest)])
        while any(k == kind for k, _ in parts) and len(joined(parts)) > limit:
            last = max(i for i, (k, _) in enumerate(parts) if k == kind)
            parts = parts[:last] + parts[last + 1:]
        if len(joined(parts)) <= limit:
            return joined(parts)
    return _trim(joined(parts), limit)


def alt_text_variants(context: dict[str, Any]) -> list[str]:
    description = _clean(context.get("description")) or _clean(context.get("ocr_text"))
    if not description:
        return [""]
    full = _end(_upper_start(description))
    variants = [full]
    ocr = _clean(context.get("ocr_text"))
    if ocr and ocr.lower() not in description.lower() and _clean(context.get("description")):
        variants.append(f'{full} Text in the image reads: "{ocr}".')
    variants.append(_end(_upper_start(first_sentence(description))))
    return list(dict.fromkeys(variants))


def compose(context: dict[str, Any], pattern: int = 0) -> str:
    """The post for ``context`` with opener pattern ``pattern`` (any int; cycles)."""
    name, limit = _platform(context)
    if name in ALT_TEXT_PLATFORMS:
        variants = alt_text_variants(context)
        return _fit([("core", variants[pattern % len(variants)])], limit)

    description = _clean(context.get("description"))
    ocr = _clean(context.get("ocr_text"))
    transcript = _clean(context.get("transcript"))
    brand = _clean(context.get("brand"))
    sentence = first_sentence(description) or first_sentence(ocr) or first_sentence(transcript)

    formal = str(context.get("tone") or "").lower() in FORMAL_TONES
    openers = (FORMAL if brand else FORMAL_NO_BRAND) if formal else (CASUAL if brand else CASUAL_NO_BRAND)
    opener = openers[pattern % len(openers)]
    if sentence:
        core = _end(opener.format(brand=brand, s=_lower_start(sentence), S=_upper_start(sentence)))
    else:
        core = f"New from {brand}." if brand else ""

    parts: list[tuple[str, str]] = [("core", core)]
    tagline = ocr if ocr and len(ocr) <= TAGLINE_MAX and ocr.lower() not in sentence.lower() else ""
    if not tagline and transcript:
        said = first_sentence(transcript)
        tagline = said if len(said) <= TAGLINE_MAX and said.lower() not in sentence.lower() else ""
    if tagline:
        parts.append(("tagline", f'"{tagline}"'))
    if context.get("emoji") and _allowed(context, "emoji"):
        parts.append(("emoji", EMOJI[pattern % len(EMOJI)]))
    if cta := _clean(context.get("call_to_action")):
        parts.append(("cta", _end(cta)))
    if handle := _clean(context.get("handle")):
        parts.append(("handle", handle if handle.startswith("@") else f"@{handle}"))
    count = context.get("hashtags")
    if count is None and isinstance(context.get("platform"), dict):
        count = context["platform"].get("hashtags")
    if _allowed(context, "hashtags"):
        source = description or ocr or transcript
        parts += [("hashtag", tag) for tag in hashtags(source, int(count or 0), exclude=brand.split())]
    return _fit(parts, limit)


@register_writer("template")
class TemplateWriter:
    """Fills a post pattern from the description and metadata; needs no model and no network."""

    backend = "template"

    def __init__(self, spec: str = "template", settings: Any = None) -> None:
        self.model_id = "template"

    def write(self, prompts: Sequence[Prompt], gen: GenerationOptions | None = None, n: int = 1) -> list[list[str]]:
        """``n`` candidates per prompt: opener patterns 0..n-1 (cycling), the same on every run."""
        return [[compose(p.context, i) for i in range(n)] for p in prompts]


__all__ = ["TemplateWriter", "alt_text_variants", "compose", "first_sentence", "hashtags"]
