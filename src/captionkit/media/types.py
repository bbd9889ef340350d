"""Value types of the media layer: what a file is (:class:`MediaInfo`), the frames taken from it
(:class:`Frame`, :class:`LoadedMedia`), how to take them (:class:`FramePolicy`) and what to refuse
(:class:`ImageLimits`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from captionkit.errors import ConfigError

MediaKindName = Literal["image", "gif", "video"]
FrameMode = Literal["uniform", "interval", "scene"]
FRAME_MODES: tuple[str, ...] = ("uniform", "interval", "scene")


@dataclass
class MediaInfo:
    """What is known about a media file once its header (or container) has been read.

    ``kind`` is ``"image"`` (a still), ``"gif"`` (an animated image: GIF, animated WebP, APNG;
    a one-frame GIF is still kind ``"gif"`` with ``animated=False``) or ``"video"``.
    ``format`` is a Pillow format name for images (``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"WEBP"``,
    ``"HEIF"``...) and a short container name for videos (``"mp4"``, ``"mov"``, ``"webm"``,
    ``"matroska"``...). ``width``/``height`` are display sizes (after EXIF orientation or the
    video's rotation). ``mode`` is the Pillow mode before conversion to RGB for images and the
    pixel format (e.g. ``"yuv420p"``) for videos.
    """

    kind: str
    format: str
    width: int
    height: int
    duration: float | None = None  # seconds; None for stills and one-frame animations
    frame_count: int | None = None
    fps: float | None = None
    has_audio: bool = False
    codec: str | None = None
    mode: str | None = None
    bytes: int | None = None
    animated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Frame:
    """One decoded picture: an RGB image, its presentation time in seconds from the start of the
    media, and its index in the file's frame sequence when that is known (images, GIFs)."""

    image: Image.Image
    time: float
    index: int | None = None


@dataclass
class LoadedMedia:
    """A media file with its facts and the frames sampled from it (one for a still image)."""

    path: Path
    info: MediaInfo
    frames: list[Frame] = field(default_factory=list)


def _fail(field_name: str, rule: str, value: object) -> ConfigError:
    return ConfigError(f"frame policy: {field_name} must be {rule} (got {value!r})")


@dataclass(frozen=True)
class FramePolicy:
    """Which frames to take from animations and videos.

    * ``uniform``: ``n`` frames at the centres of ``n`` equal slices of the media.
    * ``interval``: one frame every ``every`` seconds from the start.
    * ``scene``: frames whose colour histogram differs from the last kept frame by more than
      ``threshold`` (total-variation distance in [0, 1]); the first frame is always kept.

    Whatever the mode, at most ``max_frames`` frames are returned.
    """

    mode: FrameMode = "uniform"
    n: int = 8
    every: float = 2.0
    threshold: float = 0.35
    max_frames: int = 64

    def __post_init__(self) -> None:
        if self.mode not in FRAME_MODES:
            raise _fail("mode", f"one of {', '.join(FRAME_MODES)}", self.mode)
        # bool is an int subclass; "n: True" in a YAML file is a mistake, not 1.
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise _fail("n", ">= 1", self.n)
        if isinstance(self.every, bool) or not isinstance(self.every, (int, float)) or not self.every > 0:
            raise _fail("every", "> 0 seconds", self.every)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise _fail("threshold", "a number between 0 and 1", self.threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise _fail("threshold", "between 0 and 1", self.threshold)
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1:
            raise _fail("max_frames", ">= 1", self.max_frames)


@dataclass(frozen=True)
class ImageLimits:
    """What the decoders refuse, checked from headers before any pixel is decoded.

    ``max_bytes`` applies to image files (they are read whole); videos are seeked, not read
    whole, so they are bounded by ``max_video_seconds`` and ``max_frames_decoded`` instead.
    Pillow's own ``Image.MAX_IMAGE_PIXELS`` bomb check still applies on top of ``max_pixels``.
    """

    max_pixels: int = 100_000_000
    max_side: int = 40_000
    max_bytes: int = 500 * 2**20
    max_video_seconds: float = 6 * 3600
    max_frames_decoded: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_side", "max_bytes", "max_frames_decoded"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"image limits: {name} must be an integer >= 1 (got {value!r})")
        if not self.max_video_seconds > 0:
            raise ConfigError(f"image limits: max_video_seconds must be > 0 (got {self.max_video_seconds!r})")


DEFAULT_POLICY = FramePolicy()
DEFAULT_LIMITS = ImageLimits()
