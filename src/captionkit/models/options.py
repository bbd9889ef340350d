"""Decoding and placement options shared by every model backend (captioners, VQA, writers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from captionkit.errors import ConfigError

DTYPES = ("auto", "fast", "float32", "bfloat16", "float16")
QUANTIZE = ("none", "int8")
ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class GenerationOptions:
    """What ``model.generate`` receives. Unset (None) fields keep the model's own generation config."""

    max_new_tokens: int = 40
    num_beams: int = 1
    do_sample: bool = False
    top_p: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    seed: int | None = None  # seeds torch before each generate call, for reproducible sampling

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1 (got {self.max_new_tokens})")
        if self.num_beams < 1:
            raise ConfigError(f"--num-beams must be >= 1 (got {self.num_beams})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.temperature is not None and self.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0 (got {self.temperature})")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise ConfigError(f"--repetition-penalty must be > 0 (got {self.repetition_penalty})")
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 0:
            raise ConfigError(f"--no-repeat-ngram-size must be >= 0 (got {self.no_repeat_ngram_size})")
        if (self.top_p is not None or self.temperature is not None) and not self.do_sample:
            raise ConfigError("--top-p/--temperature only apply with --do-sample")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate``; greedy decoding is explicit so model defaults cannot turn on sampling."""
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": self.do_sample}
        for name in ("top_p", "temperature", "repetition_penalty", "no_repeat_ngram_size"):
            if (value := getattr(self, name)) is not None:
                kw[name] = value
        return kw


@dataclass(frozen=True)
class ModelOptions:
    """Where and how a model runs."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (float32 on CPU, bfloat16/float16 on GPU) | fast (+ bfloat16 on CPUs with bf16 units) | ...
    batch_size: int = 4
    # Fast paths (docs/benchmarks.md): each trades something, and says what.
    quantize: str = "none"  # int8: dynamic int8 Linear layers (CPU only; outputs close to, not equal to, float32)
    attn: str | None = None  # sdpa | eager; None: the model's default (sdpa where transformers supports it)
    compile: bool = False  # static KV cache + torch.compile of the forward pass (slow first call per shape)
    revision: str | None = None  # hub revision (branch, tag or commit)
    trust_remote_code: bool = False  # never on by default: it runs code from the model repository
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific settings (e.g. Florence-2 task)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)} (got {self.quantize!r})")
        if self.attn is not None and self.attn not in ATTENTION:
            raise ConfigError(f"--attn must be one of {', '.join(ATTENTION)} (got {self.attn!r})")
        if self.quantize == "int8" and self.dtype not in ("auto", "float32"):
            raise ConfigError(f"--quantize int8 works on float32 weights; drop --dtype {self.dtype} (or --quantize)")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps (got {self.device!r})")

    def cache_key(self) -> tuple[Any, ...]:
        return (self.device, self.dtype, self.revision, self.trust_remote_code, self.quantize, self.attn, self.compile,
                tuple(sorted(self.extra.items())))
