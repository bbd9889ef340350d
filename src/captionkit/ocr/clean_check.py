"""``captionkit clean --checks ...,overlay_text``: drop images whose overlaid text is heavy.

A row is flagged when OCR reads more than ``max_chars`` characters (letters, digits and symbols, not
spaces) in one media file, or when the boxes of its text cover more than ``max_area`` of the picture.
Not a default check: it runs OCR on every row. Importing this module registers it.

Thresholds come from :class:`~captionkit.clean.CleanOptions` (``--max-text-chars``, ``--max-text-area``,
``--ocr``).
"""

from __future__ import annotations

import logging

import numpy as np

from captionkit.clean import CleanOptions, Row, register_check
from captionkit.errors import ConfigError
from captionkit.ocr.base import Box, OCRResult, load_ocr, merge_frames

log = logging.getLogger("captionkit")


def text_area(boxes: list[Box], size: tuple[int, int]) -> float:
    """Share (0..1) of a ``size`` picture covered by the union of ``boxes``."""
    width, height = size
    if width <= 0 or height <= 0:
        return 0.0
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return float(mask.mean())


def text_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


@register_check("overlay_text", default=False)
class OverlayText:
    name = "overlay_text"

    def __init__(self, options: CleanOptions | None = None) -> None:
        options = options or CleanOptions()
        self.max_chars = options.max_text_chars
        self.max_area = options.max_text_area
        if self.max_chars < 0:
            raise ConfigError(f"--max-text-chars must be >= 0 (got {self.max_chars})")
        if not 0 < self.max_area <= 1:
            raise ConfigError(f"--max-text-area must be a share of the picture in (0, 1] (got {self.max_area})")
        settings = options.ocr
        if settings.engine == "none":
            raise ConfigError("--checks overlay_text needs an OCR engine; --ocr none turns OCR off")
        self.engine = load_ocr(settings.engine or "rapidocr", settings)  # fails now, naming what to install

    def read(self, row: Row) -> list[tuple[str, OCRResult, tuple[int, int]]]:
        out = []
        for media in row.media:
            if media.frames:
                result = merge_frames(self.engine.read_many([f.image for f in media.frames]), engine=self.engine.name)
                out.append((media.path.name, result, media.frames[0].image.size))
        return out

    def __call__(self, row: Row) -> str | None:
        try:
            readings = self.read(row)
        except Exception as exc:  # an image OCR cannot read is no reason to drop the row, nor to stop the run
            log.warning("overlay_text: OCR failed on row %s: %s", row.item.id, exc)
            return None
        for name, result, size in readings:
            chars = text_chars(result.text)
            if chars > self.max_chars:
                return f"overlay text: {chars} characters (> {self.max_chars}) in {name}: {_quote(result.text)}"
            share = text_area([line.box for line in result.lines], size)
            if share > self.max_area:
                return f"overlay text: text covers {share:.0%} of {name} (> {self.max_area:.0%}): {_quote(result.text)}"
        return None


def _quote(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
