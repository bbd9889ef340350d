"""The stage contract: a named step that turns one item's state into that stage's output.

The unit of work is one item. A stage may look at several items at once (``batch_size`` > 1) so that
model stages can batch, but every item succeeds or fails on its own: one exception marks one item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from captionkit.errors import ConfigError
from captionkit.records import Item

if TYPE_CHECKING:
    from captionkit.config import RunConfig


@dataclass
class Work:
    """An item in flight: its record, the outputs so far, and scratch state shared between stages.

    ``outputs`` is saved with the result; ``scratch`` (decoded frames, local file paths) is not.
    """

    item: Item
    outputs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline. Implementations live one per file under ``captionkit/stages``."""

    name: str
    batch_size: int

    def setup(self) -> None:
        """Load what the stage needs (models, tables) once per process, before the first item."""

    def process(self, works: list[Work]) -> list[Any]:
        """Return one output (JSON-friendly) or one exception per work, in order."""


class ItemStage:
    """Base for stages that handle one item at a time: subclasses implement :meth:`process_one`."""

    name: ClassVar[str] = "stage"
    batch_size: int = 1

    def setup(self) -> None:
        pass

    def process_one(self, work: Work) -> Any:
        raise NotImplementedError

    def process(self, works: list[Work]) -> list[Any]:
        out: list[Any] = []
        for work in works:
            try:
                out.append(self.process_one(work))
            except Exception as exc:  # one item's failure is that item's result
                out.append(exc)
        return out


StageFactory = Callable[["RunConfig"], Stage]  # a stage is built from the run's configuration
_REGISTRY: dict[str, StageFactory] = {}


def register_stage(name: str) -> Callable[[StageFactory], StageFactory]:
    """Class decorator: make a stage available to ``--stages`` and YAML configs under ``name``."""

    def deco(factory: StageFactory) -> StageFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_stages() -> list[str]:
    _load_builtin_stages()
    return sorted(_REGISTRY)


def create_stage(name: str, config: RunConfig) -> Stage:
    """Build the stage registered as ``name`` for ``config``."""
    _load_builtin_stages()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"--stages: unknown stage {name!r}; known stages: {', '.join(sorted(_REGISTRY))}") from None
    return factory(config)


def _load_builtin_stages() -> None:
    # Importing the package registers the built-in stages; kept lazy so `captionkit --help` stays fast.
    import captionkit.stages  # noqa: F401
