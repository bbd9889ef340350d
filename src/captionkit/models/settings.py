"""Per-stage model settings as they appear in a run config (YAML sections and CLI flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from captionkit.errors import ConfigError
from captionkit.models.options import GenerationOptions, ModelOptions


@dataclass(frozen=True)
class CaptionSettings:
    """``caption:`` in YAML; flags --captioner, --prompt, --max-new-tokens, --num-beams, ... on describe/run."""

    model: str | None = None  # catalogue name, backend name, hub id or folder; None: the catalogue default
    prompt: str | None = None  # conditional caption prefix, or an instruction for chat VLMs
    # When the default model cannot be fetched (offline, no hub), fall back to this backend with a notice.
    # Only applies to the default: a model the user named must load or the run stops with the reason.
    fallback: str | None = "basic"
    max_new_tokens: int = 40
    num_beams: int = 1
    do_sample: bool = False
    top_p: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    seed: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 4
    task: str | None = None  # Florence-2 task: caption | detailed_caption | more_detailed_caption | ocr
    frames_together: bool = True  # chat VLMs that take several images see a video's frames in one prompt

    def __post_init__(self) -> None:
        _ = (self.generation, self.model_options)  # build both now so a bad value fails here, naming its flag

    @property
    def generation(self) -> GenerationOptions:
        names = {f.name for f in dataclasses.fields(GenerationOptions)}
        return GenerationOptions(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    @property
    def model_options(self) -> ModelOptions:
        extra: dict[str, Any] = {"task": self.task} if self.task else {}
        return ModelOptions(device=self.device, dtype=self.dtype, batch_size=self.batch_size, extra=extra)


@dataclass(frozen=True)
class OCRSettings:
    """``ocr:`` in YAML; flags --ocr, --ocr-lang, --ocr-min-confidence."""

    engine: str | None = None  # rapidocr | tesseract | none; None: rapidocr, skipped with a notice if not installed
    languages: tuple[str, ...] = ("eng",)  # tesseract language packs (e.g. eng, deu, fra)
    min_confidence: float = 0.5  # words/lines below this confidence are dropped as noise

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError(f"--ocr-min-confidence must be between 0 and 1 (got {self.min_confidence})")
        langs = self.languages.replace("+", ",").split(",") if isinstance(self.languages, str) else self.languages
        object.__setattr__(self, "languages", tuple(s.strip() for s in langs if s.strip()))  # YAML lists, "eng+deu"
        if not self.languages:
            raise ConfigError("--ocr-lang must name at least one language (e.g. eng)")


@dataclass(frozen=True)
class SpeechSettings:
    """``speech:`` in YAML; flags --speech-model, --speech-language."""

    model: str | None = None  # catalogue name, hub id or folder; "none" skips; None: the catalogue default
    language: str | None = None  # None: detected
    device: str = "auto"
    dtype: str = "auto"
    max_seconds: float = 600.0  # longer audio is transcribed up to this point, and says so
    fallback: str | None = "none"  # when the default model cannot be fetched: skip with a notice

    @property
    def model_options(self) -> ModelOptions:
        return ModelOptions(device=self.device, dtype=self.dtype)


__all__ = ["CaptionSettings", "OCRSettings", "SpeechSettings", "field"]
