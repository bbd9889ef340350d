"""The OCR contract: result records, the engine protocol and registry, and the post-processing every
engine shares (noise filtering, reading order, de-duplication across the frames of a video).

Engines live one per file in this package and register themselves with :func:`register_ocr`;
:func:`load_ocr` builds one per (name, settings) per process and hands the same object back afterwards.
"""

from __future__ import annotations

import difflib
import importlib
import math
import re
import statistics
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from captionkit.errors import ConfigError
from captionkit.models.settings import OCRSettings

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels; x1/y1 exclusive


# --------------------------------------------------------------------------------------------
# Records


@dataclass
class OCRWord:
    """One word of a line, for engines that report words (tesseract)."""

    text: str
    confidence: float
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": round(float(self.confidence), 4), "box": list(self.box)}


@dataclass
class OCRLine:
    """One line of text: what it says, how sure the engine is (0..1) and where it is (axis-aligned box)."""

    text: str
    confidence: float
    box: Box
    words: list[OCRWord] | None = None

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    def to_dict(self, words: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "confidence": round(float(self.confidence), 4), "box": list(self.box)}
        if words and self.words is not None:
            out["words"] = [w.to_dict() for w in self.words]
        return out


@dataclass
class OCRResult:
    """The text read from one image (or merged from a video's frames): lines in reading order."""

    text: str
    lines: list[OCRLine]
    engine: str

    @classmethod
    def from_lines(cls, lines: Sequence[OCRLine], engine: str) -> OCRResult:
        """A result whose ``text`` is ``lines`` joined with newlines (lines are used as given)."""
        return cls(text="\n".join(line.text for line in lines), lines=list(lines), engine=engine)

    @property
    def empty(self) -> bool:
        return not self.lines

    def to_dict(self, words: bool = False) -> dict[str, Any]:
        return {"text": self.text, "lines": [line.to_dict(words) for line in self.lines], "engine": self.engine}


# --------------------------------------------------------------------------------------------
# Engines


@runtime_checkable
class OCREngine(Protocol):
    """Reads the visible text of images. Results are already filtered and in reading order."""

    name: str

    def read(self, image: Image.Image) -> OCRResult:
        """The text of one image."""

    def read_many(self, images: Sequence[Image.Image]) -> list[OCRResult]:
        """One result per image, in order."""


EngineFactory = Callable[[OCRSettings], OCREngine]
_ENGINES: dict[str, EngineFactory] = {}
_ENGINE_MODULES = ("rapid", "tesseract")  # built-in engines, imported on first use
_LOADED: dict[tuple[str, OCRSettings], OCREngine] = {}
_LOCK = threading.Lock()


def register_ocr(name: str) -> Callable[[EngineFactory], EngineFactory]:
    """Class decorator: make an engine available to ``--ocr NAME``; it is built as ``cls(settings)``."""

    def deco(factory: EngineFactory) -> EngineFactory:
        _ENGINES[name] = factory
        return factory

    return deco


def _load_engines() -> None:
    for module in _ENGINE_MODULES:
        importlib.import_module(f"captionkit.ocr.{module}")


def available_ocr() -> list[str]:
    """Names ``--ocr`` accepts (``none`` turns OCR off)."""
    _load_engines()
    return sorted(_ENGINES)


def load_ocr(name: str | None = None, settings: OCRSettings | None = None) -> OCREngine:
    """The engine ``name`` (default: ``settings.engine``) for ``settings``, built once per process."""
    settings = settings or OCRSettings()
    name = (name or settings.engine).strip().lower()
    _load_engines()
    if name not in _ENGINES:
        raise ConfigError(f"--ocr: unknown OCR engine {name!r}; known engines: {', '.join(available_ocr())}")
    if settings.engine != name:
        settings = replace(settings, engine=name)
    key = (name, settings)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _ENGINES[name](settings)
        return _LOADED[key]


@register_ocr("none")
class NoOCR:
    """``--ocr none``: reads nothing (the ``ocr`` stage skips work entirely with this engine)."""

    name = "none"

    def __init__(self, settings: OCRSettings | None = None) -> None:
        self.settings = settings

    def read(self, image: Image.Image) -> OCRResult:
        return OCRResult("", [], self.name)

    def read_many(self, images: Sequence[Image.Image]) -> list[OCRResult]:
        return [self.read(image) for image in images]


# --------------------------------------------------------------------------------------------
# Post-processing shared by the engines


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB, transparency flattened onto white (dark text on a transparent PNG stays readable)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def clamp_box(box: Iterable[float], width: int, height: int) -> Box:
    """Round a box outwards to whole pixels and keep it inside a ``width`` x ``height`` image."""
    x0, y0, x1, y1 = box
    return (
        max(0, min(width, math.floor(x0))),
        max(0, min(height, math.floor(y0))),
        max(0, min(width, math.ceil(x1))),
        max(0, min(height, math.ceil(y1))),
    )


def union_box(boxes: Iterable[Box]) -> Box:
    boxes = list(boxes)
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


LONE_CHAR_CONFIDENCE = 0.9  # a single character on its own must be read this surely to count


def is_noise(text: str) -> bool:
    """Obvious OCR noise: nothing left after stripping, or one or two symbols with no letter or digit."""
    text = text.strip()
    return not text or (len(text) <= 2 and not any(ch.isalnum() for ch in text))


def clean_lines(lines: Iterable[OCRLine], min_confidence: float = 0.0) -> list[OCRLine]:
    """Drop lines below ``min_confidence``, noise and degenerate boxes; tidy whitespace."""
    out = []
    for line in lines:
        text = " ".join(line.text.split())
        if line.confidence < min_confidence or is_noise(text) or line.width <= 0 or line.height <= 0:
            continue
        if len(text) == 1 and line.confidence < LONE_CHAR_CONFIDENCE:  # circles read as "O", bars as "I"
            continue
        out.append(line if text == line.text else replace(line, text=text))
    return out


def _overlap(a: Box, b: Box) -> float:
    """Vertical overlap of two boxes as a share of the shorter one's height."""
    inter = min(a[3], b[3]) - max(a[1], b[1])
    shorter = min(a[3] - a[1], b[3] - b[1])
    return inter / shorter if shorter > 0 else 0.0


def group_rows(lines: Sequence[OCRLine], min_overlap: float = 0.5) -> list[list[OCRLine]]:
    """Lines grouped into rows by vertical overlap, rows top to bottom, each row left to right.

    A line joins the row holding the box it overlaps most (by at least ``min_overlap`` of the shorter
    height). Comparing with every member, not the row's first box, lets a slightly skewed baseline
    drift along the row: each word overlaps its neighbour even where the first and last do not.
    """
    rows: list[list[OCRLine]] = []
    for line in sorted(lines, key=lambda ln: ((ln.box[1] + ln.box[3]) / 2, ln.box[0])):
        best, best_score = None, min_overlap
        for row in rows:
            score = max(_overlap(line.box, other.box) for other in row)
            if score >= best_score:
                best, best_score = row, score
        if best is None:
            rows.append([line])
        else:
            best.append(line)
    for row in rows:
        row.sort(key=lambda ln: ln.box[0])
    rows.sort(key=lambda row: statistics.fmean((ln.box[1] + ln.box[3]) / 2 for ln in row))
    return rows


def _gaps(row: Sequence[OCRLine], min_width: float) -> list[tuple[int, int]]:
    """Gaps of at least ``min_width`` between the boxes of one row (not its margins)."""
    out, right = [], None
    for line in sorted(row, key=lambda ln: ln.box[0]):
        if right is not None and line.box[0] - right >= min_width:
            out.append((right, line.box[0]))
        right = line.box[2] if right is None else max(right, line.box[2])
    return out


def _narrow(gap: tuple[int, int], row: Sequence[OCRLine], min_width: float) -> tuple[int, int] | None:
    """``gap`` less what ``row`` covers of it, if a row read as part of the same columns leaves enough of it.

    A row may narrow the gutter (ragged line ends) but not fill most of it: a title or footer centred over
    the gutter belongs to neither column.
    """
    lo, hi = gap
    for line in row:
        x0, x1 = line.box[0], line.box[2]
        if x1 <= lo or x0 >= hi:
            continue
        if x0 <= lo and x1 >= hi:
            return None
        if x0 - lo >= hi - x1:  # the box sits in the right part of the gap: the gap ends where it starts
            hi = x0
        else:
            lo = x1
    width = hi - lo
    return (lo, hi) if width >= max(min_width, 0.5 * (gap[1] - gap[0])) else None


def _column_split(rows: list[list[OCRLine]], gutter: float) -> tuple[int, int, float] | None:
    """A run of rows (start, end exclusive) and the x of a vertical gutter that splits it into columns.

    A row with text on both sides of a wide gap seeds the gutter; rows above and below join while the
    gutter stays (mostly) clear in them. The run counts when each side has text on two rows or more
    (a lone wide-spaced row, or one line beside a paragraph, reads better row by row).
    """
    for seed, row in enumerate(rows):
        for gap in _gaps(row, gutter):
            start, end = seed, seed + 1
            while start > 0 and (narrowed := _narrow(gap, rows[start - 1], gutter)):
                gap, start = narrowed, start - 1
            while end < len(rows) and (narrowed := _narrow(gap, rows[end], gutter)):
                gap, end = narrowed, end + 1
            x = (gap[0] + gap[1]) / 2
            left = sum(any(ln.box[2] <= x for ln in r) for r in rows[start:end])
            right = sum(any(ln.box[0] >= x for ln in r) for r in rows[start:end])
            if min(left, right) >= 2:
                return start, end, x
    return None


def reading_order(lines: Sequence[OCRLine]) -> list[OCRLine]:
    """Lines in the order a person reads them: rows top to bottom, left to right within a row.

    Where consecutive rows share a clear vertical gutter (about a line height wide or more) with text on
    both sides in two rows or more, that part is read as columns: the left column top to bottom, then the right one
    (recursively, so nested columns work). Full-width lines above or below the columns stay in place.
    """
    lines = list(lines)
    if len(lines) <= 1:
        return lines
    rows = group_rows(lines)
    if len(rows) < 2:
        return [ln for row in rows for ln in row]
    gutter = max(8.0, 0.8 * statistics.median(ln.height for ln in lines))
    split = _column_split(rows, gutter)
    if split is None:
        return [ln for row in rows for ln in row]
    start, end, x = split
    run = [ln for row in rows[start:end] for ln in row]
    left = [ln for ln in run if ln.box[2] <= x]
    right = [ln for ln in run if ln.box[0] >= x]
    before = [ln for row in rows[:start] for ln in row]
    return before + reading_order(left) + reading_order(right) + reading_order([ln for row in rows[end:] for ln in row])


def finish(lines: Iterable[OCRLine], engine: str, min_confidence: float = 0.0) -> OCRResult:
    """What every engine returns: noise and low-confidence lines dropped, the rest in reading order."""
    return OCRResult.from_lines(reading_order(clean_lines(lines, min_confidence)), engine)


# --------------------------------------------------------------------------------------------
# Video frames


def normalise_text(text: str) -> str:
    """Lower case letters and digits only: what two readings of the same caption share."""
    return re.sub(r"[\W_]+", "", text.casefold())


def _box_overlap(a: Box, b: Box) -> float:
    """Intersection of two boxes as a share of the smaller one's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if w > 0 and h > 0 and smaller > 0 else 0.0


def _same_text(a: OCRLine, a_key: str, b: OCRLine, b_key: str, threshold: float) -> bool:
    if a_key == b_key:
        return True
    if 2 * min(len(a_key), len(b_key)) / (len(a_key) + len(b_key)) >= threshold:  # else ratio() cannot reach it
        matcher = difflib.SequenceMatcher(None, a_key, b_key, autojunk=False)
        if matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold:
            return True
    # A fragment of a line read whole on another frame ("BIG" of "BIG NEWS TODAY"), in the same place.
    return (a_key in b_key or b_key in a_key) and _box_overlap(a.box, b.box) >= 0.5


def _better(a: tuple[OCRLine, str], b: tuple[OCRLine, str]) -> tuple[OCRLine, str]:
    """The more complete reading (one holds the other), else the more confident one."""
    if a[1] != b[1] and a[1] in b[1]:
        return b
    if a[1] != b[1] and b[1] in a[1]:
        return a
    return b if b[0].confidence > a[0].confidence else a


def merge_frames(results: Sequence[OCRResult], threshold: float = 0.85, engine: str | None = None) -> OCRResult:
    """One result for text read on several frames: each line once, in order of first appearance.

    A line from a later frame is the same as a line kept from an earlier one when their normalised texts
    are near duplicates (difflib ratio >= ``threshold``), or when one holds the other and their boxes
    overlap (a line the engine split on one frame and read whole on another). The kept line takes the
    more complete reading, else the more confident one. Lines of one frame are never merged together:
    the same words twice on one picture are two lines.
    """
    kept: list[tuple[OCRLine, str]] = []
    origin: list[int] = []  # the frame each kept reading comes from
    for frame, result in enumerate(results):
        for line in result.lines:
            key = normalise_text(line.text)
            if not key:
                continue
            new = (line, key)
            matches = [
                i for i, (seen, seen_key) in enumerate(kept)
                if origin[i] != frame and _same_text(seen, seen_key, line, key, threshold)
            ]
            if not matches:
                kept.append(new)
                origin.append(frame)
                continue
            # the kept line in the same place stands for the match (the same words twice on one earlier
            # frame stay two lines) and takes the better reading; fragments that reading holds fold into it
            first = max(matches, key=lambda i: (_box_overlap(kept[i][0].box, line.box), -i))
            best = _better(kept[first], new)
            drop = [i for i in matches if i != first and kept[i][1] != best[1] and kept[i][1] in best[1]]
            if best is new:
                kept[first], origin[first] = new, frame
            for i in reversed(drop):
                del kept[i], origin[i]
    name = engine or next((r.engine for r in results if r.engine), "")
    return OCRResult.from_lines([line for line, _ in kept], name)


__all__ = [
    "Box",
    "NoOCR",
    "OCREngine",
    "OCRLine",
    "OCRResult",
    "OCRWord",
    "available_ocr",
    "clamp_box",
    "clean_lines",
    "finish",
    "group_rows",
    "is_noise",
    "load_ocr",
    "merge_frames",
    "normalise_text",
    "reading_order",
    "register_ocr",
    "to_rgb",
    "union_box",
]
