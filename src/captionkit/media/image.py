"""Decode still and animated images with Pillow into RGB frames, refusing bombs before decoding.

Every failure leaves this module as a :class:`~captionkit.errors.MediaError` whose message names
the file and the reason; Pillow's own exceptions never escape.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, features

from captionkit.errors import CaptionkitError, MediaError
from captionkit.extras import require
from captionkit.media.sniff import HEAD_BYTES, sniff_bytes
from captionkit.media.types import DEFAULT_LIMITS, DEFAULT_POLICY, Frame, FramePolicy, ImageLimits, MediaInfo

log = logging.getLogger(__name__)

ImageSource = str | Path | bytes | bytearray | memoryview | BinaryIO

WHITE = (255, 255, 255, 255)
HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Browsers show GIF frames declared shorter than 20 ms (often 0) for 100 ms; so do we, so that
# frame times match what people saw.
MIN_FRAME_MS = 20
DEFAULT_FRAME_MS = 100
ORIENTATION_TAG = 0x0112
HISTOGRAM_BINS = 4  # per channel: 64 colour cells, coarse enough to ignore compression noise
HISTOGRAM_SIDE = 64  # frames are downscaled to at most this many pixels a side before histograms

_heif_lock = threading.Lock()
_heif_registered = False


# --------------------------------------------------------------------------------------------
# Public API


def open_image(source: ImageSource, limits: ImageLimits | None = None) -> Image.Image:
    """Decode a still image (or the first frame of an animation) into an RGB ``PIL.Image``.

    ``source`` is a path, the file's bytes or a binary file object. EXIF orientation is applied,
    CMYK is converted (through its ICC profile when it has one), 16-bit and float images are scaled
    to 8 bits and transparency is composited on white.
    """
    return load_still(source, limits)[1]


def load_still(source: ImageSource, limits: ImageLimits | None = None) -> tuple[MediaInfo, Image.Image]:
    """Like :func:`open_image`, also returning the :class:`MediaInfo` (size after orientation).

    ``info.kind`` is the sniffed kind, so a GIF is ``"gif"`` even when only its first frame is read.
    """
    limits = limits or DEFAULT_LIMITS
    with _opened(source, limits) as (im, name, kind, fmt, nbytes):
        mode = im.mode
        animated = kind == "gif" and bool(getattr(im, "is_animated", False))
        _decode(im, name)
        rgb = _to_rgb(_apply_orientation(im), name)
    info = MediaInfo(kind=kind, format=fmt, width=rgb.width, height=rgb.height, mode=mode, bytes=nbytes)
    info.animated = animated
    return info, rgb


def image_frames(
    path: str | Path, policy: FramePolicy | None = None, limits: ImageLimits | None = None
) -> tuple[MediaInfo, list[Frame]]:
    """Sample the frames of an animated GIF, WebP or APNG according to ``policy``.

    Frame times come from each frame's ``duration`` (frames under 20 ms count as 100 ms, as in
    browsers). A one-frame file gives one frame at t=0 and ``duration=None``.
    """
    policy = policy or DEFAULT_POLICY
    limits = limits or DEFAULT_LIMITS
    with _opened(path, limits) as (im, name, _kind, fmt, nbytes):
        mode = im.mode
        n_frames = _frame_count(im, name)
        if n_frames > limits.max_frames_decoded:
            raise MediaError(
                f"too many frames: {name}: {n_frames} frames exceeds the limit of "
                f"{limits.max_frames_decoded} frames decoded"
            )
        frames, total_ms = _walk_frames(im, name, n_frames, policy)
        width, height = im.size
    animated = n_frames > 1
    duration = total_ms / 1000 if animated else None
    info = MediaInfo(
        kind="gif",
        format=fmt,
        width=width,
        height=height,
        duration=duration,
        frame_count=n_frames,
        fps=(n_frames / duration) if duration else None,
        mode=mode,
        bytes=nbytes,
        animated=animated,
    )
    return info, frames


def colour_histogram(image: Image.Image | np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Normalised ``bins**3`` RGB histogram of an image (downscaled first), for scene detection."""
    if isinstance(image, Image.Image):
        image = _small_rgb(image)
    arr = np.asarray(image)[..., :3].astype(np.uint16)
    cells = (arr * bins) >> 8  # 0..bins-1 per channel
    index = (cells[..., 0] * bins + cells[..., 1]) * bins + cells[..., 2]
    hist = np.bincount(index.ravel(), minlength=bins**3).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between two normalised histograms: 0 same, 1 disjoint colours."""
    return float(0.5 * np.abs(a - b).sum())


def uniform_indices(count: int, n: int) -> list[int]:
    """``n`` indices into ``count`` items at the centres of ``n`` equal slices (all when n >= count)."""
    if n >= count:
        return list(range(count))
    return sorted({min(count - 1, int((k + 0.5) * count / n)) for k in range(n)})


# --------------------------------------------------------------------------------------------
# Opening: source handling, sniffing, header-size checks


@contextmanager
def _opened(
    source: ImageSource, limits: ImageLimits
) -> Iterator[tuple[Image.Image, str, str, str, int | None]]:
    """Open ``source`` with Pillow after sniffing it and checking sizes.

    Yields (image, display name, sniffed kind, format, size in bytes when known).

    Only headers are read here; pixels are decoded by the caller.
    """
    name, fp, nbytes = _source_stream(source, limits)
    try:
        head = fp.read(HEAD_BYTES)
        fp.seek(0)
        kind, fmt = sniff_bytes(head, name)
        if kind == "video":
            raise MediaError(f"not an image: {name} is a {fmt} video")
        if fmt in ("HEIF", "AVIF"):
            _ensure_heif_opener(fmt, name)
        declared = _declared_size(head, fmt, fp)
        if declared:
            _check_size(name, *declared, limits)
        im = _pillow_open(fp, name, fmt, limits)
        try:
            _check_size(name, *im.size, limits)
            yield im, name, kind, fmt, nbytes
        finally:
            im.close()
    finally:
        fp.close()


def _source_stream(source: ImageSource, limits: ImageLimits) -> tuple[str, BinaryIO, int | None]:
    """A seekable binary stream over ``source``, its display name and its size in bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_bytes("<bytes>", len(data), limits)
        return "<bytes>", io.BytesIO(data), len(data)
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if path.is_dir():
                raise MediaError(f"not a file: {path}")
            _check_bytes(str(path), size, limits)
            return str(path), path.open("rb"), size
        except FileNotFoundError:
            raise MediaError(f"file not found: {path}") from None
        except OSError as exc:
            raise MediaError(f"cannot read {path}: {exc.strerror or exc}") from None
    name = str(getattr(source, "name", "<stream>"))
    if not (hasattr(source, "seekable") and source.seekable()):
        # Pillow needs to seek; read at most one byte past the limit to detect oversize streams.
        data = source.read(limits.max_bytes + 1)
        _check_bytes(name, len(data), limits)
        return name, io.BytesIO(data), len(data)
    stream = _NonClosing(source)
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    _check_bytes(name, size, limits)
    return name, stream, size


class _NonClosing(io.BufferedIOBase):
    """Wraps a caller's file object so that closing ours leaves theirs open."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._start = raw.tell()

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        return self._raw.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            offset += self._start
        return self._raw.seek(offset, whence) - self._start

    def tell(self) -> int:
        return self._raw.tell() - self._start

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _check_bytes(name: str, size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise MediaError(f"empty file: {name}")
    if size > limits.max_bytes:
        raise MediaError(
            f"file too large: {name}: {size:,} bytes exceeds the limit of {limits.max_bytes:,} bytes"
        )


def _check_size(name: str, width: int, height: int, limits: ImageLimits) -> None:
    if width > limits.max_side or height > limits.max_side:
        raise MediaError(
            f"image too large: {name}: {width}x{height} has a side over the limit of {limits.max_side} pixels"
        )
    if width * height > limits.max_pixels:
        raise MediaError(
            f"image too large: {name}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{limits.max_pixels:,} pixels (possible decompression bomb)"
        )


def _ensure_heif_opener(fmt: str, name: str) -> None:
    """Register pillow-heif's opener once, on first need (importing it costs ~100 ms)."""
    global _heif_registered
    if fmt == "AVIF" and features.check("avif"):
        return  # Pillow >= 11.2 decodes AVIF itself
    heif = require("pillow_heif", "heif", purpose=f"decoding {fmt} images")
    with _heif_lock:
        if not _heif_registered:
            heif.register_heif_opener()
            if fmt == "AVIF" and hasattr(heif, "register_avif_opener"):  # pillow-heif < 1.0
                heif.register_avif_opener()
            _heif_registered = True
    if fmt == "AVIF" and not hasattr(heif, "register_avif_opener"):
        raise MediaError(
            f"cannot decode AVIF: {name}: this Pillow has no AVIF support and pillow-heif dropped it"
        )


def _pillow_open(fp: BinaryIO, name: str, fmt: str, limits: ImageLimits) -> Image.Image:
    """``Image.open`` (headers only) with Pillow's exceptions turned into :class:`MediaError`."""
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit; Pillow's warning below its hard limit is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as exc:
        # Pillow's hard limit (2 x Image.MAX_IMAGE_PIXELS) tripped before our own check could run.
        raise MediaError(
            f"image too large: {name}: {_one_line(exc)} (Pillow's Image.MAX_IMAGE_PIXELS; "
            f"captionkit's limit is {limits.max_pixels:,} pixels)"
        ) from None
    except Image.UnidentifiedImageError:
        raise MediaError(
            f"truncated or corrupt image: {name}: Pillow cannot read this {fmt} header"
        ) from None
    except CaptionkitError:
        raise
    except Exception as exc:
        raise MediaError(f"truncated or corrupt image: {name}: {_one_line(exc)}") from None


@contextmanager
def _corrupt_on_error(name: str, where: str = "") -> Iterator[None]:
    """Pillow's plugins raise many types on damaged data (OSError "image file is truncated",
    SyntaxError, ValueError, EOFError, struct.error, IndexError...); to users they all mean the
    same, so all become one :class:`MediaError`. Only Pillow calls run inside."""
    try:
        yield
    except CaptionkitError:
        raise
    except Exception as exc:
        raise MediaError(f"truncated or corrupt image: {name}: {where}{_one_line(exc)}") from None


def _decode(im: Image.Image, name: str) -> None:
    """Decode the current frame's pixels."""
    with _corrupt_on_error(name):
        im.load()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text[:200]


# --------------------------------------------------------------------------------------------
# Declared sizes, read from headers so that bombs are refused with a precise message


def _declared_size(head: bytes, fmt: str, fp: BinaryIO) -> tuple[int, int] | None:
    """Width and height as the header declares them, for the formats bombs are usually made of."""
    try:
        if fmt == "PNG" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", head[6:10])
        if fmt == "BMP":
            if struct.unpack("<I", head[14:18])[0] == 12:
                return struct.unpack("<HH", head[18:22])
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)
        if fmt == "WEBP":
            return _webp_size(head)
        if fmt == "JPEG":
            return _jpeg_size(fp)
    except struct.error:
        return None  # too short to tell; Pillow will report the truncation
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and head[20:21] == b"\x2f":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(fp: BinaryIO, max_segments: int = 64) -> tuple[int, int] | None:
    """Walk JPEG segments (skipping EXIF/ICC payloads) to the start-of-frame header."""
    try:
        fp.seek(2)
        for _ in range(max_segments):
            marker = fp.read(2)
            while marker[:1] == b"\xff" and marker[1:2] == b"\xff":  # fill bytes
                marker = marker[1:] + fp.read(1)
            if len(marker) < 2 or marker[0] != 0xFF:
                return None
            length_bytes = fp.read(2)
            if len(length_bytes) < 2:
                return None
            length = struct.unpack(">H", length_bytes)[0]
            if marker[1] in _SOF_MARKERS:
                payload = fp.read(5)
                if len(payload) < 5:
                    return None
                height, width = struct.unpack(">HH", payload[1:5])
                return width, height
            fp.seek(length - 2, io.SEEK_CUR)
        return None
    finally:
        fp.seek(0)


# --------------------------------------------------------------------------------------------
# Conversion to RGB


def _apply_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip per EXIF orientation; a broken EXIF block is ignored rather than fatal."""
    try:
        if im.getexif().get(ORIENTATION_TAG, 1) in (1, None):
            return im  # the common case: no copy of a possibly large image
        return ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF must not lose an otherwise fine picture
        log.debug("ignoring unreadable EXIF orientation", exc_info=True)
        return im


def _to_rgb(im: Image.Image, name: str = "<image>") -> Image.Image:
    """A new RGB image from any Pillow mode (never the same object: frames outlive seeks)."""
    try:
        if im.mode == "RGB":
            return im.copy()
        if im.mode in HIGH_DEPTH_MODES:
            return _high_depth_to_rgb(im)
        if im.mode == "CMYK":
            return _cmyk_to_rgb(im)
        if im.mode in ALPHA_MODES or "transparency" in im.info:
            rgba = im.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
        return im.convert("RGB")
    except ValueError as exc:  # e.g. "conversion from LAB to RGB not supported"
        raise MediaError(f"unsupported colour mode {im.mode}: {name}: {_one_line(exc)}") from None


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """Scale 16-bit / 32-bit / float greyscale to 8 bits by its nominal range (not by clipping)."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = _nominal_range(arr, is_float=im.mode == "F")
    scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _nominal_range(arr: np.ndarray, is_float: bool) -> tuple[float, float]:
    """The value range an "I"/"F" image was meant to use: 8-bit, 16-bit or [0, 1] when it fits."""
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if is_float and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if not is_float and low >= 0 and high <= 255:
        return 0.0, 255.0
    if low >= 0 and high <= 65535:
        return 0.0, 65535.0
    return low, high  # unknown range: stretch what is there


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK through the embedded ICC profile when LittleCMS can use it, else Pillow's naive formula."""
    icc = im.info.get("icc_profile")
    if icc and features.check("littlecms2"):
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # broken profiles are common; fall back rather than fail
            log.debug("ignoring unusable ICC profile", exc_info=True)
    return im.convert("RGB")


def _small_rgb(image: Image.Image, side: int = HISTOGRAM_SIDE) -> Image.Image:
    small = image if max(image.size) <= side else image.copy()
    if small is not image:
        small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small if small.mode == "RGB" else small.convert("RGB")


# --------------------------------------------------------------------------------------------
# Animations


def _frame_count(im: Image.Image, name: str) -> int:
    with _corrupt_on_error(name):  # counting GIF frames scans the file and meets truncation first
        return int(getattr(im, "n_frames", 1))


def _frame_ms(im: Image.Image) -> float:
    duration = im.info.get("duration")
    if not isinstance(duration, (int, float)) or duration < MIN_FRAME_MS:
        return float(DEFAULT_FRAME_MS)
    return float(duration)


def _walk_frames(im: Image.Image, name: str, n_frames: int, policy: FramePolicy) -> tuple[list[Frame], float]:
    """One pass over the frames (Pillow must composite them in order), keeping those the policy picks.

    Returns the kept frames and the total duration in milliseconds.
    """
    wanted = (
        set(uniform_indices(n_frames, min(policy.n, policy.max_frames))) if policy.mode == "uniform" else None
    )
    frames: list[Frame] = []
    next_target_ms = 0.0  # interval mode: the next time a frame is due
    last_hist: np.ndarray | None = None  # scene mode: histogram of the last kept frame
    start_ms = 0.0
    for index in range(n_frames):
        _seek(im, index, name)
        end_ms = start_ms + _frame_ms(im)
        keep = False
        if len(frames) >= policy.max_frames:
            pass  # still walk on: the total duration needs every frame's length
        elif wanted is not None:
            keep = index in wanted
        elif policy.mode == "interval":
            keep = next_target_ms < end_ms
            while next_target_ms < end_ms:  # several targets inside one long frame: keep it once
                next_target_ms += policy.every * 1000
        if keep or (policy.mode == "scene" and len(frames) < policy.max_frames):
            _decode(im, name)
            rgb = _to_rgb(im, name)
            if policy.mode == "scene":
                hist = colour_histogram(rgb)
                keep = last_hist is None or histogram_distance(hist, last_hist) > policy.threshold
                if keep:
                    last_hist = hist
            if keep:
                frames.append(Frame(image=rgb, time=start_ms / 1000, index=index))
        start_ms = end_ms
    return frames, start_ms


def _seek(im: Image.Image, index: int, name: str) -> None:
    with _corrupt_on_error(name, f"frame {index}: "):
        im.seek(index)
