"""The captioner contract, the backend registry, and loading by name, hub id or path."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from PIL import Image

from captionkit.errors import ConfigError
from captionkit.models.options import GenerationOptions, ModelOptions


@runtime_checkable
class Captioner(Protocol):
    """Turns images into text. Backends live one per file in this package."""

    backend: str  # registry name, e.g. "blip"
    model_id: str  # what was loaded: hub id, folder, or "basic"
    supports_prompt: bool  # takes --prompt (conditional captioning or an instruction)
    supports_questions: bool  # can answer a question about an image (VQA, `captionkit ask`)
    max_images_per_prompt: int  # > 1: several frames can go into one prompt (chat VLMs)

    def caption(self, images: Sequence[Image.Image], prompt: str | None = None,
                gen: GenerationOptions | None = None) -> list[str]:
        """One caption per image, in order."""

    def ask(self, images: Sequence[Image.Image], question: str, gen: GenerationOptions | None = None) -> list[str]:
        """One answer per image."""

    def caption_frames(self, frames: Sequence[Image.Image], prompt: str | None = None,
                       gen: GenerationOptions | None = None) -> str:
        """One description of several frames of one video/GIF shown together (max_images_per_prompt > 1)."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    factory: Callable[[str, ModelOptions], Captioner]
    model_types: tuple[str, ...]  # config.json model_type values this backend loads
    description: str


_BACKENDS: dict[str, BackendInfo] = {}
_BACKEND_MODULES = ("basic", "blip", "blip2", "git", "vision_encoder_decoder", "florence2", "chat_vlm")


def register_captioner(name: str, *, model_types: Sequence[str] = (), description: str = ""):
    """Class decorator: a backend built as ``cls(model_id, options)``, chosen for configs of ``model_types``."""

    def deco(cls):
        _BACKENDS[name] = BackendInfo(name, cls, tuple(model_types), description or (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return deco


def _load_backends() -> None:
    for module in _BACKEND_MODULES:
        importlib.import_module(f"captionkit.captioners.{module}")


def available_backends() -> dict[str, BackendInfo]:
    _load_backends()
    return dict(_BACKENDS)


def backend_for_config(config: dict[str, Any], spec: str, flag: str = "--captioner") -> str:
    """Pick the backend whose model_types include the config's; chat VLMs are the fallback for image-text models."""
    _load_backends()
    model_type = config.get("model_type", "")
    for info in _BACKENDS.values():
        if model_type in info.model_types:
            return info.name
    archs = " ".join(config.get("architectures") or [])
    if "ForConditionalGeneration" in archs or "ImageTextToText" in archs:
        return "chat_vlm"
    raise ConfigError(
        f"{flag} {spec}: a {model_type or 'model'!s} ({archs or 'unknown architecture'}) is not an image "
        f"captioner; captioners have model types like {', '.join(sorted(_known_types()))}"
    )


def _known_types() -> set[str]:
    return {t for info in _BACKENDS.values() for t in info.model_types}


_LOADED: dict[tuple[Any, ...], Captioner] = {}


def load_captioner(spec: str, options: ModelOptions | None = None, backend: str | None = None) -> Captioner:
    """Load (once per process) the captioner named by ``spec``: a catalogue name, a backend name, a hub id or a folder."""
    from captionkit.models import catalog
    from captionkit.models.hf import read_config

    options = options or ModelOptions()
    _load_backends()
    entry = catalog.lookup(spec, task="captioner")
    if entry is not None:
        spec, backend = entry.source, backend or entry.backend
        options = entry.apply(options)
    elif backend is None and spec in _BACKENDS:
        if (default := catalog.default_for_backend(spec)) is None:
            return _instantiate(spec, spec, options)
        spec, backend = default.source, spec
        options = default.apply(options)
    if backend is None:
        backend = backend_for_config(read_config(spec, options), spec)
    if backend not in _BACKENDS:
        raise ConfigError(f"--captioner backend {backend!r} is unknown; backends: {', '.join(sorted(_BACKENDS))}")
    return _instantiate(backend, spec, options)


def _instantiate(backend: str, spec: str, options: ModelOptions) -> Captioner:
    key = (backend, spec, options.cache_key())
    if key not in _LOADED:
        _LOADED[key] = _BACKENDS[backend].factory(spec, options)
    loaded = _LOADED[key]
    if getattr(loaded, "options", options) == options:
        return loaded
    view = copy.copy(loaded)  # same model and processor, this caller's batch size
    view.options = options  # type: ignore[attr-defined]
    return view


def check_prompt(captioner: Captioner, prompt: str | None, flag: str = "--prompt") -> None:
    if prompt and not captioner.supports_prompt:
        raise ConfigError(f"{flag}: the {captioner.backend} captioner ({captioner.model_id}) cannot take a prompt; "
                          "drop --prompt or pick a model that takes one (BLIP, GIT, Florence-2 or a chat VLM)")


class CaptionerBase:
    """Shared behaviour: batching by ``options.batch_size``, and clear refusals for what a backend cannot do."""

    backend: ClassVar[str] = "base"
    supports_prompt: ClassVar[bool] = False
    supports_questions: ClassVar[bool] = False
    max_images_per_prompt: ClassVar[int] = 1

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        self.model_id = model_id
        self.options = options

    def caption(self, images: Sequence[Image.Image], prompt: str | None = None,
                gen: GenerationOptions | None = None) -> list[str]:
        check_prompt(self, prompt)
        gen = gen or GenerationOptions()
        out: list[str] = []
        for start in range(0, len(images), self.options.batch_size):
            out.extend(self._caption_batch(list(images[start:start + self.options.batch_size]), prompt, gen))
        return out

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        raise NotImplementedError

    def ask(self, images: Sequence[Image.Image], question: str, gen: GenerationOptions | None = None) -> list[str]:
        if not self.supports_questions:
            raise ConfigError(f"the {self.backend} captioner ({self.model_id}) cannot answer questions; "
                              "use a chat VLM for `captionkit ask` (e.g. --captioner smolvlm or a Qwen2-VL id)")
        return self.caption(images, question, gen)

    def caption_frames(self, frames: Sequence[Image.Image], prompt: str | None = None,
                       gen: GenerationOptions | None = None) -> str:
        raise ConfigError(f"the {self.backend} captioner takes one image per prompt")
