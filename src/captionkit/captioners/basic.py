"""``basic``: a model-free captioner. Needs no download, so it runs anywhere (and is the offline fallback).

It says what can be measured without a learned model: shape, dominant colours in words, how many frontal
faces OpenCV's bundled Haar cascade finds, and the text OCR reads. Honest, if plain:
"A landscape image, mostly sky blue, green and red, with 1 face and the text "SUMMER LINE"."
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.errors import CaptionkitError
from captionkit.extras import available
from captionkit.media.facts import dominant_colours, orientation
from captionkit.models.options import GenerationOptions, ModelOptions


@register_captioner("basic", description="model-free: shape, colours, faces (OpenCV) and OCR text")
class BasicCaptioner(CaptionerBase):
    backend = "basic"

    def __init__(self, model_id: str = "basic", options: ModelOptions | None = None) -> None:
        super().__init__("basic", options or ModelOptions())
        self._faces: Any = None
        self._ocr: Any = None
        self.use_ocr = self.options.extra.get("ocr", "rapidocr")

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        return [self.describe_image(im) for im in images]

    def describe_image(self, image: Image.Image) -> str:
        shape = orientation(*image.size)
        colours = [c["name"] for c in dominant_colours([image], 3) if c["share"] >= 0.08]
        parts = [f"A {shape} image"]
        if colours:
            parts.append("mostly " + _join(colours))
        extras = []
        if (faces := self.count_faces(image)) is not None and faces:
            extras.append(f"{faces} face{'s' if faces != 1 else ''}")
        if text := self.read_text(image):
            extras.append(f'the text "{text}"')
        sentence = ", ".join(parts)
        if extras:
            sentence += ", with " + " and ".join(extras)
        return sentence + "."

    def count_faces(self, image: Image.Image) -> int | None:
        """Frontal faces found by OpenCV's Haar cascade, or None when OpenCV is not installed."""
        if self._faces is None:
            if not available("cv2"):
                return None
            import cv2

            self._faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        grey = np.asarray(image.convert("L"))
        min_side = max(24, min(grey.shape) // 12)  # ignore specks: a face is at least ~1/12 of the picture
        found = self._faces.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        return len(found)

    def read_text(self, image: Image.Image, limit: int = 80) -> str:
        """The OCR text on one line (shortened), or "" when no OCR engine is available."""
        if self.use_ocr == "none":
            return ""
        if self._ocr is None:
            try:
                from captionkit.models.settings import OCRSettings
                from captionkit.ocr import load_ocr

                self._ocr = load_ocr(self.use_ocr, OCRSettings(engine=self.use_ocr))
            except (CaptionkitError, ImportError):
                self.use_ocr = "none"  # no OCR here: describe without it rather than fail
                return ""
        text = " ".join(self._ocr.read(image).text.split())
        return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
