"""``captionkit clean``: find the rows of a dataset that would hurt training or a batch run.

Each check is a small object behind the :class:`CleanCheck` protocol, registered by name, that looks at
one loaded row and returns a reason to drop it (or None). Checks that need memory across rows
(duplicates) keep it themselves. Later modules add checks with :func:`register_check` — the OCR module
adds ``overlay_text`` to drop images with heavy overlaid text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from captionkit.errors import CaptionkitError, ConfigError
from captionkit.media.fetch import FetchPolicy, MediaCache, resolve_media
from captionkit.media.hashing import NearDuplicateIndex, file_sha256, phash
from captionkit.media.loader import load_media
from captionkit.media.types import FramePolicy, ImageLimits, LoadedMedia
from captionkit.models.settings import OCRSettings
from captionkit.records import Item


@dataclass
class CleanOptions:
    min_side: int = 64  # images whose shorter side is below this many pixels are too small
    near_threshold: int = 6  # pHash bits (of 64) within which two images count as near duplicates
    max_text_chars: int = 10  # overlay_text: more OCR characters than this is heavy text (as a seed project did)
    max_text_area: float = 0.15  # overlay_text: or text boxes covering more than this share of the picture
    ocr: OCRSettings = field(default_factory=OCRSettings)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    limits: ImageLimits = field(default_factory=ImageLimits)

    def __post_init__(self) -> None:
        if self.min_side < 0:
            raise ConfigError("--min-side must be >= 0")
        if not 0 <= self.near_threshold <= 32:
            raise ConfigError("--near-threshold must be between 0 and 32 bits")


@dataclass
class Row:
    """One dataset row as the checks see it: the item, its loaded media, or why they did not load."""

    item: Item
    media: list[LoadedMedia] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    load_error: str | None = None


class CleanCheck(Protocol):
    name: str

    def __call__(self, row: Row) -> str | None:
        """A reason to drop the row, or None to keep it."""


CheckFactory = Callable[[CleanOptions], CleanCheck]
_CHECKS: dict[str, CheckFactory] = {}


def register_check(name: str, default: bool = True) -> Callable[[CheckFactory], CheckFactory]:
    def deco(factory: CheckFactory) -> CheckFactory:
        _CHECKS[name] = factory
        if default:
            DEFAULT_CHECKS.append(name)
        return factory

    return deco


DEFAULT_CHECKS: list[str] = []


def available_checks() -> list[str]:
    return sorted(_CHECKS)


@register_check("no_media")
class NoMedia:
    name = "no_media"

    def __init__(self, options: CleanOptions) -> None:
        pass

    def __call__(self, row: Row) -> str | None:
        if problem := row.item.read_error:
            return problem
        return None if row.item.media else "row has no media"


@register_check("unreadable")
class Unreadable:
    name = "unreadable"

    def __init__(self, options: CleanOptions) -> None:
        pass

    def __call__(self, row: Row) -> str | None:
        return row.load_error


@register_check("no_reference")
class NoReference:
    name = "no_reference"

    def __init__(self, options: CleanOptions) -> None:
        pass

    def __call__(self, row: Row) -> str | None:
        return None if (row.item.reference or "").strip() else "row has no reference text"


@register_check("too_small")
class TooSmall:
    name = "too_small"

    def __init__(self, options: CleanOptions) -> None:
        self.min_side = options.min_side

    def __call__(self, row: Row) -> str | None:
        for m in row.media:
            if min(m.info.width, m.info.height) < self.min_side:
                return f"too small: {m.info.width}x{m.info.height} < {self.min_side} px ({m.path.name})"
        return None


@register_check("duplicate")
class ExactDuplicate:
    name = "duplicate"

    def __init__(self, options: CleanOptions) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, row: Row) -> str | None:
        for path in row.paths:
            digest = file_sha256(path)
            if (first := self.seen.get(digest)) is not None and first != row.item.id:
                return f"exact duplicate of {first} ({path.name})"
            self.seen.setdefault(digest, row.item.id)
        return None


@register_check("near_duplicate")
class NearDuplicate:
    name = "near_duplicate"

    def __init__(self, options: CleanOptions) -> None:
        self.index = NearDuplicateIndex(options.near_threshold)

    def __call__(self, row: Row) -> str | None:
        hashes = [phash(m.frames[0].image) for m in row.media if m.frames]
        for h in hashes:
            if (hit := self.index.find(h)) is not None and hit[0] != row.item.id:
                return f"near duplicate of {hit[0]} (pHash distance {hit[1]})"
        for h in hashes:
            self.index.add(h, row.item.id)
        return None


@dataclass
class CleanReport:
    total: int = 0
    kept: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)  # {"id", "check", "reason"}
    checks: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(f["check"] for f in self.flagged))

    def add(self, item: Item, verdict: tuple[str, str] | None) -> None:
        self.total += 1
        if verdict is None:
            self.kept += 1
        else:
            self.flagged.append({"id": item.id, "check": verdict[0], "reason": verdict[1]})

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "kept": self.kept, "dropped": len(self.flagged), "by_check": self.counts,
                "checks": self.checks, "flagged": self.flagged}


class Cleaner:
    def __init__(self, checks: Iterable[str] | None = None, options: CleanOptions | None = None) -> None:
        self.options = options or CleanOptions()
        names = list(checks) if checks is not None else list(DEFAULT_CHECKS)
        unknown = [n for n in names if n not in _CHECKS]
        if unknown:
            raise ConfigError(f"--checks: unknown check(s) {', '.join(unknown)}; known: {', '.join(available_checks())}")
        # Cheap row-level checks first so that a dropped row never enters the duplicate indexes.
        self.checks = [_CHECKS[n](self.options) for n in names]
        self.cache = MediaCache()
        self.policy = FramePolicy(mode="uniform", n=1)

    def load(self, item: Item) -> Row:
        row = Row(item)
        try:
            for ref in item.media:
                path = resolve_media(ref.url, self.options.fetch, self.cache)
                row.paths.append(path)
                row.media.append(load_media(path, self.policy, self.options.limits))
        except CaptionkitError as exc:
            row.load_error = str(exc)
        return row

    def check(self, row: Row) -> tuple[str, str] | None:
        for check in self.checks:
            if (reason := check(row)) is not None:
                return check.name, reason
        return None

    def run(self, items: Iterable[Item]) -> Iterator[tuple[Item, tuple[str, str] | None]]:
        """Check each item in order: yield (item, None) to keep it or (item, (check, reason)) to drop it."""
        for item in items:
            yield item, self.check(self.load(item))

    def new_report(self) -> CleanReport:
        return CleanReport(checks=[c.name for c in self.checks])


def clean(items: Iterable[Item], checks: Iterable[str] | None = None,
          options: CleanOptions | None = None) -> tuple[list[Item], CleanReport]:
    """Check every item: the items that pass, and a report of what was flagged and why."""
    cleaner = Cleaner(checks, options)
    report, kept = cleaner.new_report(), []
    for item, verdict in cleaner.run(items):
        report.add(item, verdict)
        if verdict is None:
            kept.append(item)
    return kept, report


# Checks that live with their own module register themselves on import (they load nothing until used).
from captionkit.ocr import clean_check as _ocr_clean_check  # noqa: E402,F401  (registers "overlay_text")
