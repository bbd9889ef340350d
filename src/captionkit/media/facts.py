"""Plain facts about loaded media, for prompts and metadata: size, orientation, timing, colours.

Dominant colours are computed over the sampled frames: each frame is downscaled, every pixel is
given the name of the nearest entry of :data:`COLOUR_NAMES` in CIELAB (so distances roughly follow
perception), and names are ranked by the share of pixels they got. The ``hex`` of a name is the
mean colour of its pixels, so it says which red, not just "red". Everything is deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from captionkit.media.types import LoadedMedia

SQUARE_TOLERANCE = 0.05  # |w/h - 1| within 5% counts as square
SAMPLE_SIDE = 64  # frames are downscaled to at most this many pixels a side for colours
MAX_COLOUR_FRAMES = 16  # more frames add time, not accuracy
MIN_SHARE = 0.01  # colours covering less than 1% of pixels are not "dominant"

# Compact colour vocabulary (sRGB). Entries sit near the middle of what people call each name.
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark grey": (64, 64, 64),
    "grey": (128, 128, 128),
    "light grey": (192, 192, 192),
    "white": (255, 255, 255),
    "red": (220, 30, 35),
    "dark red": (128, 10, 20),
    "orange": (245, 130, 20),
    "yellow": (250, 220, 30),
    "olive": (128, 128, 20),
    "light green": (150, 230, 80),
    "green": (40, 160, 50),
    "dark green": (10, 90, 30),
    "teal": (0, 128, 128),
    "turquoise": (64, 210, 200),
    "sky blue": (130, 200, 240),
    "blue": (30, 70, 230),
    "navy": (10, 20, 110),
    "purple": (120, 40, 160),
    "lavender": (190, 160, 230),
    "magenta": (220, 30, 190),
    "pink": (250, 160, 190),
    "brown": (130, 80, 35),
    "beige": (225, 205, 165),
    "cream": (250, 245, 215),
}

# Common aspect ratios, named when the media is within 2% of one.
ASPECT_NAMES: dict[str, float] = {
    "1:1": 1.0,
    "5:4": 5 / 4,
    "4:3": 4 / 3,
    "3:2": 3 / 2,
    "16:10": 16 / 10,
    "16:9": 16 / 9,
    "2:1": 2.0,
    "21:9": 21 / 9,
    "4:5": 4 / 5,
    "3:4": 3 / 4,
    "2:3": 2 / 3,
    "9:16": 9 / 16,
}


def media_facts(loaded: LoadedMedia, n_colours: int = 3) -> dict[str, Any]:
    """JSON-friendly facts about ``loaded`` (see the module docstring for the colours)."""
    info = loaded.info
    return {
        "kind": info.kind,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "orientation": orientation(info.width, info.height),
        "aspect_ratio": round(info.width / info.height, 4) if info.height else None,
        "aspect_name": aspect_name(info.width, info.height),
        "duration": info.duration,
        "frame_count": info.frame_count,
        "fps": info.fps,
        "has_audio": info.has_audio,
        "bytes": info.bytes,
        "frames_sampled": len(loaded.frames),
        "dominant_colours": dominant_colours([f.image for f in loaded.frames], n_colours),
    }


def orientation(width: int, height: int) -> str:
    """``"landscape"``, ``"portrait"`` or ``"square"`` (aspect within 5% of 1)."""
    if not width or not height or abs(width / height - 1.0) <= SQUARE_TOLERANCE:
        return "square"
    return "landscape" if width > height else "portrait"


def aspect_name(width: int, height: int) -> str | None:
    """The common ratio (``"16:9"``...) within 2% of ``width/height``, or None."""
    if not width or not height:
        return None
    ratio = width / height
    name, value = min(ASPECT_NAMES.items(), key=lambda item: abs(item[1] - ratio))
    return name if abs(value - ratio) / value <= 0.02 else None


def dominant_colours(images: list[Image.Image], n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` colour names covering most pixels: ``{"name", "hex", "share"}``, largest share first."""
    if not images or n < 1:
        return []
    pixels = _sample_pixels(images)
    labels = _nearest_names(srgb_to_lab(pixels))
    counts = np.bincount(labels, minlength=len(_NAMES))
    total = counts.sum()
    ranked = sorted(range(len(_NAMES)), key=lambda i: (-counts[i], i))  # ties by table order
    result = []
    for i in ranked[:n]:
        share = counts[i] / total
        if share < MIN_SHARE:
            break
        mean = pixels[labels == i].mean(axis=0)
        result.append({"name": _NAMES[i], "hex": _hex(mean), "share": round(float(share), 4)})
    return result


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0-255, shape (..., 3)) to CIELAB under D65."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    lightness = 116 * f[..., 1] - 16
    return np.stack([lightness, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_NAMES = list(COLOUR_NAMES)
_NAME_LAB = srgb_to_lab(np.array(list(COLOUR_NAMES.values()), dtype=np.float64))


def _sample_pixels(images: list[Image.Image]) -> np.ndarray:
    """(N, 3) float RGB pixels from up to MAX_COLOUR_FRAMES evenly spread, downscaled frames."""
    step = max(1, len(images) / MAX_COLOUR_FRAMES)
    chosen = [images[int(k * step)] for k in range(min(len(images), MAX_COLOUR_FRAMES))]
    arrays = []
    for image in chosen:
        small = image.convert("RGB")
        # reduce() box-averages by an integer factor: fast and deterministic, keeps flat areas exact.
        factor = max(1, max(small.size) // SAMPLE_SIDE)
        if factor > 1:
            small = small.reduce(factor)
        arrays.append(np.asarray(small, dtype=np.float64).reshape(-1, 3))
    return np.concatenate(arrays)


def _nearest_names(lab: np.ndarray) -> np.ndarray:
    distances = ((lab[:, None, :] - _NAME_LAB[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1)


def _hex(rgb: np.ndarray) -> str:
    r, g, b = (int(v) for v in np.clip(np.rint(rgb), 0, 255))
    return f"#{r:02x}{g:02x}{b:02x}"
