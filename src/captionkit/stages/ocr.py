"""``ocr`` stage: the visible text of each media file (``--ocr rapidocr|tesseract|none``).

Every sampled frame is read (a still image has one); a video's readings are merged so that a caption
shown on several frames appears once. Output: one ``{"text", "lines", "engine"}`` per media file, or
None when OCR is off (``--ocr none``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from PIL import Image

from captionkit.config import RunConfig
from captionkit.errors import ConfigError, MissingExtraError
from captionkit.media.types import LoadedMedia
from captionkit.ocr.base import OCREngine, OCRResult, load_ocr, merge_frames
from captionkit.pipeline.stage import ItemStage, Work, register_stage

log = logging.getLogger("captionkit")
DEFAULT_ENGINE = "rapidocr"
SAME_FRAME = 12  # grey levels: frames whose thumbnails differ nowhere by more than this are read once


@register_stage("ocr")
class OCRStage(ItemStage):
    name = "ocr"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.settings = config.ocr
        self.engine: OCREngine | None = None

        self.notice: str | None = None

    @property
    def enabled(self) -> bool:
        return (self.settings.engine or DEFAULT_ENGINE).strip().lower() != "none"

    def setup(self) -> None:
        if self.enabled and self.engine is None:
            try:
                self.engine = load_ocr(self.settings.engine or DEFAULT_ENGINE, self.settings)
            except MissingExtraError as exc:
                if self.settings.engine is not None:  # named by the user: must work
                    raise
                self.notice = f"OCR is off: the default engine {DEFAULT_ENGINE} is not installed ({exc})"
                log.warning(self.notice)
                self.settings = dataclasses.replace(self.settings, engine="none")

    def process_one(self, work: Work) -> list[dict[str, Any]] | None:
        if not self.enabled:
            return None
        loaded = work.scratch.get("media")
        if loaded is None:
            raise ConfigError("--stages: the 'ocr' stage needs the 'media' stage before it")
        self.setup()
        return [self.read_media(media).to_dict() for media in loaded]

    def read_media(self, media: LoadedMedia) -> OCRResult:
        """The text of one file: every distinct sampled frame read, the readings merged."""
        assert self.engine is not None
        images = distinct_frames([frame.image for frame in media.frames])
        return merge_frames(self.engine.read_many(images), engine=self.engine.name)


def distinct_frames(images: list[Image.Image]) -> list[Image.Image]:
    """``images`` without those that look the same as the last one kept (a still video, a paused scene)."""
    kept: list[Image.Image] = []
    last: np.ndarray | None = None
    for image in images:
        thumb = np.asarray(image.convert("L").resize((96, 96), Image.Resampling.BILINEAR), dtype=np.int16)
        if last is not None and int(np.abs(thumb - last).max()) <= SAME_FRAME:
            continue
        kept.append(image)
        last = thumb
    return kept
