"""From a writer's raw output to a post that can be published as it stands.

:func:`finish_post` runs the steps in order:

1. :func:`clean_text` strips what chat models leave around the answer: special tokens (``<|im_end|>``,
   ``<|eot_id|>``, ``</s>``), role prefixes (``assistant:``), preambles ("Sure! Here's a post:"), markdown
   fences and bold, wrapping quotes, "Hashtags:" labels, trailing notes ("Let me know if ..."), extra spaces.
2. :func:`normalise_tags` mends ``# tag`` and ``@ handle``, drops repeated hashtags, keeps at most the wanted
   number, and removes emoji when they are off. Trailing hashtags beyond the count are dropped; hashtags inside
   a sentence lose their ``#`` instead, so the sentence still reads.
3. For alt text, openers such as "Image of" go (screen readers already announce an image).
4. :func:`fit_length` trims an over-long post at a sentence or word boundary.
5. :func:`contradictions` flags prices, percentages, dates and times that disagree with the text visible in
   the media (OCR); a post with nothing left is flagged ``empty``.

The ``<mention>`` and ``<hyperlink>`` placeholders of the Adobe dataset pass through every step untouched.
Lengths are counted in code points, as :func:`is_too_long` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from captionkit.prompts.platforms import PlatformRules

ELLIPSIS = "…"


@dataclass
class Post:
    """A finished post: its text, its length in characters, what looks doubtful, and whether it was cut."""

    text: str
    chars: int
    flags: list[str] = field(default_factory=list)
    trimmed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "chars": self.chars, "flags": list(self.flags), "trimmed": self.trimmed}


# ------------------------------------------------------------------------------------------------ cleaning

# Where the answer starts when a model echoes its prompt: keep what follows the last of these.
_ANSWER_START = re.compile(
    r"<\|im_start\|>\s*assistant\b|<\|start_header_id\|>\s*assistant\s*<\|end_header_id\|>|<start_of_turn>\s*model\b"
    r"|\[/INST\]|^### Response:|<\|assistant\|>",
    re.IGNORECASE | re.MULTILINE,
)
# Where the answer ends: cut at the first of these.
_ANSWER_END = re.compile(
    r"<\|(?:im_end|eot_id|end_of_text|endoftext|end|eom_id|im_start|user|system)\|>|</s>|<end_of_turn>|<eos>"
    r"|\n###\s|\n(?:User|Human|USER|HUMAN):",
)
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z_]{1,30}\|>|</?s>|<pad>|<unk>|<bos>|<start_of_turn>|\[/?INST\]")
_FENCE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$\n?", re.MULTILINE)
_ROLE_PREFIX = re.compile(
    r"^(?:assistant|model|ai|bot|response|answer|output|post|tweet|caption|alt[ -]?text|social media caption)"
    r"[ \t]*:[ \t]*|^(?:assistant|model)[ \t]*\n",
    re.IGNORECASE,
)
_OK = r"(?:sure|certainly|of course|absolutely|okay|ok|alright|great|happy to help)"
_NOUN = r"(?:post|tweet|caption|alt[ -]?text|version|draft|option|suggestion|rewrite)"
_PREAMBLE = re.compile(
    rf"^(?:{_OK}\b[^\n:]{{0,40}}?[!.,]\s*)?(?:here(?:'s|’s| is| are| goes)|below is)\b[^\n:]{{0,100}}?\b{_NOUN}s?\b[^\n:]{{0,60}}:\s*",
    re.IGNORECASE,
)
# A first line that is only an acknowledgement ("Sure!", "Of course, here you go."), not "Of course we're open!".
_ACK_LINE = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|alright)\s*[!.,]?\s*"
    r"(?:(?:here(?:'s| is| you go)|happy to help|i can help|i'd be happy to|i'd love to)[^\n]{0,60})?\n(?=\s*\S)",
    re.IGNORECASE,
)
_TRAILING_NOTE = re.compile(  # assistant talk after the post; narrow, so that a real closing line survives
    r"\n+\s*(?:\(?\s*\*?\s*note\s*:|\(?\s*character count|\(\s*\d+\s*(?:characters|chars)\b"
    r"|let me know if\b|i hope (?:this|that|it) (?:helps|works|fits|meets)|feel free to (?:adjust|modify|edit|change|tweak)"
    r"|(?:this|the) (?:post|tweet|caption)\b[^\n]{0,40}\b\d+\s*characters)[^\n]*(?:\n[^\n]*)*$",
    re.IGNORECASE,
)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.DOTALL)
_TAG_LABEL_LINE = re.compile(r"^[ \t]*(?:hashtags?|tags)[ \t]*:[ \t]*", re.IGNORECASE | re.MULTILINE)
_TAG_LABEL_INLINE = re.compile(r"\b(?:hashtags?|tags)[ \t]*:[ \t]*(?=#)", re.IGNORECASE)
_TAG_LABEL_END = re.compile(r"\s*\b(?:hashtags?|tags)[ \t]*:[ \t]*$", re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "「": "」", "”": "”"}
_QUOTED_THEN_TAGS = re.compile(r'^(["“])([^"“”]+)(["”])((?:\s+#\w+)+)$')


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] not in _QUOTES or text[-1] != _QUOTES[text[0]]:
        if found := _QUOTED_THEN_TAGS.match(text):  # "Great day!" #sun -> Great day! #sun
            return found.group(2).strip() + found.group(4)
        return text
    open_, close, inner = text[0], text[-1], text[1:-1]
    if open_ == "'":
        inner_check = re.sub(r"(?<=\w)'(?=\w)", "", inner)  # apostrophes (it's) are not quotes
    else:
        inner_check = inner
    if open_ in inner_check or close in inner_check:
        return text  # '"A" and "B"': quotes inside, not around
    return inner.strip()


def _tidy_whitespace(text: str) -> str:
    lines = [re.sub(r"[ \t\u00a0\u2009\u202f]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean_text(raw: str) -> str:
    """The post inside a model's raw output (see the module docstring); placeholders are kept as they are."""
    text = str(raw or "").replace("\r\n", "\n").replace("\r", "\n")
    starts = list(_ANSWER_START.finditer(text))
    if starts:
        text = text[starts[-1].end():]
    text = text.lstrip()
    while end := _ANSWER_END.match(text):  # an end token before anything else: drop it, keep looking
        text = text[end.end():].lstrip()
    if end := _ANSWER_END.search(text):
        text = text[: end.start()]
    text = _SPECIAL_TOKEN.sub("", text)
    text = _FENCE.sub("", text)
    text = _BOLD.sub(r"\1", text)
    for _ in range(4):  # prefixes, preambles and quotes nest: 'Sure! Here is a post: "..."'
        before = text
        text = _tidy_whitespace(text)
        text = _ROLE_PREFIX.sub("", text, count=1)
        text = _ACK_LINE.sub("", text, count=1)
        text = _PREAMBLE.sub("", text, count=1)
        text = _TRAILING_NOTE.sub("", text)
        text = _unquote(text.strip())
        if text == before:
            break
    text = _TAG_LABEL_LINE.sub("", text)
    text = _TAG_LABEL_INLINE.sub("", text)
    text = _TAG_LABEL_END.sub("", text)
    return _tidy_whitespace(text)


# ------------------------------------------------------------------------------------ hashtags and emoji

# A hashtag: '#' not inside a word, URL or entity, then word characters with at least one letter (#1 is no tag).
HASHTAG = re.compile(r"(?<![\w#&/])#(?=\w*[^\W\d])\w+")  # '#' not inside a word, URL or entity, then a word with a letter
_HASHTAG = HASHTAG
_SPACED_HASH = re.compile(r"(?<![\w#&/])#[ \t]+(?=[^\W\d_])")
_MULTI_HASH = re.compile(r"(?<![\w#&/])#{2,}(?=[^\W\d_])")
_MULTI_AT = re.compile(r"(?<![\w@])@{2,}(?=\w)")
_TAG_GAP = re.compile(r"[\s,;·|]*")  # between the tags of a trailing block
_TAG_END = re.compile(r"[\s.,!?;·|]*")  # after the block's last tag
# Emoji and pictographs, their joiners, variation selectors, keycaps and flag tags. (c), (R) and TM stay.
_EMOJI = re.compile(
    "[ \t]*(?:[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\U000E0020-\U000E007F"
    "\u3030\u303D\u3297\u3299\u200D\uFE0F\u20E3])+"
)


def strip_emoji(text: str) -> str:
    return _tidy_whitespace(_EMOJI.sub("", text))


def _wanted(rules: PlatformRules, context: dict[str, Any] | None) -> tuple[int, bool]:
    context = context or {}
    count = context.get("hashtags")
    count = rules.hashtags if count is None else int(count)
    emoji = context.get("emoji")
    emoji = rules.emoji if emoji is None else bool(emoji)
    return (count if rules.allow_hashtags else 0), (emoji and rules.allow_emoji)


def _limit_hashtags(text: str, keep: int) -> str:
    matches = list(_HASHTAG.finditer(text))
    if not matches:
        return text
    # Tags followed only by other tags and separators form the trailing block: extras there are dropped.
    trailing = [False] * len(matches)
    tail_end = len(text)
    for i in range(len(matches) - 1, -1, -1):
        gap = _TAG_END if tail_end == len(text) else _TAG_GAP
        if not gap.fullmatch(text, matches[i].end(), tail_end):
            break
        trailing[i], tail_end = True, matches[i].start()
    seen: set[str] = set()
    edits: list[tuple[int, int, str]] = []
    for i, m in enumerate(matches):
        key = m.group().casefold()
        if key not in seen and len(seen) < keep:
            seen.add(key)
            continue
        if trailing[i]:
            start = m.start()
            while start > 0 and text[start - 1] in " \t":
                start -= 1
            edits.append((start, m.end(), ""))
        else:
            edits.append((m.start(), m.start() + 1, ""))  # inside a sentence: keep the word, lose the '#'
    for start, end, new in reversed(edits):
        text = text[:start] + new + text[end:]
    text = re.sub(r"[ \t]+[,;·|]+[ \t]*$", "", text, flags=re.MULTILINE)  # separators left after dropped tags
    return _tidy_whitespace(text)


def normalise_tags(text: str, rules: PlatformRules, context: dict[str, Any] | None = None) -> str:
    """Hashtags, mentions and emoji as the platform and settings want them.

    The wanted count and emoji switch come from ``context["hashtags"]`` / ``context["emoji"]`` (as
    :func:`~captionkit.prompts.compose.build_context` sets them), else from ``rules``; a platform that disallows
    hashtags or emoji gets none whatever the context says. ``@ handle`` is mended only for the post's own handle
    (``context["handle"]``), since "meet us @ the store" is not a mention.
    """
    count, emoji = _wanted(rules, context)
    text = _MULTI_HASH.sub("#", _SPACED_HASH.sub("#", text))
    text = _MULTI_AT.sub("@", text)
    handle = str((context or {}).get("handle") or "").lstrip("@")
    if handle:
        text = re.sub(rf"(?<![\w@])@[ \t]+(?={re.escape(handle)}\b)", "@", text, flags=re.IGNORECASE)
    if not emoji:
        text = strip_emoji(text)  # first, so that a tag followed by an emoji still counts as trailing
    return _limit_hashtags(text, count)


_ALT_OPENER = re.compile(
    r"^(?:(?:this|the|an?)\s+)?(?:image|picture|photo|photograph|pic|screenshot|graphic)\s+"
    r"(?:of|shows|showing|depicts|depicting|features|featuring|with)\s+|^(?:here|there)\s+is\s+(?:an?\s+)?"
    r"(?:image|picture|photo)\s+of\s+",
    re.IGNORECASE,
)


def strip_alt_opener(text: str) -> str:
    """``"Image of a red bike"`` -> ``"A red bike"``: screen readers already say it is an image."""
    stripped = _ALT_OPENER.sub("", text, count=1)
    if stripped != text and stripped:
        stripped = stripped[0].upper() + stripped[1:]
    return stripped


# ------------------------------------------------------------------------------------------------ length

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_LAST_TOKEN = re.compile(r"\S+$")
_CUT_PUNCT = ",;:-–—/&+|"
_LONE_SYMBOLS = re.compile(r"(?:(?:^|\s+)[#@&+/|\-–—]+)+$")


def is_too_long(text: str, rules: PlatformRules) -> bool:
    """True when ``text`` has more characters (code points) than the platform allows."""
    return rules.max_chars is not None and len(text) > rules.max_chars


def _ends_sentence(prefix: str) -> bool:
    return bool(re.search(r"[.!?…][\"'”’)\]]*$", prefix))


def _is_tag_like(token: str) -> bool:
    token = token.rstrip(".,!?;:")
    return token.startswith(("#", "@", "<", "http://", "https://")) and len(token) > 1


def fit_length(text: str, max_chars: int | None) -> tuple[str, bool]:
    """``(text, False)`` if it fits, else ``(shorter, True)``: a prefix of ``text`` cut at a boundary.

    The cut is at the last sentence end that fits, if that keeps at least half the limit; else at the last
    word boundary, with trailing commas and dashes dropped and ``…`` appended when the cut is mid-sentence
    and the ellipsis fits. Never mid-word (a first word longer than the limit leaves ``""``), so hashtags,
    URLs and ``<placeholders>`` are never cut in half.
    """
    if max_chars is None or len(text) <= max_chars:
        return text, False
    if max_chars <= 0:
        return "", True
    best_sentence = ""
    for m in _SENTENCE_END.finditer(text):
        prefix = text[: m.end()].rstrip()
        if len(prefix) > max_chars:
            break
        best_sentence = prefix
    if best_sentence and len(best_sentence) * 2 >= max_chars:
        return best_sentence, True
    # Word boundaries: the end of every run of non-space characters, last first.
    ends = [m.end() for m in re.finditer(r"\S+", text[: max_chars + 1]) if m.end() <= max_chars]
    for end in reversed(ends):
        prefix, before = text[:end], None
        while prefix != before:  # "word, @ -" -> "word": no dangling '#', '@' or dash
            before, prefix = prefix, _LONE_SYMBOLS.sub("", prefix).rstrip(_CUT_PUNCT).rstrip()
        if not prefix:
            continue
        if _ends_sentence(prefix) or _is_tag_like(_LAST_TOKEN.search(prefix).group()):
            return prefix, True
        return (prefix + ELLIPSIS if len(prefix) < max_chars else prefix), True
    return best_sentence, True


# ---------------------------------------------------------------------------------------- contradictions

_CURRENCY = {
    "$": "$", "us$": "$", "usd": "$", "dollar": "$", "dollars": "$", "€": "€", "eur": "€", "euro": "€",
    "euros": "€", "£": "£", "gbp": "£", "pound": "£", "pounds": "£", "¥": "¥", "jpy": "¥", "yen": "¥",
    "₹": "₹", "rs": "₹", "rs.": "₹", "inr": "₹", "rupees": "₹", "a$": "A$", "aud": "A$", "c$": "C$", "cad": "C$",
}
_NUM = r"\d+(?:[.,]\d{3})*(?:[.,]\d{1,2})?"
_CUR_BEFORE = r"(?:US\$|A\$|C\$|\$|€|£|¥|₹|\bRs\.?|\bUSD|\bEUR|\bGBP|\bINR|\bJPY|\bAUD|\bCAD)"
_CUR_AFTER = r"(?:\$|€|£|¥|₹|USD\b|EUR\b|GBP\b|INR\b|JPY\b|AUD\b|CAD\b|dollars?\b|euros?\b|pounds?\b|rupees\b|yen\b)"
_PRICE = re.compile(rf"(?P<c1>{_CUR_BEFORE})\s?(?P<n1>{_NUM})\b|\b(?P<n2>{_NUM})\s?(?P<c2>{_CUR_AFTER})", re.IGNORECASE)
_PERCENT = re.compile(rf"\b(?P<n>{_NUM})\s?(?:%|percent\b|per cent\b)", re.IGNORECASE)
_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4,
    "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")
_DATE_NUMERIC = re.compile(r"\b(?P<a>\d{1,2})[/.](?P<b>\d{1,2})[/.](?P<y>\d{4}|\d{2})\b")
_DATE_DAY_MONTH = re.compile(
    rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>{_MONTH})\b\.?(?:,?\s+(?P<y>\d{{4}})\b)?", re.IGNORECASE
)
_DATE_MONTH_DAY = re.compile(
    rf"\b(?P<mon>{_MONTH})\b\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>\d{{4}})\b)?", re.IGNORECASE
)
_TIME_AMPM = re.compile(r"\b(?P<h>1[0-2]|0?[1-9])(?::(?P<mi>[0-5]\d))?\s?(?P<ap>[ap])\.?m\b\.?", re.IGNORECASE)
_TIME_24 = re.compile(r"\b(?P<h>[01]?\d|2[0-3]):(?P<mi>[0-5]\d)\b")


def _amount(number: str) -> float:
    if "," in number and "." in number:
        decimal = "," if number.rfind(",") > number.rfind(".") else "."
        number = number.replace("." if decimal == "," else ",", "").replace(decimal, ".")
    elif "," in number or "." in number:
        sep = "," if "," in number else "."
        parts = number.split(sep)
        number = "".join(parts) if len(parts[-1]) == 3 else "".join(parts[:-1]) + "." + parts[-1]
    return float(number)


def _valid(m: int, d: int) -> bool:
    return 1 <= m <= 12 and 1 <= d <= 31


def _year(y: str | None) -> int | None:
    if not y:
        return None
    year = int(y)
    return year + 2000 if year < 100 else year


Value = tuple[str, str, frozenset]  # (kind, as written, comparable readings)


def _values(text: str) -> list[Value]:
    """Prices, percentages, dates and times in ``text``; each span is read once, the most specific kind first."""
    found: list[tuple[int, int, Value]] = []

    def add(m: re.Match[str], kind: str, readings: Iterable[Any]) -> None:
        readings = frozenset(readings)
        if readings and not any(s < m.end() and m.start() < e for s, e, _ in found):
            found.append((m.start(), m.end(), (kind, m.group().strip(), readings)))

    for m in _DATE_ISO.finditer(text):
        add(m, "date", [(int(m["m"]), int(m["d"]), int(m["y"]))] if _valid(int(m["m"]), int(m["d"])) else [])
    for m in _DATE_NUMERIC.finditer(text):
        a, b, y = int(m["a"]), int(m["b"]), _year(m["y"])
        add(m, "date", [(mm, dd, y) for mm, dd in ((b, a), (a, b)) if _valid(mm, dd)])
    for pattern in (_DATE_DAY_MONTH, _DATE_MONTH_DAY):
        for m in pattern.finditer(text):
            mon, d = _MONTHS[m["mon"].lower()], int(m["d"])
            add(m, "date", [(mon, d, _year(m["y"]))] if _valid(mon, d) else [])
    for m in _TIME_AMPM.finditer(text):
        hour = int(m["h"]) % 12 + (12 if m["ap"].lower() == "p" else 0)
        add(m, "time", [hour * 60 + int(m["mi"] or 0)])
    for m in _TIME_24.finditer(text):
        add(m, "time", [int(m["h"]) * 60 + int(m["mi"])])
    for m in _PRICE.finditer(text):
        currency = _CURRENCY.get((m["c1"] or m["c2"]).lower())
        add(m, "price", [(currency, round(_amount(m["n1"] or m["n2"]), 2))])
    for m in _PERCENT.finditer(text):
        add(m, "percent", [round(_amount(m["n"]), 2)])
    return [value for _, _, value in sorted(found, key=lambda f: f[0])]


def _same_date(a: Any, b: Any) -> bool:
    return a[0] == b[0] and a[1] == b[1] and (a[2] is None or b[2] is None or a[2] == b[2])


def _agrees(kind: str, readings: frozenset, others: Iterable[frozenset]) -> bool:
    for other in others:
        if kind == "date" and any(_same_date(a, b) for a in readings for b in other):
            return True
        if kind != "date" and readings & other:
            return True
    return False


_LABELS = {"price": "price/percent", "percent": "price/percent", "date": "date", "time": "time"}


def contradictions(text: str, ocr_text: str | None, *, also: Sequence[str | None] = ()) -> list[str]:
    """Flags for prices, percentages, dates and times in ``text`` that the media's own text contradicts.

    A value is flagged only when ``ocr_text`` holds a value of the same kind (price, percent, date, time) and
    none of them agrees; values found in ``also`` (e.g. the call to action the user asked for) count as
    agreeing. No OCR text, no flags. Names are not checked: OCR misreads them too often to accuse a post.
    """
    if not text or not ocr_text or not ocr_text.strip():
        return []
    in_media: dict[str, list[Value]] = {}
    for value in _values(ocr_text):
        in_media.setdefault(value[0], []).append(value)
    supported = [v for source in also if source for v in _values(source)]
    flags: list[str] = []
    for kind, written, readings in _values(text):
        if kind not in in_media:
            continue
        known = [v[2] for v in in_media[kind]] + [v[2] for v in supported if v[0] == kind]
        if _agrees(kind, readings, known):
            continue
        says = ", ".join(dict.fromkeys(v[1] for v in in_media[kind]))
        flag = f"{_LABELS[kind]} {written!r} not in the text of the media (which says {says})"
        if flag not in flags:
            flags.append(flag)
    return flags


# ---------------------------------------------------------------------------------------------- together


def finish_post(raw: str, rules: PlatformRules, context: dict[str, Any] | None = None) -> Post:
    """clean -> normalise tags -> (alt text: drop "image of") -> fit length -> flags."""
    context = context or {}
    text = normalise_tags(clean_text(raw), rules, context)
    if rules.name == "alt-text":
        text = strip_alt_opener(" ".join(text.split()))  # one line: screen readers run lines together anyway
    text, trimmed = fit_length(text, rules.max_chars)
    # Values the user or the item supplied (a call to action, a spoken price, a price column) are not invented.
    meta = context.get("metadata") or {}
    also = [context.get("call_to_action"), context.get("transcript"),
            *(str(v) for v in meta.values() if isinstance(v, str | int | float) and not isinstance(v, bool))]
    flags = contradictions(text, context.get("ocr_text"), also=also)
    if not text.strip():
        flags.append("empty")
    return Post(text=text, chars=len(text), flags=flags, trimmed=trimmed)


__all__ = [
    "ELLIPSIS",
    "Post",
    "clean_text",
    "contradictions",
    "finish_post",
    "fit_length",
    "is_too_long",
    "normalise_tags",
    "strip_alt_opener",
    "strip_emoji",
]
