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


def resolve_dtype(options: ModelOptions, device: str):
    """float32 on CPU unless asked (bf16 is slow on CPUs without AVX512-BF16/AMX); bf16/fp16 on GPU."""
    t = torch()
    if options.dtype != "auto":
        return getattr(t, options.dtype)
    if device.startswith("cuda"):
        return t.bfloat16 if t.cuda.is_bf16_supported() else t.float16
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
    return {"dtype": dtype, **hub_kwargs(spec, options)}


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
    cls = getattr(transformers(), cls_name)
    try:
        model = cls.from_pretrained(spec, **pretrained_kwargs(options, dtype, spec))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flag} {spec}: cannot load the model with {cls_name} ({_short(exc)})") from None
    return model.to(device).eval()


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
    "MissingExtraError", "hub_offline", "hub_reachable", "is_local", "load_model", "load_processor", "pretrained_kwargs",
    "read_config", "resolve_device", "resolve_dtype", "set_seed", "torch", "transformers",
]
