"""Decode the sound of a media file into the mono float32 samples that speech models take.

The first audio stream is decoded with PyAV (FFmpeg) and resampled by ``av.AudioResampler`` to
``sample_rate`` Hz mono ``flt``. A file with no audio stream gives ``None`` (callers skip it); a
file that cannot be opened, or whose audio stream cannot be decoded, raises
:class:`~captionkit.errors.MediaError` naming the file and the reason. PyAV's exceptions never escape.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from captionkit.errors import CaptionkitError, MediaError
from captionkit.media.sniff import check_file

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what Whisper's feature extractor expects
MAX_BAD_PACKETS = 50  # more rejected audio packets than this and the track is called corrupt


def load_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> tuple[np.ndarray, float] | None:
    """The first audio stream of ``path`` as ``(samples, duration)``, or ``None`` if it has no audio stream.

    ``samples`` is a 1-D float32 array of mono samples at ``sample_rate`` Hz in [-1, 1]. Decoding
    stops once ``max_seconds`` of audio are in hand, so ``samples`` holds at most that much;
    ``duration`` is the length of the whole audio track in seconds (from the container when
    decoding stopped early), so ``duration > max_seconds`` tells the caller that it was cut.
    A few damaged packets are skipped; a track that yields nothing but errors raises
    :class:`MediaError`.
    """
    path = Path(path)
    name = str(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0 (got {sample_rate})")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 (got {max_seconds})")
    check_file(path)
    try:
        container = av.open(name, mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read audio: {name}: {_reason(exc)}") from None
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot read audio: {name}: {' '.join(str(exc).split())[:200]}") from None
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        limit = None if max_seconds is None else round(max_seconds * sample_rate)
        try:
            samples, complete, bad = _decode(container, stream, sample_rate, limit)
        except CaptionkitError:
            raise
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode audio: {name}: {_reason(exc)}") from None
        except (OSError, ValueError, EOFError) as exc:
            raise MediaError(f"cannot decode audio: {name}: {' '.join(str(exc).split())[:200]}") from None
        if bad > MAX_BAD_PACKETS or (bad and not samples.size):
            raise MediaError(
                f"cannot decode audio: {name}: the audio track ({stream.codec_context.name}) is corrupt: "
                f"the decoder rejected {bad} packet(s)"
            )
        if bad:
            log.warning("%s: skipped %d damaged audio packet(s)", name, bad)
        decoded = samples.size / sample_rate
        duration = decoded if complete else max(decoded, _declared_duration(container, stream) or 0.0)
        if limit is not None and samples.size > limit:
            samples = samples[:limit]
        return samples, duration
    finally:
        container.close()


def _decode(container, stream, sample_rate: int, limit: int | None) -> tuple[np.ndarray, bool, int]:  # type: ignore[no-untyped-def]
    """(samples, decoded to the end?, packets rejected) for ``stream``, stopping after ``limit`` samples."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    have = 0
    bad = 0
    complete = True
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                break
            continue
        for frame in frames:
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                have += chunks[-1].size
        if limit is not None and have >= limit:
            complete = False
            break
    if complete:
        for out in resampler.resample(None):  # what the resampler still holds
            chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return samples.astype(np.float32, copy=False), complete, bad


def _declared_duration(container, stream) -> float | None:  # type: ignore[no-untyped-def]
    """The audio track's length as the container declares it (stream first, then the whole file)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _reason(exc: av.FFmpegError) -> str:
    reason = exc.strerror or exc.__class__.__name__
    logged = getattr(exc, "log", None)  # (level, component, message) when FFmpeg logged why
    if logged and len(logged) == 3 and logged[2]:
        reason = f"{reason} ({' '.join(str(logged[2]).split())})"
    return reason
