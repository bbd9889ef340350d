"""``Pipeline``: stages in order over a list of items, each item succeeding or failing on its own.

``Pipeline.process`` is the unit every engine calls: the local runner in-process, and later engines
in workers. It is pure with respect to storage: it returns results and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from time import perf_counter

from captionkit.config import RunConfig
from captionkit.pipeline.stage import Stage, Work, create_stage
from captionkit.records import Item, ItemResult, StageError

log = logging.getLogger("captionkit")
# Stages that only fetch and decode media: an engine may run them for the next batch while models run this one.
PREFETCHABLE = frozenset({"media", "facts"})


class Pipeline:
    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)
        self._ready = False

    @classmethod
    def from_config(cls, config: RunConfig | dict | str | Path) -> Pipeline:
        """Stages from a :class:`RunConfig`, a dict of its keys, or a YAML file with the same keys as the CLI flags."""
        if isinstance(config, (str, Path)):
            config = RunConfig.from_yaml(config)
        elif isinstance(config, dict):
            config = RunConfig.from_dict(config)
        return cls([create_stage(name, config) for name in config.stages])

    @property
    def batch_size(self) -> int:
        """How many items to hand to :meth:`process` at once so that every stage can fill its batch."""
        return max([s.batch_size for s in self.stages] + [1])

    @property
    def notices(self) -> list[str]:
        """What stages want the user to know about the run (e.g. a fallback model), once each."""
        return [n for s in self.stages if (n := getattr(s, "notice", None))]

    def setup(self) -> None:
        """Load every stage's resources once; later calls are free."""
        if not self._ready:
            for stage in self.stages:
                stage.setup()
            self._ready = True

    @property
    def prefetch_stages(self) -> int:
        """How many leading stages only read media (no model): engines may run them ahead, in another thread,
        while the model stages work on the previous batch."""
        count = 0
        for stage in self.stages:
            if not getattr(stage, "prefetch", stage.name in PREFETCHABLE):
                break
            count += 1
        return count

    def process(self, items: Sequence[Item], attempts: Sequence[int] | None = None) -> list[ItemResult]:
        return self.finish(self.start(items, attempts))

    def start(self, items: Sequence[Item], attempts: Sequence[int] | None = None) -> Started:
        """Run the prefetchable leading stages (:attr:`prefetch_stages`) on ``items``; :meth:`finish` does the rest."""
        self.setup()
        works = [Work(item) for item in items]
        errors = {i: StageError("read", problem, "DatasetError") for i, item in enumerate(items) if (problem := item.read_error)}
        started = Started(works, errors, list(attempts or [1] * len(works)))
        self._run(started, self.stages[: self.prefetch_stages])
        return started

    def finish(self, started: Started) -> list[ItemResult]:
        self._run(started, self.stages[self.prefetch_stages:])
        works, errors = started.works, started.errors
        return [
            ItemResult(id=w.item.id, item=w.item, outputs=w.outputs, timings=w.timings, error=errors.get(i), attempts=a)
            for i, (w, a) in enumerate(zip(works, started.attempts))
        ]

    def _run(self, started: Started, stages: Sequence[Stage]) -> None:
        works, errors = started.works, started.errors
        for stage in stages:
            live = [i for i in range(len(works)) if i not in errors]
            for chunk in _chunks(live, max(1, stage.batch_size)):
                for i, out, seconds in _run_stage(stage, [works[i] for i in chunk], chunk):
                    works[i].timings[stage.name] = seconds
                    if isinstance(out, BaseException):
                        errors[i] = StageError.from_exception(stage.name, out)
                        log.debug("item %s failed in %s", works[i].item.id, stage.name, exc_info=out)
                    else:
                        works[i].outputs[stage.name] = out


@dataclass
class Started:
    """A batch part-way through the pipeline: its works, the errors so far (by position) and attempt numbers."""

    works: list[Work]
    errors: dict[int, StageError]
    attempts: list[int]


def _run_stage(stage: Stage, works: list[Work], index: list[int]):
    """Yield (index, output-or-exception, seconds per item); a batch that raises is retried item by item."""
    start = perf_counter()
    try:
        outs = stage.process(works)
        if len(outs) != len(works):
            raise RuntimeError(f"stage {stage.name!r} returned {len(outs)} outputs for {len(works)} items")
    except Exception as exc:
        if len(works) == 1:
            outs = [exc]
        else:  # isolate the item that broke the batch: the others must not fail with it
            for i, work in zip(index, works):
                yield from _run_stage(stage, [work], [i])
            return
    seconds = (perf_counter() - start) / len(works)
    for i, out in zip(index, outs):
        yield i, out, seconds


def _chunks(seq: list[int], size: int):
    it = iter(seq)
    while chunk := list(islice(it, size)):
        yield chunk
