"""Loading Hugging Face models by hub id or local path, with errors that say what to do.

Everything heavy (torch, transformers) is imported inside functions: ``import captionkit`` never needs them.
"""

from __future__ import annotations

import json
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from captionkit.errors import ConfigError, MissingExtraError, ModelUnavailableError
from captionkit.extras import require
from captionkit.models.allocator import keep_freed_memory
from captionkit.models.options import ModelOptions


def torch():
    return require("torch", "models", "model backends (install torch==2.13.0 first for the CPU build)")


def transformers():
    return require("transformers", "models", "model backends")


def is_local(spec: str) -> bool:
    return Path(spec).expanduser().exists()


def resolve_device(options: ModelOptions) -> str:
    if options.device != "auto":
        if options.device.startswith("cuda") and not torch().cuda.is_available():
            raise ConfigError(f"--device {options.device}: no CUDA GPU is available here; use --device cpu")
        return options.device
    t = torch()
    if t.cuda.is_available():
        return "cuda"
    return "cpu"


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU units that make bfloat16 matmuls fast (without: slower than fp32)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def resolve_dtype(options: ModelOptions, device: str):
    """The weights' dtype for ``--dtype``.

    * ``auto``: float32 on CPU (outputs equal the model's own float32 ``generate``); bf16 (fp16 where the GPU
      has no bf16) on GPU;
    * ``fast``: as auto, but bfloat16 on CPUs with bf16 units (avx512_bf16 / amx_bf16), where it runs ~2-3x
      faster than float32; without those units bfloat16 is slower than float32, so fast stays float32 there.
      bfloat16 keeps 8 bits of mantissa: greedy outputs drift from float32 after some tokens;
    * a dtype name: that dtype.
    """
    t = torch()
    if options.dtype not in ("auto", "fast"):
        return getattr(t, options.dtype)
    if device.startswith("cuda"):
        return t.bfloat16 if t.cuda.is_bf16_supported() else t.float16
    if options.dtype == "fast" and device == "cpu" and options.quantize == "none" and cpu_has_fast_bf16():
        return t.bfloat16
    return t.float32


def read_config(spec: str, options: ModelOptions | None = None, flag: str = "--captioner") -> dict[str, Any]:
    """The model's config.json as a dict, from a local folder or the hub (downloaded once, then cached)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.exists():
            raise ConfigError(f"{flag} {spec}: folder has no config.json, so it is not a saved transformers model")
        return json.loads(cfg.read_text(encoding="utf-8"))
    if path.exists():
        raise ConfigError(f"{flag} {spec}: is a file; give the model's folder (with config.json) or a hub id")
    if "/" not in spec or spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise ConfigError(f"{flag} {spec!r}: no such folder, and not a hub id of the form owner/name")
    hub = require("huggingface_hub", "models", "downloading models")
    try:
        file = hub.hf_hub_download(spec, "config.json", revision=options.revision if options else None,
                                   local_files_only=not hub_reachable())
    except Exception as exc:  # offline, gated, missing: all end here, with the hub's own reason
        if not hub_reachable():
            raise ModelUnavailableError(
                f"{flag} {spec}: not in the local model cache, and the model hub is not reachable from here. "
                f"Run `captionkit models pull` where the hub is reachable, or pass a local model folder") from None
        raise ModelUnavailableError(
            f"{flag} {spec}: cannot fetch config.json from the model hub ({_short(exc)}). "
            f"Check the id, your network or HF_TOKEN (gated models), or pass a local folder") from None
    return json.loads(Path(file).read_text(encoding="utf-8"))


def hub_kwargs(spec: str, options: ModelOptions) -> dict[str, Any]:
    """``from_pretrained`` arguments about where files come from (revision, cache-only, remote code)."""
    kw: dict[str, Any] = {}
    if not is_local(spec) and not hub_reachable():
        kw["local_files_only"] = True  # use the cache without the hub's slow retries
    if options.revision:
        kw["revision"] = options.revision
    if options.trust_remote_code:
        kw["trust_remote_code"] = True
    return kw


def pretrained_kwargs(options: ModelOptions, dtype: Any, spec: str = "") -> dict[str, Any]:
    kw = {"dtype": dtype, **hub_kwargs(spec, options)}
    if options.attn:
        kw["attn_implementation"] = options.attn
    return kw


def load_processor(spec: str, options: ModelOptions, cls_name: str = "AutoProcessor", flag: str = "--captioner", **kw: Any):
    """The model's processor, or an error naming the folder and what is missing."""
    cls = getattr(transformers(), cls_name)
    extra = hub_kwargs(spec, options)
    try:
        loaded = cls.from_pretrained(spec, **extra, **kw)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{flag} {spec}: cannot load its processor/tokenizer ({_short(exc)}). A model folder needs the "
            f"processor files saved beside the weights (processor.save_pretrained(folder))"
        ) from None
    _check_tokenizer(loaded, spec, flag)
    return loaded


def _check_tokenizer(loaded: Any, spec: str, flag: str) -> None:
    """transformers 5 builds an empty tokenizer (special tokens only) when the tokenizer files are missing."""
    tokenizer = getattr(loaded, "tokenizer", loaded)
    if not hasattr(tokenizer, "get_vocab") or not hasattr(tokenizer, "added_tokens_encoder"):
        return
    if not set(tokenizer.get_vocab()) - set(tokenizer.added_tokens_encoder):
        raise ConfigError(
            f"{flag} {spec}: has no tokenizer files (tokenizer.json/vocab), only special tokens. Save the "
            f"tokenizer beside the weights (processor.save_pretrained(folder) or tokenizer.save_pretrained(folder))"
        )


def load_model(spec: str, cls_name: str, options: ModelOptions, flag: str = "--captioner"):
    """``<cls>.from_pretrained(spec)`` placed on the chosen device and dtype, in eval mode."""
    device = resolve_device(options)
    dtype = resolve_dtype(options, device)
    if options.quantize != "none" and device != "cpu":
        raise ConfigError(f"--quantize {options.quantize}: dynamic int8 quantisation runs on CPU only; on a GPU use "
                          f"--dtype bfloat16/float16 (the default there) instead, or --device cpu")
    cls = getattr(transformers(), cls_name)
    try:
        model = cls.from_pretrained(spec, **pretrained_kwargs(options, dtype, spec))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flag} {spec}: cannot load the model with {cls_name} ({_short(exc)})") from None
    model = model.to(device).eval()
    if device == "cpu":
        keep_freed_memory()  # no page faults on every large activation (models/allocator.py); outputs unchanged
    return apply_fast_paths(model, options)


def apply_fast_paths(model: Any, options: ModelOptions) -> Any:
    """``--quantize int8`` and ``--compile`` on a loaded model (``--dtype`` and ``--attn`` apply at load)."""
    if options.quantize == "int8":
        model = quantize_int8(model)
    if options.compile:
        model = compile_static(model)
    return model


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8 per tensor, activations quantised per call).

    CPU only. Linear layers dominate the cost of these models, so this is ~1.5-3x faster on CPU; outputs are
    close to float32's but not equal (greedy decoding may pick other tokens after a while).
    """
    import warnings

    t = torch()
    with warnings.catch_warnings():  # torch.ao.quantization's eager mode warns that it moves to torchao
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {t.nn.Linear}, dtype=t.qint8, inplace=True)


def compile_static(model: Any) -> Any:
    """A static KV cache (fixed shapes) and ``torch.compile`` of the forward pass, for ``generate``.

    Outputs equal the uncompiled model's up to float rounding of the fused kernels. Each new (batch, prompt
    length) shape compiles once (tens of seconds on CPU), so it pays off on long runs with repeated shapes.
    """
    model.generation_config.cache_implementation = "static"
    model.forward = torch().compile(model.forward, dynamic=False)
    return model


def set_seed(seed: int | None) -> None:
    if seed is not None:
        torch().manual_seed(seed)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection, asked once per process.

    Offline, huggingface_hub retries each file for ~20 s; knowing up front lets cached models load at
    once and missing ones fail at once with a clear reason.
    """
    if hub_offline():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = [
    "MissingExtraError", "apply_fast_paths", "cpu_flags", "cpu_has_fast_bf16", "hub_offline", "hub_reachable", "is_local", "load_model", "load_processor", "pretrained_kwargs",
    "read_config", "resolve_device", "resolve_dtype", "set_seed", "torch", "transformers",
]
