"""The writer contract, the backend registry, and loading by name, hub id, folder or URL."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from captionkit.errors import ConfigError
from captionkit.models.options import GenerationOptions


@dataclass(frozen=True)
class Prompt:
    """What a writer gets for one item: the rendered chat prompt, plus the structured context it came from
    (the model-free ``template`` writer composes from the context; model writers use system/user)."""

    system: str | None
    user: str
    context: dict[str, Any] = field(default_factory=dict, compare=False)

    def messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return [*msgs, {"role": "user", "content": self.user}]

    def text(self) -> str:
        """The prompt as plain text, for models without a chat template."""
        return f"{self.system}\n\n{self.user}" if self.system else self.user


@runtime_checkable
class Writer(Protocol):
    backend: str  # registry name: "local", "openai", "template"
    model_id: str  # hub id, folder, URL+model, or "template"

    def write(self, prompts: Sequence[Prompt], gen: GenerationOptions, n: int = 1) -> list[list[str]]:
        """``n`` raw candidate texts per prompt, in order (post-processing happens outside)."""


WriterFactory = Callable[..., Writer]
_WRITERS: dict[str, WriterFactory] = {}
_WRITER_MODULES = ("template", "local", "openai_compat")


def register_writer(name: str) -> Callable[[WriterFactory], WriterFactory]:
    def deco(factory: WriterFactory) -> WriterFactory:
        _WRITERS[name] = factory
        return factory

    return deco


def available_writers() -> list[str]:
    for module in _WRITER_MODULES:
        importlib.import_module(f"captionkit.writers.{module}")
    return sorted(_WRITERS)


def writer_backend_for(spec: str) -> str:
    """``template`` -> template; ``http(s)://...`` -> openai (an OpenAI-compatible server); else local."""
    if spec == "template":
        return "template"
    if spec.startswith(("http://", "https://")):
        return "openai"
    return "local"


_LOADED: dict[tuple[Any, ...], Writer] = {}


def load_writer(spec: str, settings: Any) -> Writer:
    """The writer for ``spec`` (catalogue name, hub id, folder, URL or ``template``), once per process.

    ``settings`` is the run's :class:`~captionkit.models.settings.WriteSettings`.
    """
    from captionkit.models import catalog

    available_writers()
    entry = catalog.lookup(spec, task="writer")
    source = entry.source if entry and entry.downloadable else spec
    backend = entry.backend if entry else writer_backend_for(spec)
    if backend not in _WRITERS:
        raise ConfigError(f"--writer: backend {backend!r} is unknown; backends: {', '.join(sorted(_WRITERS))}")
    key = (backend, source, settings.writer_cache_key())
    if key not in _LOADED:
        _LOADED[key] = _WRITERS[backend](source, settings)
    loaded = _LOADED[key]
    if getattr(loaded, "batch_size", settings.batch_size) != settings.batch_size:
        loaded = copy.copy(loaded)  # same model, this caller's batch size
        loaded.batch_size = settings.batch_size  # type: ignore[attr-defined]
    return loaded
