"""Visible text in images and video frames, behind the :class:`~captionkit.ocr.base.OCREngine` protocol.

``load_ocr("rapidocr", settings)`` (the default, bundled ONNX models) or ``load_ocr("tesseract", settings)``
(the ``tesseract`` binary and its language packs); ``none`` turns OCR off. Engines return lines already
filtered and in reading order; :func:`merge_frames` folds the readings of a video's frames into one.
"""

from captionkit.ocr.base import (
    OCREngine,
    OCRLine,
    OCRResult,
    OCRWord,
    available_ocr,
    finish,
    load_ocr,
    merge_frames,
    reading_order,
    register_ocr,
)

__all__ = [
    "OCREngine",
    "OCRLine",
    "OCRResult",
    "OCRWord",
    "available_ocr",
    "finish",
    "load_ocr",
    "merge_frames",
    "reading_order",
    "register_ocr",
]
