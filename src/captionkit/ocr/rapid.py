"""``--ocr rapidocr`` (the default): PaddleOCR's PP-OCR models run by onnxruntime, bundled with
``rapidocr-onnxruntime`` so that nothing is downloaded. They read Chinese and English (Latin script);
``--ocr-lang`` does not apply. Detection gives a quadrilateral per line; we report its bounding box.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Sequence
from typing import Any

from PIL import Image

from captionkit.extras import require
from captionkit.models.settings import OCRSettings
from captionkit.ocr.base import OCRLine, OCRResult, clamp_box, finish, register_ocr, to_rgb

log = logging.getLogger("captionkit")

# The model files are bundled with the package: languages they read, in tesseract's spelling and others'.
_READS = {"eng", "en", "chi_sim", "chi_tra", "ch", "zh", "chi"}
_MODEL: Any = None
_MODEL_LOCK = threading.Lock()


def _shared_model() -> Any:
    """One RapidOCR (three ONNX sessions) per process, whatever the settings."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            rapidocr = require("rapidocr_onnxruntime", "ocr", "the 'rapidocr' OCR engine (--ocr rapidocr)")
            _MODEL = rapidocr.RapidOCR()
        return _MODEL


@register_ocr("rapidocr")
class RapidOCREngine:
    name = "rapidocr"

    def __init__(self, settings: OCRSettings | None = None) -> None:
        self.settings = settings or OCRSettings(engine=self.name)
        self.model = _shared_model()
        other = [lang for lang in self.settings.languages if lang.lower() not in _READS]
        if other:
            log.warning(
                "rapidocr reads English and Chinese with its bundled models; --ocr-lang %s does not apply "
                "(use --ocr tesseract for other languages)", "+".join(other),
            )

    def read(self, image: Image.Image) -> OCRResult:
        image = to_rgb(image)
        # text_score=0: keep every reading here and let min_confidence decide, the same way for every engine.
        raw, _ = self.model(image, text_score=0.0)
        lines = []
        for entry in raw or []:
            quad, text, score = entry[0], entry[1], entry[2]
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            box = clamp_box((min(xs), min(ys), max(xs), max(ys)), image.width, image.height)
            lines.append(OCRLine(unicodedata.normalize("NFKC", str(text)), float(score), box))
        return finish(lines, self.name, self.settings.min_confidence)

    def read_many(self, images: Sequence[Image.Image]) -> list[OCRResult]:
        return [self.read(image) for image in images]
