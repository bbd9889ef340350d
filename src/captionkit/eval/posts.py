"""Checks on generated posts that need no reference: length, tags, OCR consistency, diversity, loops.

:func:`post_checks` takes one system's outputs, ``{id: [post, ...]}`` (several candidates per item, or one
string), and returns named figures over all its posts plus per-item values:

* ``over_limit``: share of posts longer than the platform's limit (code points, as
  :func:`captionkit.postprocess.is_too_long` counts); None for a platform without a limit.
* ``mean_chars``: mean length in characters.
* ``hashtags`` / ``mentions``: mean number per post (``@handle`` and the Adobe ``<mention>`` placeholder are
  mentions; hashtags follow the rule :mod:`captionkit.postprocess` uses: ``#`` then a word with a letter).
* ``ocr_contradictions``: share of posts that :func:`captionkit.postprocess.contradictions` flags against their
  item's OCR text, among posts whose item has OCR text; None when no item has any.
* ``distinct-1`` / ``distinct-2``: unique n-grams / all n-grams over every post of the system (Li et al., 2016).
* ``self-BLEU``: per item, the mean over its candidates of BLEU-4 of that candidate against the item's other
  candidates (add-one smoothing for 2- to 4-grams), in [0, 1]; the figure is the mean over items with at least
  two candidates, None when none has. High means the candidates say the same thing.
* ``repetition``: share of posts that repeat a phrase (:func:`repeated_phrase`): a phrase of 3 or more tokens
  occurring 3 or more times, or a phrase of any length said 3 or more times in a row ("the the the").

Aggregates are over posts (an item with five candidates weighs five times), except self-BLEU (over items).
Per-item values are the same figures over the item's own candidates; an item with no value for a figure
(no OCR text, fewer than two candidates, no n-grams) is left out of that figure's per-item dict.
Tokens, for distinct-n, self-BLEU and repetition: case-folded words (with their ``#``/``@``), placeholders
such as ``<mention>`` and emoji; punctuation is dropped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from captionkit.postprocess import HASHTAG, contradictions, is_too_long
from captionkit.prompts.platforms import PlatformRules, get_platform

OVER_LIMIT = "over_limit"
MEAN_CHARS = "mean_chars"
HASHTAGS = "hashtags"
MENTIONS = "mentions"
OCR_CONTRADICTIONS = "ocr_contradictions"
DISTINCT_1 = "distinct-1"
DISTINCT_2 = "distinct-2"
SELF_BLEU = "self-BLEU"
REPETITION = "repetition"
METRICS: tuple[str, ...] = (OVER_LIMIT, MEAN_CHARS, HASHTAGS, MENTIONS, OCR_CONTRADICTIONS, DISTINCT_1,
                            DISTINCT_2, SELF_BLEU, REPETITION)

_HASHTAG = HASHTAG  # the same rule the writer's post-processing applies
_MENTION = re.compile(r"(?<![\w@])@\w+|<mention>", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<\w+>")
_TOKEN = re.compile(
    r"<\w+>|[#@]?\w+(?:['’]\w+)*|[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF]", re.UNICODE
)
REPEAT_MIN_TOKENS = 3  # a repeated phrase must be at least this long ...
REPEAT_MIN_COUNT = 3  # ... and occur at least this often; a run of any phrase this many times is a loop too
BLEU_ORDER = 4


def tokens(text: str) -> list[str]:
    """Case-folded words (keeping ``#``/``@`` and apostrophes), ``<placeholders>`` and emoji, in order."""
    return _TOKEN.findall(str(text).casefold())


def _ngrams(toks: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]


# ------------------------------------------------------------------------------------------ repetition


def repeated_phrase(text: str) -> str | None:
    """The phrase a looping output repeats, or None.

    A post loops when a phrase of :data:`REPEAT_MIN_TOKENS` or more tokens occurs :data:`REPEAT_MIN_COUNT` or
    more times anywhere in it, or when a phrase of any length is said that many times in a row ("the the the",
    "so good so good so good"). Placeholders (``<mention> <mention> <mention>`` is how the Adobe data writes
    several mentions) never count as a repeat. Returns the phrase found (a run's unit, else the first
    :data:`REPEAT_MIN_TOKENS` tokens of the repeated phrase), tokens joined by spaces.
    """
    toks = tokens(text)
    # Each placeholder becomes a token of its own, so that runs of placeholders never match each other.
    toks = [f"\x00{i}" if _PLACEHOLDER.fullmatch(t) else t for i, t in enumerate(toks)]
    # Runs of a phrase shorter than REPEAT_MIN_TOKENS; a run of a longer phrase repeats its first
    # REPEAT_MIN_TOKENS tokens as often, which the count below finds.
    for n in range(1, REPEAT_MIN_TOKENS):
        for i in range(len(toks) - n * REPEAT_MIN_COUNT + 1):
            phrase = toks[i:i + n]
            if all(toks[i + k * n:i + (k + 1) * n] == phrase for k in range(1, REPEAT_MIN_COUNT)):
                return " ".join(phrase)
    # A phrase of REPEAT_MIN_TOKENS or more tokens occurring that often: so does its first REPEAT_MIN_TOKENS.
    counts = Counter(_ngrams(toks, REPEAT_MIN_TOKENS))
    for gram, count in counts.items():  # first occurrence order
        if count >= REPEAT_MIN_COUNT:
            return " ".join(gram)
    return None


# ------------------------------------------------------------------------------------------ BLEU-4


def sentence_bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], order: int = BLEU_ORDER) -> float:
    """Sentence BLEU of a token list against several (Papineni et al., 2002), in [0, 1].

    Clipped n-gram precisions for n = 1..order, geometric mean, brevity penalty against the closest
    reference length (shorter on ties). Precisions for n >= 2 get add-one smoothing (Lin & Och, 2004:
    ``(matches + 1) / (total + 1)``), so a short candidate without a shared 4-gram does not score 0. An empty
    hypothesis, or one with no unigram in common, scores 0.
    """
    if not hypothesis or not references:
        return 0.0
    log_sum = 0.0
    for n in range(1, order + 1):
        hyp = Counter(_ngrams(hypothesis, n))
        most: Counter = Counter()
        for ref in references:
            for gram, count in Counter(_ngrams(ref, n)).items():
                most[gram] = max(most[gram], count)
        matches = sum(min(count, most[gram]) for gram, count in hyp.items())
        total = sum(hyp.values())
        if n == 1:
            if matches == 0:
                return 0.0
            precision = matches / total
        else:
            precision = (matches + 1) / (total + 1)
        log_sum += math.log(precision) / order
    length = len(hypothesis)
    closest = min((abs(len(r) - length), len(r)) for r in references)[1]
    penalty = 1.0 if length > closest else math.exp(1 - closest / length) if closest else 1.0
    return penalty * math.exp(log_sum)


def self_bleu(candidates: Sequence[str]) -> float | None:
    """Mean BLEU-4 of each candidate against the others (see :func:`sentence_bleu`); None below two."""
    if len(candidates) < 2:
        return None
    toks = [tokens(c) for c in candidates]
    scores = [sentence_bleu(t, toks[:i] + toks[i + 1:]) for i, t in enumerate(toks)]
    return sum(scores) / len(scores)


# ------------------------------------------------------------------------------------------ distinct-n


def _distinct_counts(token_lists: Sequence[Sequence[str]], n: int) -> tuple[int, int]:
    grams = [g for toks in token_lists for g in _ngrams(toks, n)]
    return len(set(grams)), len(grams)


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique n-grams / all n-grams over ``texts`` (n-grams do not cross posts); None without any n-gram."""
    unique, total = _distinct_counts([tokens(t) for t in texts], n)
    return unique / total if total else None


# ------------------------------------------------------------------------------------------ together


def _candidates(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None]


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def post_checks(
    preds: Mapping[str, str | Sequence[str]],
    platform: str | PlatformRules = "x",
    ocr_text: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The post-quality figures of one system (see the module docstring for each).

    ``preds``: ``{id: [candidate, ...]}`` or ``{id: text}``; ``platform``: a preset name (``x``, ``instagram``,
    ...) or :class:`~captionkit.prompts.platforms.PlatformRules`, for the length limit; ``ocr_text``: the text
    read in each item's media, for the contradiction check.

    Returns ``{<metric>: figure or None for each of METRICS, "per_item": {<metric>: {id: value}},
    "posts": number of posts, "items": number of items, "platform": name, "max_chars": limit,
    "repeated": {id: [phrase or None per candidate]} for items with a looping candidate}``.
    """
    rules = platform if isinstance(platform, PlatformRules) else get_platform(platform)
    ocr_text = ocr_text or {}
    per_item: dict[str, dict[str, float]] = {name: {} for name in METRICS}
    over: list[bool] = []
    chars: list[int] = []
    tags: list[int] = []
    mentions: list[int] = []
    contradicted: list[bool] = []
    looping: list[bool] = []
    item_bleus: list[float] = []
    all_tokens: list[list[str]] = []
    repeated: dict[str, list[str | None]] = {}
    posts = 0
    for item, value in preds.items():
        cands = _candidates(value)
        if not cands:
            continue
        posts += len(cands)
        toks = [tokens(c) for c in cands]
        all_tokens.extend(toks)
        item_over = [is_too_long(c, rules) for c in cands]
        item_chars = [len(c) for c in cands]
        item_tags = [len(_HASHTAG.findall(c)) for c in cands]
        item_mentions = [len(_MENTION.findall(c)) for c in cands]
        phrases = [repeated_phrase(c) for c in cands]
        if rules.max_chars is not None:
            over += item_over
            per_item[OVER_LIMIT][item] = sum(item_over) / len(cands)
        chars += item_chars
        tags += item_tags
        mentions += item_mentions
        looping += [p is not None for p in phrases]
        per_item[MEAN_CHARS][item] = sum(item_chars) / len(cands)
        per_item[HASHTAGS][item] = sum(item_tags) / len(cands)
        per_item[MENTIONS][item] = sum(item_mentions) / len(cands)
        per_item[REPETITION][item] = sum(p is not None for p in phrases) / len(cands)
        if any(phrases):
            repeated[item] = phrases
        ocr = ocr_text.get(item)
        if ocr and str(ocr).strip():
            flagged = [bool(contradictions(c, str(ocr))) for c in cands]
            contradicted += flagged
            per_item[OCR_CONTRADICTIONS][item] = sum(flagged) / len(cands)
        for n, name in ((1, DISTINCT_1), (2, DISTINCT_2)):
            unique, total = _distinct_counts(toks, n)
            if total:
                per_item[name][item] = unique / total
        score = self_bleu(cands)
        if score is not None:
            item_bleus.append(score)
            per_item[SELF_BLEU][item] = score
    d1_unique, d1_total = _distinct_counts(all_tokens, 1)
    d2_unique, d2_total = _distinct_counts(all_tokens, 2)
    return {
        OVER_LIMIT: _share(over),
        MEAN_CHARS: _mean(chars),
        HASHTAGS: _mean(tags),
        MENTIONS: _mean(mentions),
        OCR_CONTRADICTIONS: _share(contradicted),
        DISTINCT_1: d1_unique / d1_total if d1_total else None,
        DISTINCT_2: d2_unique / d2_total if d2_total else None,
        SELF_BLEU: _mean(item_bleus),
        REPETITION: _share(looping),
        "per_item": per_item,
        "posts": posts,
        "items": sum(1 for v in preds.values() if _candidates(v)),
        "platform": rules.name,
        "max_chars": rules.max_chars,
        "repeated": repeated,
    }


__all__ = [
    "DISTINCT_1", "DISTINCT_2", "HASHTAGS", "MEAN_CHARS", "MENTIONS", "METRICS", "OCR_CONTRADICTIONS", "OVER_LIMIT",
    "REPETITION", "SELF_BLEU", "distinct_n", "post_checks", "repeated_phrase", "self_bleu", "sentence_bleu",
    "tokens",
]
