"""Probe videos and sample frames from them with PyAV (FFmpeg), by seeking rather than decoding all.

* ``uniform``: ``n`` timestamps at the centres of ``n`` equal slices of the duration;
* ``interval``: a timestamp every ``every`` seconds from the start;
* ``scene``: keyframes only (the decoder skips the rest), kept when their colour histogram moves
  away from the last kept one by more than ``threshold``.

For each timestamp the container seeks to the keyframe before it and decodes forward to the first
frame at or after it, unless that keyframe is behind the decoder's current position, in which case
decoding simply continues (short videos with long GOPs are then decoded once, not once per
timestamp). When seeking is impossible (no index, unseekable stream) a single linear pass picks
the frames instead, within ``limits.max_frames_decoded``.

Every failure surfaces as :class:`~captionkit.errors.MediaError` naming the file; PyAV's exceptions
never escape. Containers are always closed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from captionkit.errors import CaptionkitError, MediaError
from captionkit.media.image import colour_histogram, histogram_distance
from captionkit.media.sniff import check_file, sniff
from captionkit.media.types import DEFAULT_LIMITS, DEFAULT_POLICY, Frame, FramePolicy, ImageLimits, MediaInfo

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 50  # more rejected packets than this and the file is called corrupt
HISTOGRAM_WIDTH = 64  # frames are scaled to this width (swscale, cheap) before their histogram


@dataclass
class DecodeStats:
    """What a sampling call cost; pass one in to find out (tests and benchmarks do)."""

    decoded: int = 0  # frames the decoder returned
    seeks: int = 0
    linear_fallback: bool = False
    bad_packets: int = 0  # packets the decoder rejected and that were skipped


class _SeekFailed(Exception):
    """Seeking cannot reach the wanted frames; the caller falls back to a linear pass."""


class _Budget:
    """Counts decoded frames against ``limits.max_frames_decoded``."""

    def __init__(self, limit: int, stats: DecodeStats) -> None:
        self.limit = limit
        self.stats = stats

    def frames(self, frames: Iterator[VideoFrame]) -> Iterator[VideoFrame]:
        for frame in frames:
            self.stats.decoded += 1
            yield frame
            if self.stats.decoded >= self.limit:
                return

    @property
    def spent(self) -> bool:
        return self.stats.decoded >= self.limit


# --------------------------------------------------------------------------------------------
# Public API


def probe_video(path: str | Path, limits: ImageLimits | None = None) -> MediaInfo:
    """Read a video's facts from its container (no frame is decoded) and check them against ``limits``.

    Sizes are the coded ones: a display rotation is only seen on decoded frames, so
    :func:`sample_video_frames` reports the upright size.
    """
    limits = limits or DEFAULT_LIMITS
    with _opened(path) as (container, vstream, name):
        info = _probe(container, vstream, Path(path))
        _check_limits(info, name, limits)
    return info


def sample_video_frames(
    path: str | Path,
    policy: FramePolicy | None = None,
    limits: ImageLimits | None = None,
    *,
    stats: DecodeStats | None = None,
) -> tuple[MediaInfo, list[Frame]]:
    """Take frames from a video per ``policy``; frame times are seconds from the first frame.

    ``info.width``/``height`` follow the frames: swapped when the video carries a 90° rotation.
    """
    policy = policy or DEFAULT_POLICY
    limits = limits or DEFAULT_LIMITS
    stats = stats if stats is not None else DecodeStats()
    budget = _Budget(limits.max_frames_decoded, stats)
    seek_failed = False
    with _opened(path) as (container, vstream, name):
        info = _probe(container, vstream, Path(path))
        _check_limits(info, name, limits)
        start = _start_time(container, vstream)
        targets = [start + t for t in _targets(info.duration, policy)]
        tail = _Tail(policy.mode == "uniform", 1 / info.fps if info.fps else 0.0)
        vstream.thread_type = "AUTO"
        with _av_errors(name, "cannot decode video"):
            try:
                if policy.mode == "scene":
                    picked = _scene_frames(container, vstream, policy, budget)
                else:
                    picked = _frames_by_seeking(container, vstream, targets, budget, tail)
            except _SeekFailed as why:
                log.debug("%s: seeking failed (%s); decoding linearly", name, why)
                seek_failed = True
    if seek_failed:  # a fresh container: the failed one may be stuck anywhere
        stats.linear_fallback = True
        with _opened(path) as (container, vstream, name), _av_errors(name, "cannot decode video"):
            vstream.thread_type = "AUTO"
            picked = _frames_linearly(container, vstream, targets, budget, tail)
    if budget.spent:
        log.warning("%s: stopped after decoding %d frames (limit)", name, stats.decoded)
    if not picked:
        raise MediaError(f"cannot decode video: {name}: no frame could be decoded")
    frames = [_to_frame(frame, start) for frame in picked]
    if frames and frames[0].image.size != (info.width, info.height):
        info.width, info.height = frames[0].image.size  # display rotation
    return info, frames


# --------------------------------------------------------------------------------------------
# Opening and probing


@contextmanager
def _opened(path: str | Path) -> Iterator[tuple[InputContainer, VideoStream, str]]:
    """Open ``path`` with PyAV and find its video stream; always closes the container."""
    path = Path(path)
    name = str(path)
    check_file(path)
    # Only known video containers reach FFmpeg: it would happily "decode" a PNG or even a .txt file.
    kind, fmt = sniff(path)
    if kind != "video":
        raise MediaError(f"not a video: {name} is a {fmt} {'animation' if kind == 'gif' else 'image'}")
    hint = _box_problem(path) if fmt in ("mp4", "mov") else None
    with _av_errors(name, "cannot read video", hint):
        container = av.open(name, mode="r", metadata_errors="ignore")
    try:
        if not container.streams.video:
            what = "no video stream"
            if hint:
                what = f"no video stream ({hint})"
            elif not container.streams:
                what = "no streams at all (truncated or corrupt container?)"
            raise MediaError(f"cannot read video: {name}: {what}")
        yield container, container.streams.video[0], name
    finally:
        container.close()


def _box_problem(path: Path) -> str | None:
    """Why an MP4/MOV is broken, from its top-level boxes: a box running past the end of the file
    (a cut download) or no ``moov`` box (the index, written last by many encoders)."""
    size = path.stat().st_size
    seen = []
    try:
        with path.open("rb") as fh:
            offset = 0
            while offset + 8 <= size and len(seen) < 1000:
                fh.seek(offset)
                header = fh.read(16)
                box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
                if box_size == 1 and len(header) >= 16:
                    box_size = int.from_bytes(header[8:16], "big")  # 64-bit size
                elif box_size == 0:
                    box_size = size - offset  # "to the end of the file"
                if box_size < 8:
                    return f"corrupt {box_type!r} box at byte {offset}"
                seen.append(box_type)
                if offset + box_size > size:
                    return (
                        f"the {box_type} box is cut: it declares {box_size:,} bytes but the file ends "
                        f"{size - offset:,} bytes after its start"
                    )
                offset += box_size
    except OSError:
        return None
    if "moov" not in seen:
        return "no moov atom: the file is incomplete (cut download or unfinished recording)"
    return None


@contextmanager
def _av_errors(name: str, what: str, hint: str | None = None) -> Iterator[None]:
    """Turn FFmpeg/PyAV exceptions into a one-line :class:`MediaError` (with ``hint`` when known)."""
    try:
        yield
    except CaptionkitError:
        raise
    except av.FFmpegError as exc:
        reason = _reason(exc)
        raise MediaError(f"{what}: {name}: {reason}" + (f" ({hint})" if hint else "")) from None
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise MediaError(f"{what}: {name}: {' '.join(str(exc).split())[:200]}") from None


def _reason(exc: av.FFmpegError) -> str:
    reason = exc.strerror or exc.__class__.__name__
    logged = getattr(exc, "log", None)  # (level, component, message) when FFmpeg logged why
    if logged and len(logged) == 3 and logged[2]:
        reason = f"{reason} ({' '.join(str(logged[2]).split())})"
    return reason


def _probe(container: InputContainer, vstream: VideoStream, path: Path) -> MediaInfo:
    duration = _duration(container, vstream)
    fps = _fps(vstream)
    frame_count = vstream.frames or (round(fps * duration) if fps and duration else None)
    ctx = vstream.codec_context
    return MediaInfo(
        kind="video",
        format=_format_name(container, path),
        width=ctx.width,
        height=ctx.height,
        duration=duration,
        frame_count=frame_count or None,
        fps=fps,
        has_audio=bool(container.streams.audio),
        codec=ctx.name,
        mode=ctx.pix_fmt,
        bytes=path.stat().st_size,
        animated=True,
    )


def _format_name(container: InputContainer, path: Path) -> str:
    """Our short container name when the magic bytes tell it, else FFmpeg's demuxer name."""
    try:
        kind, fmt = sniff(path)
    except MediaError:
        kind, fmt = "", ""
    return fmt if kind == "video" else container.format.name


def _duration(container: InputContainer, vstream: VideoStream) -> float | None:
    """Seconds, from the stream, else the container, else by demuxing (reading, not decoding) packets."""
    if vstream.duration and vstream.time_base:
        return float(vstream.duration * vstream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return _demuxed_duration(container, vstream)


def _demuxed_duration(container: InputContainer, vstream: VideoStream) -> float | None:
    """Last packet end time minus the first start time, then rewind; for files without a duration."""
    first = last = None
    for packet in container.demux(vstream):
        if packet.pts is None or packet.time_base is None:
            continue
        start = float(packet.pts * packet.time_base)
        end = start + float((packet.duration or 0) * packet.time_base)
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    try:
        container.seek(0)
    except av.FFmpegError:
        pass  # a later seek or the linear fallback copes
    if first is None or last is None or last <= first:
        return None
    return last - first


def _fps(vstream: VideoStream) -> float | None:
    for rate in (vstream.average_rate, vstream.guessed_rate, vstream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return None


def _start_time(container: InputContainer, vstream: VideoStream) -> float:
    """Time of the first frame in stream time (MPEG-TS starts near 1.4 s, mp4 edit lists shift it)."""
    if vstream.start_time is not None and vstream.time_base:
        return float(vstream.start_time * vstream.time_base)
    if container.start_time is not None:
        return container.start_time / av.time_base
    return 0.0


def _check_limits(info: MediaInfo, name: str, limits: ImageLimits) -> None:
    width, height = info.width, info.height
    if not width or not height:
        raise MediaError(f"cannot read video: {name}: the video stream has no picture size (corrupt stream?)")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise MediaError(
            f"video too large: {name}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{limits.max_pixels:,} pixels or {limits.max_side} pixels a side"
        )
    if info.duration is not None and info.duration > limits.max_video_seconds:
        raise MediaError(
            f"video too long: {name}: {info.duration:.1f} s exceeds the limit of {limits.max_video_seconds:g} s"
        )


# --------------------------------------------------------------------------------------------
# Timestamp sampling (uniform, interval)


def _targets(duration: float | None, policy: FramePolicy) -> list[float]:
    """Wanted times in seconds from the start, ascending."""
    if policy.mode == "uniform":
        if not duration:
            return [0.0]  # unknown length: the first frame is all we can place
        n = min(policy.n, policy.max_frames)
        return [(k + 0.5) * duration / n for k in range(n)]
    limit = duration if duration else math.inf
    count = (
        policy.max_frames if math.isinf(limit) else min(policy.max_frames, math.ceil(limit / policy.every))
    )
    return [k * policy.every for k in range(max(1, count))]


class _Decoder:
    """Forward decoding from the last seek, remembering where it stands."""

    def __init__(self, container: InputContainer, vstream: VideoStream, budget: _Budget) -> None:
        self.container = container
        self.vstream = vstream
        self.budget = budget
        self.frames: Iterator[VideoFrame] = budget.frames(_decode(container, vstream, budget.stats))
        self.last: VideoFrame | None = None  # last frame decoded (its time is the position)
        self.landed: float | None = None  # time of the first frame after the last seek (a keyframe)

    @property
    def position(self) -> float | None:
        return self.last.time if self.last is not None else None

    def seek(self, target: float) -> None:
        tb = self.vstream.time_base
        try:
            self.container.seek(round(target / tb), stream=self.vstream, backward=True)
        except av.FFmpegError as exc:
            raise _SeekFailed(f"seek to {target:.3f}s: {exc.strerror}") from None
        self.budget.stats.seeks += 1
        self.frames = self.budget.frames(_decode(self.container, self.vstream, self.budget.stats))
        self.last = None
        self.landed = None

    def advance_to(self, target: float) -> VideoFrame | None:
        """Decode to the first frame at or after ``target``; at end of stream, the last frame seen."""
        for frame in self.frames:
            if frame.time is None:
                raise _SeekFailed("frames have no timestamps")
            self.last = frame
            if self.landed is None:
                self.landed = frame.time
            if frame.time >= target - 1e-6:
                return frame
        return self.last


@dataclass(frozen=True)
class _Tail:
    """What to do with targets after the last frame (a container's duration often includes audio
    that outlasts the picture): uniform sampling lets the last frame stand in for them, interval
    sampling drops them unless the last frame is still on screen at that time."""

    last_frame_stands_in: bool
    frame_length: float  # seconds a frame stays on screen (1/fps), 0 when unknown

    def serves(self, frame: VideoFrame, target: float) -> bool:
        if frame.time is None or frame.time >= target - 1e-6 or self.last_frame_stands_in:
            return True
        return target < frame.time + self.frame_length - 1e-3


def _frames_by_seeking(
    container: InputContainer, vstream: VideoStream, targets: list[float], budget: _Budget, tail: _Tail
) -> list[VideoFrame]:
    decoder = _Decoder(container, vstream, budget)
    window = 0.0  # no index: learned distance a seek may have to decode (≈ GOP length)
    picked: list[VideoFrame] = []
    for target in targets:
        if budget.spent:
            break
        if _should_seek(vstream, decoder.position, target, window):
            decoder.seek(target)
            frame = decoder.advance_to(target)
            if frame is None:
                raise _SeekFailed(f"nothing decodes after seeking to {target:.3f}s")
            window = max(window, target - (decoder.landed if decoder.landed is not None else target))
        else:
            frame = decoder.advance_to(target)
            if frame is None:
                break
        if not tail.serves(frame, target):
            break  # past the end; later targets are further past
        if not picked or frame.pts != picked[-1].pts:
            picked.append(frame)
    return picked


def _should_seek(vstream: VideoStream, position: float | None, target: float, window: float) -> bool:
    """Seek only when the keyframe before ``target`` lies beyond what has been decoded already."""
    if position is None:
        return True
    if target <= position:
        return False
    keyframe = _keyframe_before(vstream, target)
    if keyframe is not None:
        return keyframe > position
    return target - position > window


def _keyframe_before(vstream: VideoStream, target: float) -> float | None:
    """Presentation time of the last indexed keyframe at or before ``target``, when the demuxer has
    an index (mp4 has one at once; Matroska loads its cues on the first seek).

    Index timestamps are decode times; with B-frames they run ahead of presentation times by the
    reorder delay, which the first entry (the first keyframe, shown at ``start_time``) reveals.
    """
    try:
        entries = vstream.index_entries
        if len(entries) < 2:
            return None
        start = vstream.start_time if vstream.start_time is not None else entries[0].timestamp
        delay = max(0, start - entries[0].timestamp)
        tb = vstream.time_base
        i = entries.search_timestamp(round(target / tb) - delay, backward=True)
        if i < 0:
            return None
        return float((entries[i].timestamp + delay) * tb)
    except (AttributeError, TypeError, av.FFmpegError, IndexError):
        return None


def _frames_linearly(
    container: InputContainer, vstream: VideoStream, targets: list[float], budget: _Budget, tail: _Tail
) -> list[VideoFrame]:
    """One decoding pass picking the first frame at or after each target (frames without pts are
    timed by their index and the frame rate)."""
    picked: list[VideoFrame] = []
    rate = _fps(vstream) or 25.0
    remaining = list(targets)
    last: VideoFrame | None = None
    for index, frame in enumerate(budget.frames(_decode(container, vstream, budget.stats))):
        last = frame
        time = frame.time if frame.time is not None else index / rate
        if remaining and time >= remaining[0] - 1e-6:
            picked.append(frame)
            while remaining and remaining[0] <= time + 1e-6:
                remaining.pop(0)
        if not remaining:
            break
    if (
        remaining
        and last is not None
        and (not picked or picked[-1] is not last)
        and tail.serves(last, remaining[0])
    ):
        picked.append(last)  # targets past the end: the last frame stands for them
    return picked


# --------------------------------------------------------------------------------------------
# Scene sampling


def _scene_frames(
    container: InputContainer, vstream: VideoStream, policy: FramePolicy, budget: _Budget
) -> list[VideoFrame]:
    """Keyframes whose histogram differs from the last kept one; every frame if there is one keyframe."""
    keyframes = 0
    picked: list[VideoFrame] = []
    last_hist = None
    for frame in budget.frames(_decode(container, vstream, budget.stats, keyframes_only=True)):
        keyframes += 1
        last_hist = _keep_if_new_scene(frame, policy, picked, last_hist)
        if len(picked) >= policy.max_frames:
            return picked
    if keyframes > 1 or budget.spent:
        return picked
    # A single keyframe says nothing about cuts: look at every frame instead (within the budget).
    log.debug("one keyframe only; scene detection decodes every frame")
    budget.stats.linear_fallback = True
    vstream.codec_context.skip_frame = "DEFAULT"
    try:
        container.seek(0)
    except av.FFmpegError:
        return picked
    picked, last_hist = [], None
    for frame in budget.frames(_decode(container, vstream, budget.stats)):
        last_hist = _keep_if_new_scene(frame, policy, picked, last_hist)
        if len(picked) >= policy.max_frames:
            break
    return picked


def _decode(
    container: InputContainer, vstream: VideoStream, stats: DecodeStats, keyframes_only: bool = False
) -> Iterator[VideoFrame]:
    """Decode the video stream from the container's position, skipping packets the decoder rejects
    (a few damaged packets should cost a few frames, not the file).

    ``keyframes_only``: only keyframe packets reach the decoder (some decoders, VP9's among them,
    ignore ``skip_frame``), and ``skip_frame`` drops any non-key picture that slips through.
    """
    if keyframes_only:
        vstream.codec_context.skip_frame = "NONKEY"
    for packet in container.demux(vstream):
        if keyframes_only and not (packet.is_keyframe or packet.size == 0):  # size 0: the final flush
            continue
        try:
            frames = vstream.decode(packet)
        except av.InvalidDataError:
            stats.bad_packets += 1
            if stats.bad_packets > MAX_BAD_PACKETS:
                raise
            continue
        yield from frames


def _keep_if_new_scene(
    frame: VideoFrame, policy: FramePolicy, picked: list[VideoFrame], last_hist: np.ndarray | None
) -> np.ndarray | None:
    """Append ``frame`` to ``picked`` when it starts a new scene; returns the last kept histogram."""
    hist = _frame_histogram(frame)
    if last_hist is None or histogram_distance(hist, last_hist) > policy.threshold:
        picked.append(frame)
        return hist
    return last_hist


def _frame_histogram(frame: VideoFrame) -> np.ndarray:
    height = max(1, round(HISTOGRAM_WIDTH * frame.height / max(1, frame.width)))
    small = frame.reformat(width=HISTOGRAM_WIDTH, height=height, format="rgb24").to_ndarray()
    return colour_histogram(small)


# --------------------------------------------------------------------------------------------
# Output


def _to_frame(frame: VideoFrame, start: float) -> Frame:
    """RGB image upright per the display rotation, timed from the first frame."""
    image = frame.to_image()
    rotation = _rotation(frame)
    if rotation:
        image = image.rotate(rotation, expand=True)  # both counter-clockwise degrees
    time = max(0.0, float(frame.time) - start) if frame.time is not None else 0.0
    return Frame(image=image, time=time, index=None)


def _rotation(frame: VideoFrame) -> int:
    try:
        degrees = int(frame.rotation)
    except (AttributeError, av.FFmpegError):
        return 0
    return degrees if degrees % 90 == 0 and degrees % 360 else 0
