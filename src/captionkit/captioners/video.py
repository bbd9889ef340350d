"""One description for a video or GIF from its frames: captions in time order, near-repeats dropped."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

_WORDS = re.compile(r"[^\w\s]")


def _norm(text: str) -> str:
    return " ".join(_WORDS.sub(" ", text.lower()).split())


def dedupe_captions(timed: Sequence[tuple[float, str]], similarity: float = 0.8) -> list[tuple[float, str]]:
    """Keep the first of each run of near-identical captions (and any caption seen before), in time order."""
    kept: list[tuple[float, str]] = []
    for time, caption in sorted(timed, key=lambda tc: tc[0]):
        norm = _norm(caption)
        if not norm:
            continue
        if any(_similar(norm, _norm(k), similarity) for _, k in kept):
            continue
        kept.append((time, caption.strip()))
    return kept


def _similar(a: str, b: str, threshold: float) -> bool:
    """Near-identical: same characters in the same order, or the same words in another order."""
    wa, wb = set(a.split()), set(b.split())
    jaccard = len(wa & wb) / len(wa | wb) if wa | wb else 1.0
    # Character similarity alone is too lenient: "mostly red and white" vs "mostly blue and white" differ in
    # the one word that matters, so it must be very high to count on its own.
    return jaccard >= threshold or difflib.SequenceMatcher(None, a, b).ratio() >= max(threshold, 0.92)


def describe_length(kind: str, duration: float | None) -> str:
    """ "A 12-second video", "A 3-second GIF", "A video" (unknown length)."""
    noun = "GIF" if kind == "gif" else "video"
    if not duration:
        return f"A {noun}"
    if duration < 90:
        return f"A {max(1, round(duration))}-second {noun}"
    minutes, seconds = divmod(round(duration), 60)
    return f"A {minutes}-minute {seconds}-second {noun}" if seconds else f"A {minutes}-minute {noun}"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def merge_frame_captions(timed: Sequence[tuple[float, str]], kind: str, duration: float | None) -> str:
    """``A 4-second video: at 0:00 a man on a beach; at 0:02 a dog running.`` (one scene: no time stamps)."""
    kept = dedupe_captions(timed)
    head = describe_length(kind, duration)
    if not kept:
        return head + "."
    if len(kept) == 1:
        return f"{head}: {_sentence_body(kept[0][1])}."
    scenes = "; ".join(f"at {clock(t)} {_sentence_body(c)}" for t, c in kept)
    return f"{head}: {scenes}."


def _sentence_body(caption: str) -> str:
    """Lower-case the first letter (unless it starts an acronym) and drop final punctuation, to join captions."""
    caption = caption.strip().rstrip(".!? ")
    if len(caption) > 1 and caption[0].isupper() and not caption[1].isupper():
        caption = caption[0].lower() + caption[1:]
    return caption
