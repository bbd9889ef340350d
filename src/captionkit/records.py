"""Plain records that flow through captionkit: items in, results out.

Everything here is a dataclass of JSON-friendly values so that it pickles (Ray), serialises
(JSONL / SQLite) and prints (``captionkit inspect``) without adapters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

MediaKind = Literal["photo", "video", "gif", "image"]
MEDIA_KINDS: tuple[str, ...] = ("photo", "video", "gif", "image")

# Readers never stop on one bad row: they yield the item with the problem under one of these metadata keys,
# and the pipeline fails that item (stage "read") with the reason.
ROW_ERROR_KEY = "_row_error"  # the row itself could not be decoded (e.g. a broken JSONL line)
MEDIA_ERROR_KEY = "_media_error"  # the media cell could not be parsed


@dataclass
class VideoVariant:
    """One encoding of a video, as tweet media lists them."""

    url: str
    content_type: str | None = None  # e.g. "video/mp4", "application/x-mpegURL"
    bitrate: int | None = None  # bits/s; GIFs report 0


@dataclass
class MediaRef:
    """Where a piece of media lives and what is known about it before it is opened.

    ``url`` is an http(s) URL or a local path; for videos it is the best mp4 variant.
    """

    kind: MediaKind
    url: str
    thumbnail_url: str | None = None
    preview_url: str | None = None
    duration: float | None = None  # seconds
    variants: list[VideoVariant] = field(default_factory=list)
    views: int | None = None
    alt_text: str | None = None

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("http://", "https://"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaRef:
        data = dict(data)
        data["variants"] = [v if isinstance(v, VideoVariant) else VideoVariant(**v) for v in data.get("variants") or []]
        return cls(**data)


@dataclass
class Item:
    """One unit of work: a post (or a lone media file) with its metadata."""

    id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    media: list[MediaRef] = field(default_factory=list)
    reference: str | None = None  # the dataset's own text for the item (e.g. the tweet), if any

    @property
    def read_error(self) -> str | None:
        """Why the reader could not make a usable item of this row, if it could not."""
        if problem := self.metadata.get(ROW_ERROR_KEY):
            return str(problem)
        if problem := self.metadata.get(MEDIA_ERROR_KEY):
            return f"media column: {problem}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "metadata": dict(self.metadata),
            "media": [m.to_dict() for m in self.media],
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(
            id=str(data["id"]),
            metadata=dict(data.get("metadata") or {}),
            media=[m if isinstance(m, MediaRef) else MediaRef.from_dict(m) for m in data.get("media") or []],
            reference=data.get("reference"),
        )


@dataclass
class StageError:
    """Why an item failed: the stage, a one-line reason, and the exception type."""

    stage: str
    reason: str
    type: str = "Error"

    @classmethod
    def from_exception(cls, stage: str, exc: BaseException) -> StageError:
        return cls(stage=stage, reason=str(exc) or exc.__class__.__name__, type=exc.__class__.__name__)


@dataclass
class ItemResult:
    """What the pipeline made of one item: per-stage outputs, timings and the error if any."""

    id: str
    item: Item
    outputs: dict[str, Any] = field(default_factory=dict)  # stage name -> that stage's output
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    error: StageError | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ok": self.ok,
            "item": self.item.to_dict(),
            "outputs": self.outputs,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "error": asdict(self.error) if self.error else None,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemResult:
        err = data.get("error")
        return cls(
            id=str(data["id"]),
            item=Item.from_dict(data["item"]),
            outputs=dict(data.get("outputs") or {}),
            timings=dict(data.get("timings") or {}),
            error=StageError(**err) if err else None,
            attempts=int(data.get("attempts", 1)),
        )
