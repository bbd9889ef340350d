"""Per-stage model settings as they appear in a run config (YAML sections and CLI flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from captionkit.errors import ConfigError
from captionkit.models.options import GenerationOptions, ModelOptions


@dataclass(frozen=True)
class ModelSettings:
    """Decoding and placement fields shared by every model stage's settings (flat, so YAML stays flat)."""

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
    quantize: str = "none"  # --quantize int8 (CPU)
    attn: str | None = None  # --attn sdpa|eager
    compile: bool = False  # --compile: static KV cache + torch.compile

    def __post_init__(self) -> None:
        _ = (self.generation, self.model_options)  # build both now so a bad value fails here, naming its flag

    @property
    def generation(self) -> GenerationOptions:
        names = {f.name for f in dataclasses.fields(GenerationOptions)}
        return GenerationOptions(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})

    @property
    def model_options(self) -> ModelOptions:
        return ModelOptions(device=self.device, dtype=self.dtype, batch_size=self.batch_size,
                            quantize=self.quantize, attn=self.attn, compile=self.compile)


@dataclass(frozen=True)
class CaptionSettings(ModelSettings):
    """``caption:`` in YAML; flags --captioner, --prompt, --max-new-tokens, --num-beams, ... on describe/run."""

    model: str | None = None  # catalogue name, backend name, hub id or folder; None: the catalogue default
    prompt: str | None = None  # conditional caption prefix, or an instruction for chat VLMs
    # When the default model cannot be fetched (offline, no hub), fall back to this backend with a notice.
    # Only applies to the default: a model the user named must load or the run stops with the reason.
    fallback: str | None = "basic"
    task: str | None = None  # Florence-2 task: caption | detailed_caption | more_detailed_caption | ocr
    frames_together: bool = True  # chat VLMs that take several images see a video's frames in one prompt

    @property
    def model_options(self) -> ModelOptions:
        extra: dict[str, Any] = {"task": self.task} if self.task else {}
        return dataclasses.replace(super().model_options, extra=extra)


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


@dataclass(frozen=True)
class WriteSettings(ModelSettings):
    """``write:`` in YAML; flags --writer, --platform, --tone, --hashtags, ... on write/run."""

    writer: str | None = None  # catalogue name, hub id, folder, http(s) URL of an OpenAI-compatible server, or template
    fallback: str | None = "template"  # when the default writer cannot be had: this one, with a notice
    platform: str = "x"  # x | instagram | linkedin | facebook | alt-text | adobe (presets) ...
    template: str | None = None  # a user's Jinja2 template file instead of the platform's
    tone: str = "friendly"
    language: str = "en"
    hashtags: int | None = None  # None: the platform's default count
    emoji: bool | None = None  # None: the platform's default
    call_to_action: str | None = None
    brand: str | None = None  # None: the item's metadata.company
    handle: str | None = None  # None: the item's metadata.username
    num_candidates: int = 1
    examples: str | None = None  # file of past posts for in-context learning
    k: int = 3  # examples per prompt
    embedder: str | None = None  # sentence-transformers model id/folder; None: all-MiniLM-L6-v2, BM25 if unavailable
    max_new_tokens: int = 120  # posts are longer than captions
    batch_size: int = 8
    adapter: str | None = None  # a LoRA/PEFT adapter folder loaded on top of a local writer
    api_key_env: str = "OPENAI_API_KEY"  # OpenAI-compatible writer: env var holding the key (if any)
    api_model: str | None = None  # OpenAI-compatible writer: model name sent to the server (default: its first)
    concurrency: int = 4  # OpenAI-compatible writer: requests in flight
    timeout: float = 60.0  # OpenAI-compatible writer: seconds per request
    retries: int = 3  # OpenAI-compatible writer: extra attempts after timeouts / 429 / 5xx
    max_regenerations: int = 1  # over-long posts are regenerated this often before being trimmed

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ConfigError(f"--num-candidates must be >= 1 (got {self.num_candidates})")
        if self.k < 0:
            raise ConfigError(f"--k must be >= 0 (got {self.k})")
        if self.hashtags is not None and self.hashtags < 0:
            raise ConfigError(f"--hashtags must be >= 0 (got {self.hashtags})")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1 (got {self.concurrency})")
        super().__post_init__()

    def writer_cache_key(self) -> tuple[Any, ...]:
        """What changes a loaded writer (not the per-call decoding settings)."""
        return (self.device, self.dtype, self.quantize, self.attn, self.compile, self.adapter, self.api_key_env,
                self.api_model, self.concurrency, self.timeout, self.retries)


__all__ = ["CaptionSettings", "OCRSettings", "SpeechSettings", "WriteSettings", "field"]
