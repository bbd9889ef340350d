"""``--ocr tesseract``: the ``tesseract`` command (Debian: ``apt-get install tesseract-ocr``), run once
per image with TSV output. ``--ocr-lang eng+deu`` picks the language packs (``tesseract-ocr-deu``...).

Tesseract reports words with their block, paragraph and line numbers; words of one line become one
:class:`OCRLine` whose box is the union of theirs and whose confidence is their mean.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from captionkit.errors import CaptionkitError, ConfigError, MissingExtraError
from captionkit.models.settings import OCRSettings
from captionkit.ocr.base import (
    OCRLine,
    OCRResult,
    OCRWord,
    clamp_box,
    finish,
    merge_frames,
    register_ocr,
    to_rgb,
    union_box,
)

TIMEOUT = 120.0  # seconds for one image
MIN_HEIGHT = 300  # shorter images are enlarged towards this (at most 3x): tesseract misreads small print
# Binarisations tried on every image, results merged: 0 = Otsu (tesseract's default; dark print on light
# ground), 2 = Sauvola (local; finds light captions on photos that Otsu merges into the background).
THRESHOLDING: tuple[int, ...] = (0, 2)
_LANG = re.compile(r"^[A-Za-z0-9_]+$")


def find_binary() -> str:
    """The ``tesseract`` executable, or a :class:`MissingExtraError` saying how to install it."""
    path = shutil.which("tesseract")
    if path is None:
        raise MissingExtraError(
            "the 'tesseract' OCR engine (--ocr tesseract) needs the tesseract program, which is not on PATH: "
            "apt-get install tesseract-ocr (macOS: brew install tesseract), or use --ocr rapidocr"
        )
    return path


def installed_languages(binary: str | None = None) -> list[str]:
    """Language packs tesseract can load (``tesseract --list-langs``)."""
    binary = binary or find_binary()
    try:
        proc = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30, env=_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CaptionkitError(f"--ocr tesseract: cannot run {binary} --list-langs: {exc}") from None
    text = proc.stdout + "\n" + proc.stderr
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return sorted({ln for ln in lines if _LANG.match(ln)})


def package_for(lang: str) -> str:
    """The Debian/Ubuntu package holding a language pack (``chi_sim`` -> ``tesseract-ocr-chi-sim``)."""
    return "tesseract-ocr-" + lang.lower().replace("_", "-")


def _env() -> dict[str, str]:
    # One thread per tesseract process: OpenMP threads slow small images down, and we run images in parallel.
    return {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}


@register_ocr("tesseract")
class TesseractEngine:
    name = "tesseract"

    def __init__(self, settings: OCRSettings | None = None, psm: int = 3) -> None:
        self.settings = settings or OCRSettings(engine=self.name)
        self.binary = find_binary()
        self.psm = psm
        bad = [lang for lang in self.settings.languages if not _LANG.match(lang)]
        if bad:
            raise ConfigError(f"--ocr-lang: {', '.join(map(repr, bad))} is not a tesseract language code (e.g. eng, deu, chi_sim)")
        have = installed_languages(self.binary)
        missing = [lang for lang in self.settings.languages if lang not in have]
        if missing:
            packages = " ".join(package_for(lang) for lang in missing)
            raise MissingExtraError(
                f"--ocr-lang: tesseract has no language pack for {', '.join(missing)} "
                f"(installed: {', '.join(have) or 'none'}): apt-get install {packages}"
            )
        self.languages = "+".join(self.settings.languages)

    def read(self, image: Image.Image) -> OCRResult:
        # Grey first: tesseract's own reduction of colour loses light text on coloured backgrounds.
        image = image if image.mode == "L" else to_rgb(image).convert("L")
        if min(image.size) < 4:
            return OCRResult("", [], self.name)
        scale = min(3.0, MIN_HEIGHT / image.height) if image.height < MIN_HEIGHT else 1.0
        scaled = image
        if scale > 1.0:
            scaled = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        with tempfile.TemporaryDirectory(prefix="captionkit-ocr-") as tmp:
            path = Path(tmp) / "image.png"
            scaled.save(path, format="PNG")
            readings = [
                finish(parse_tsv(self._run(path, method), scale=scale, size=image.size), self.name,
                       self.settings.min_confidence)
                for method in THRESHOLDING
            ]
        if len(readings) == 1:
            return readings[0]
        # The passes see different text (white captions on photos vs dark print): keep each line once.
        # Later passes only add lines of 3+ letters or digits: their typical noise is a shape read as "a".
        extra = [OCRResult.from_lines([ln for ln in r.lines if _alnum(ln.text) >= 3], self.name) for r in readings[1:]]
        return finish(merge_frames([readings[0], *extra]).lines, self.name, self.settings.min_confidence)

    def read_many(self, images: Sequence[Image.Image]) -> list[OCRResult]:
        if len(images) <= 1:
            return [self.read(image) for image in images]
        with ThreadPoolExecutor(max_workers=min(len(images), os.cpu_count() or 1, 4)) as pool:
            return list(pool.map(self.read, images))

    def _run(self, path: Path, thresholding: int = 0) -> str:
        cmd = [self.binary, str(path), "stdout", "-l", self.languages, "--psm", str(self.psm)]
        if thresholding:
            cmd += ["-c", f"thresholding_method={thresholding}"]
        cmd.append("tsv")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
        except subprocess.TimeoutExpired:
            raise CaptionkitError(f"--ocr tesseract: gave up on an image after {TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise CaptionkitError(f"--ocr tesseract: cannot run {self.binary}: {exc}") from None
        if proc.returncode != 0:
            detail = " ".join(proc.stderr.split())[-300:] or f"exit status {proc.returncode}"
            raise CaptionkitError(f"--ocr tesseract failed: {detail}")
        return proc.stdout


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def parse_tsv(tsv: str, scale: float = 1.0, size: tuple[int, int] | None = None) -> list[OCRLine]:
    """Lines from tesseract's TSV: words grouped by (page, block, paragraph, line), in tesseract's order.

    Rows with confidence -1 (layout rows, not words) and empty words are skipped; boxes are divided by
    ``scale`` (the enlargement the image was read at) and kept inside ``size``.
    """
    groups: dict[tuple[str, str, str, str], list[OCRWord]] = {}
    rows = tsv.splitlines()
    width, height = size or (10**9, 10**9)
    for row in rows[1:] if rows and rows[0].startswith("level") else rows:
        cols = row.split("\t", 11)
        if len(cols) < 12 or cols[0] != "5":
            continue
        text = cols[11].strip()
        try:
            conf = float(cols[10])
            left, top, w, h = (int(c) for c in cols[6:10])
        except ValueError:
            continue
        if conf < 0 or not text:
            continue
        box = clamp_box((left / scale, top / scale, (left + w) / scale, (top + h) / scale), width, height)
        groups.setdefault((cols[1], cols[2], cols[3], cols[4]), []).append(OCRWord(text, conf / 100.0, box))
    lines = []
    for words in groups.values():
        lines.append(
            OCRLine(
                text=" ".join(w.text for w in words),
                confidence=sum(w.confidence for w in words) / len(words),
                box=union_box(w.box for w in words),
                words=words,
            )
        )
    return lines
