"""Make small, real media files for tests, examples and benchmarks.

Everything is synthetic and deterministic: a still is a little landscape (sky, sun, house, ground)
drawn with Pillow; animations and videos are a sequence of *scenes* (flat background colours, hard
cuts between them) with a white square moving across and, along the bottom, a strip of black and
white blocks that spells the frame number in binary, so that :func:`read_frame_index` can tell
which frame a decoder returned.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, saturated scene backgrounds: far apart in every channel so that histograms differ.
SCENE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (200, 30, 30),  # red
    (30, 60, 200),  # blue
    (40, 170, 60),  # green
    (235, 205, 40),  # yellow
    (140, 40, 170),  # purple
    (30, 180, 190),  # teal
    (240, 130, 20),  # orange
    (90, 90, 90),  # grey
)
INDEX_BITS = 10  # frame numbers are written modulo 1024

_VIDEO_DEFAULT_CODEC = {".webm": "libvpx-vp9"}
_AUDIO_CODEC = {".webm": "libopus", ".mkv": "libopus", ".mp4": "aac", ".mov": "aac", ".m4v": "aac"}
_AUDIO_RATE = {"libopus": 48_000, "aac": 44_100}


# --------------------------------------------------------------------------------------------
# Stills


def write_image(
    path: str | Path,
    size: tuple[int, int] = (320, 240),
    fmt: str | None = None,
    mode: str = "RGB",
    seed: int = 0,
    text: str | None = None,
) -> Path:
    """Draw a small landscape and save it; the format comes from ``fmt`` or the suffix.

    ``mode`` may be any Pillow mode the format can store; ``"I;16"`` gives real 16-bit values and
    alpha modes get a transparent border. ``.heic``/``.heif`` need pillow-heif.
    """
    path = Path(path)
    image = _landscape(size, seed, text)
    image = _to_mode(image, mode)
    if (fmt or path.suffix.lstrip(".")).upper() in ("HEIC", "HEIF"):
        import pillow_heif  # optional dependency; only this format needs it

        pillow_heif.register_heif_opener()
        fmt = "HEIF"
    image.save(path, format=fmt)
    return path


def _landscape(size: tuple[int, int], seed: int, text: str | None) -> Image.Image:
    rng = random.Random(seed)
    width, height = size
    sky = (rng.randint(90, 150), rng.randint(160, 210), rng.randint(220, 255))
    image = Image.new("RGB", size, sky)
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.55, 0.7))
    draw.rectangle((0, horizon, width, height), fill=(rng.randint(40, 80), rng.randint(130, 170), 50))
    sun_r = max(2, min(width, height) // 8)
    sun_x = int(width * rng.uniform(0.6, 0.85))
    draw.ellipse((sun_x - sun_r, sun_r, sun_x + sun_r, 3 * sun_r), fill=(250, 210, 40))
    house_w = max(4, width // 4)
    house_x = int(width * rng.uniform(0.1, 0.3))
    wall_top = horizon - house_w * 3 // 4
    draw.rectangle((house_x, wall_top, house_x + house_w, horizon), fill=(200, 60, 50))
    draw.polygon(
        [
            (house_x - 4, wall_top),
            (house_x + house_w // 2, wall_top - house_w // 2),
            (house_x + house_w + 4, wall_top),
        ],
        fill=(110, 60, 30),
    )
    if text:
        font = ImageFont.load_default(size=max(10, height // 10))
        draw.text((width // 20, height - height // 6), text, fill=(255, 255, 255), font=font)
    return image


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        return Image.fromarray(grey.astype("<u2"))  # Pillow infers I;16
    if mode in ("RGBA", "LA", "PA"):
        alpha = Image.new("L", image.size, 255)
        border = max(1, min(image.size) // 10)
        ImageDraw.Draw(alpha).rectangle((0, 0, image.width - 1, image.height - 1), outline=0, width=border)
        base = image.convert("L" if mode == "LA" else "RGB")
        base.putalpha(alpha)
        if mode == "PA":  # palette with per-entry alpha, stored by PNG as a tRNS chunk
            return base.quantize(colors=64, method=Image.Quantize.FASTOCTREE)
        return base
    if mode == "P":
        return image.quantize(colors=64)
    return image.convert(mode)


# --------------------------------------------------------------------------------------------
# Scene frames shared by GIFs and videos


def scene_of(index: int, n_frames: int, scenes: int) -> int:
    """Which scene (0-based) frame ``index`` of ``n_frames`` belongs to when cut into ``scenes``."""
    return min(scenes - 1, index * scenes // max(1, n_frames))


def scene_frame(index: int, n_frames: int, size: tuple[int, int], scenes: int = 1) -> np.ndarray:
    """RGB array (h, w, 3) of frame ``index``: scene background, moving square, frame-number strip."""
    width, height = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = SCENE_COLOURS[scene_of(index, n_frames, scenes) % len(SCENE_COLOURS)]
    strip = _strip_height(height)
    side = max(2, (height - strip) // 3)
    travel = max(1, width - side)
    x = (index * max(1, width // 16)) % travel  # moves every frame, wraps around
    y = (height - strip - side) // 2
    frame[y : y + side, x : x + side] = 255
    block = width // INDEX_BITS
    for bit in range(INDEX_BITS):
        frame[height - strip :, bit * block : (bit + 1) * block] = 255 if (index >> bit) & 1 else 0
    return frame


def read_frame_index(image: Image.Image) -> int:
    """The frame number drawn by :func:`scene_frame`, read back from a decoded (lossy) frame."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    height, width = grey.shape
    strip = _strip_height(height)
    block = width // INDEX_BITS
    row = height - strip // 2
    value = 0
    for bit in range(INDEX_BITS):
        centre = grey[
            row - strip // 4 : row + strip // 4 + 1, bit * block + block // 4 : (bit + 1) * block - block // 4
        ]
        if centre.mean() > 128:
            value |= 1 << bit
    return value


def _strip_height(height: int) -> int:
    return max(8, height // 8)


# --------------------------------------------------------------------------------------------
# Animations


def write_animated_gif(
    path: str | Path,
    n_frames: int = 6,
    size: tuple[int, int] = (96, 72),
    duration_ms: int | list[int] = 100,
    scenes: int = 1,
    loop: int = 0,
) -> Path:
    """Save an animation of :func:`scene_frame` frames; ``.gif``, ``.webp`` (animated) or ``.png`` (APNG).

    ``duration_ms`` is one duration for all frames or one per frame.
    """
    path = Path(path)
    frames = [Image.fromarray(scene_frame(i, n_frames, size, scenes)) for i in range(n_frames)]
    options: dict[str, object] = {"save_all": True, "duration": duration_ms, "loop": loop}
    suffix = path.suffix.lower()
    if suffix == ".webp":
        options.update(lossless=True, method=0)  # lossless keeps the index strip exact
    elif suffix == ".gif":
        options["disposal"] = 1
    frames[0].save(path, append_images=frames[1:], **options)
    return path


# --------------------------------------------------------------------------------------------
# Videos


def write_video(
    path: str | Path,
    seconds: float = 2.0,
    fps: int = 12,
    size: tuple[int, int] = (160, 120),
    codec: str | None = None,
    with_audio: bool = True,
    scenes: int = 1,
    gop: int | None = None,
    rotation: int = 0,
) -> Path:
    """Encode a video of :func:`scene_frame` frames with PyAV; the container follows the suffix.

    ``codec`` defaults to libx264 (libvpx-vp9 for ``.webm``). Each scene cut is forced to a
    keyframe, as real encoders' scene-cut detection would; ``gop`` sets the keyframe interval in
    frames otherwise. ``with_audio`` adds a 440 Hz tone (AAC in mp4/mov, Opus in webm/mkv).
    ``rotation`` stores a display rotation (degrees counter-clockwise) in the container.
    """
    import av  # imported here so that making images does not need PyAV loaded

    path = Path(path)
    suffix = path.suffix.lower()
    width, height = size[0] - size[0] % 2, size[1] - size[1] % 2  # yuv420p needs even sides
    n_frames = max(1, round(seconds * fps))
    with av.open(str(path), mode="w") as container:
        video = _add_video_stream(
            container, codec or _VIDEO_DEFAULT_CODEC.get(suffix, "libx264"), fps, (width, height), gop
        )
        if rotation:
            video.set_display_rotation(rotation)
        audio = _add_audio_stream(container, _AUDIO_CODEC.get(suffix, "aac")) if with_audio else None
        samples = _tone(audio.codec_context.sample_rate, seconds) if audio else None
        audio_pos = 0
        for index in range(n_frames):
            frame = av.VideoFrame.from_ndarray(
                scene_frame(index, n_frames, (width, height), scenes), format="rgb24"
            )
            frame.pts = index
            if index and scene_of(index, n_frames, scenes) != scene_of(index - 1, n_frames, scenes):
                frame.pict_type = av.video.frame.PictureType.I  # a hard cut starts a new GOP
            container.mux(video.encode(frame))
            if audio is not None and samples is not None:  # interleave: audio up to this frame's time
                audio_pos = _mux_audio(container, audio, samples, audio_pos, (index + 1) / fps)
        container.mux(video.encode(None))
        if audio is not None and samples is not None:
            _mux_audio(container, audio, samples, audio_pos, math.inf)
            container.mux(audio.encode(None))
    return path


def _add_video_stream(container, codec: str, fps: int, size: tuple[int, int], gop: int | None):  # type: ignore[no-untyped-def]
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, fps)
    if gop:
        stream.codec_context.gop_size = gop
    if codec == "libx264":
        # veryfast keeps B-frames (so decoders reorder, as with real files) and encodes quickly;
        # scenecut off so that keyframes are exactly the cuts and the GOP boundaries.
        stream.options = {"preset": "veryfast", "x264-params": "scenecut=0", "crf": "23"}
    elif codec == "libvpx-vp9":
        stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}
    return stream


def _add_audio_stream(container, codec: str):  # type: ignore[no-untyped-def]
    stream = container.add_stream(codec, rate=_AUDIO_RATE.get(codec, 44_100))
    stream.layout = "mono"
    return stream


def _tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _mux_audio(container, stream, samples: np.ndarray, pos: int, until: float) -> int:  # type: ignore[no-untyped-def]
    """Encode audio from sample ``pos`` up to time ``until`` (seconds); returns the new position.

    PyAV's encoder re-chunks to the codec's frame size (1024 for AAC, 960 for Opus) itself.
    """
    import av

    rate = stream.codec_context.sample_rate
    end = len(samples) if not math.isfinite(until) else min(len(samples), int(until * rate))
    if end > pos:
        frame = av.AudioFrame.from_ndarray(samples[pos:end].reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = pos
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    return max(pos, end)
