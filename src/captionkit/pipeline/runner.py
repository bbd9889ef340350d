"""The batch runner: streams a dataset through a :class:`Pipeline`, resumable and exactly-once.

The runner owns everything but the processing itself: the state store, which items are still to do, the
commit of each result, results files, summary and progress. An *engine* turns the pending items into
results: :class:`LocalEngine` calls ``Pipeline.process`` in this process, ``RayEngine``
(``pipeline/ray_engine.py``) on the actors of a Ray cluster. Both commit to the same store, so a run
started on one engine resumes on the other.

Layout of an output directory::

    results.jsonl     one line per item (its outputs, or its error with stage and reason)
    results.csv ...   the same records in the other formats asked for (written at the end)
    state.sqlite      per-item state; lets a rerun with the same arguments skip finished items
    summary.json/.md  counts, time, failures grouped by reason
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console

from captionkit.config import RunConfig
from captionkit.io.results import result_record
from captionkit.io.writers import write_records
from captionkit.pipeline.core import Pipeline
from captionkit.pipeline.store import StateStore
from captionkit.progress import ItemProgress
from captionkit.records import Item, ItemResult

RESULTS = "results"
PREVIEW = 20  # items shown in summary.md
STATE = "state.sqlite"


@dataclass
class RunSummary:
    out_dir: str
    total: int = 0  # items in the dataset
    processed: int = 0  # items run by this invocation
    skipped: int = 0  # finished in an earlier run
    done: int = 0  # succeeded, over all runs
    failed: int = 0  # failed for good or for now, over all runs
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)  # grouped: stage, reason, count, examples
    preview: list[dict[str, str]] = field(default_factory=list)  # the first items, one line each
    notices: list[str] = field(default_factory=list)  # e.g. "the default captioner could not be loaded..."
    outputs: list[str] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 3)}

    def to_markdown(self) -> str:
        lines = [
            "# captionkit run summary",
            "",
            f"- output: `{self.out_dir}`",
            f"- items: {self.total} ({self.done} done, {self.failed} failed)",
            f"- this run: {self.processed} processed, {self.skipped} already finished, "
            f"{self.seconds:.1f} s ({self.items_per_s:.2f} items/s)",
        ]
        if self.notices:
            lines += ["", "## Notices", ""] + [f"- {n}" for n in self.notices]
        if self.preview:
            lines += ["", f"## First {len(self.preview)} items", "", "| id | result |", "|---|---|"]
            lines += [f"| {p['id']} | {p['brief'].replace('|', '/')} |" for p in self.preview]
        if self.failures:
            lines += ["", "## Failures by reason", "", "| stage | count | reason | example items |", "|---|---|---|---|"]
            for f in self.failures:
                reason = f["reason"].replace("|", "\\|")
                lines.append(f"| {f['stage']} | {f['count']} | {reason} | {', '.join(f['examples'])} |")
        return "\n".join(lines) + "\n"


@dataclass
class Pending:
    """An item still to do: its place in the dataset and which attempt at it this is (1 on its first run)."""

    seq: int
    item: Item
    attempt: int


class Engine(Protocol):
    """Turns pending items into results. Entered once per run (connect, load) before the state is opened."""

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...

    @property
    def notices(self) -> list[str]:
        """What the stages want the user to know (e.g. a fallback model), once each."""
        ...

    def results(self, pending: Iterator[Pending]) -> Iterator[list[tuple[Pending, ItemResult]]]:
        """Pull items from ``pending`` and yield their results as they finish, in any order and groups.

        Each pending item gets exactly one result, unless the engine raises; the runner commits every
        group before asking for the next, so what was yielded survives a crash of the engine."""
        ...


class LocalEngine:
    """``--engine local``: ``Pipeline.process`` in this process, one batch of the pipeline's batch size at a time.

    With ``prefetch`` > 0, the media stages (fetch, decode, frame sampling: :attr:`Pipeline.prefetch_stages`) of
    the next ``prefetch`` batches run in a background thread while the model stages work on the current one.
    Results and their order are the same; at most ``prefetch + 1`` batches are in flight, so memory stays bounded.
    """

    def __init__(self, pipeline: Pipeline, prefetch: int = 1) -> None:
        self.pipeline = pipeline
        self.prefetch = prefetch

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def notices(self) -> list[str]:
        return self.pipeline.notices

    def results(self, pending: Iterator[Pending]) -> Iterator[list[tuple[Pending, ItemResult]]]:
        size = max(1, self.pipeline.batch_size)
        if self.prefetch < 1 or not getattr(self.pipeline, "prefetch_stages", 0):  # a pipeline-like without start/finish: plain
            while batch := list(islice(pending, size)):
                results = self.pipeline.process([p.item for p in batch], attempts=[p.attempt for p in batch])
                yield list(zip(batch, results))
            return
        self.pipeline.setup()  # models load here, not in the prefetch thread
        in_flight: deque[tuple[list[Pending], Future]] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix="captionkit-prefetch") as pool:

            def submit() -> None:  # pending is read in this thread only (it reads the state store)
                if batch := list(islice(pending, size)):
                    items, attempts = [p.item for p in batch], [p.attempt for p in batch]
                    in_flight.append((batch, pool.submit(self.pipeline.start, items, attempts)))

            for _ in range(self.prefetch):
                submit()
            while in_flight:
                batch, future = in_flight.popleft()
                started = future.result()
                submit()
                yield list(zip(batch, self.pipeline.finish(started)))


def make_engine(config: RunConfig, pipeline: Pipeline | None = None) -> Engine:
    """The engine ``config.engine`` names. The Ray engine builds its own pipeline (one per actor) from ``config``."""
    if config.engine == "ray":
        from captionkit.pipeline.ray_engine import RayEngine

        return RayEngine(config)
    return LocalEngine(pipeline or Pipeline.from_config(config))


class Runner:
    """Runs a pipeline over a dataset into ``out_dir``; see the module docstring for the layout.

    ``engine`` defaults to :class:`LocalEngine` over ``pipeline``; pass ``pipeline=None`` with an engine."""

    def __init__(
        self,
        pipeline: Pipeline | None,
        out_dir: str | Path,
        config: RunConfig,
        *,
        restart: bool = False,
        progress: bool = True,
        console: Console | None = None,
        engine: Engine | None = None,
    ) -> None:
        if engine is None and pipeline is None:
            raise ValueError("Runner needs a pipeline or an engine")
        self.engine = engine or LocalEngine(pipeline)  # type: ignore[arg-type]
        self.out_dir = Path(out_dir)
        self.config = config
        self.restart = restart
        self.progress = progress
        self.console = console or Console(stderr=True)

    def run(self, dataset: Iterable[Item], total: int | None = None, name: str = "dataset") -> RunSummary:
        start = time.perf_counter()
        with self.engine:  # first: an engine that cannot start (e.g. no cluster at --address) touches nothing
            self.out_dir.mkdir(parents=True, exist_ok=True)
            return self._run(StateStore(self.out_dir / STATE), dataset, total, name, start)

    def _run(self, store: StateStore, dataset: Iterable[Item], total: int | None, name: str, start: float) -> RunSummary:
        try:
            store.begin(self.config.fingerprint(), name, restart=self.restart)
            summary = RunSummary(out_dir=str(self.out_dir))
            jsonl = self.out_dir / f"{RESULTS}.jsonl"
            # Rebuild from the store: drops a half-written last line or a line written twice before a crash.
            write_records(store.results(final_only_below=self.config.max_attempts), jsonl, "jsonl")
            with jsonl.open("a", encoding="utf-8") as sink, ItemProgress(total, enabled=self.progress, console=self.console) as bar:
                self._stream(dataset, store, sink, bar, summary)
            summary.outputs = self._write_outputs(store)
            summary.total = store.count()
            summary.done = store.count("done")
            summary.failed = store.count("failed")
            summary.failures = group_failures(store.results())
            summary.notices = self.engine.notices
            summary.preview = [{"id": str(r["id"]), "brief": brief(r)} for r in islice(store.results(), PREVIEW)]
            summary.seconds = time.perf_counter() - start
            (self.out_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
            (self.out_dir / "summary.md").write_text(summary.to_markdown(), encoding="utf-8")
            return summary
        finally:
            store.close()

    def _stream(self, dataset: Iterable[Item], store: StateStore, sink: TextIO, bar: ItemProgress, summary: RunSummary) -> None:
        for group in self.engine.results(self._pending(dataset, store, bar, summary)):
            self._commit(group, store, sink, bar, summary)

    def _pending(self, dataset: Iterable[Item], store: StateStore, bar: ItemProgress, summary: RunSummary) -> Iterator[Pending]:
        """The dataset's items that are not finished, read lazily: engines pull as they have room."""
        for seq, item in enumerate(dataset):
            state = store.state(item.id)
            if state and (state[0] == "done" or state[1] >= self.config.max_attempts):
                summary.skipped += 1
                bar.advance()
                continue
            yield Pending(seq, item, (state[1] if state else 0) + 1)

    def _commit(self, group: list[tuple[Pending, ItemResult]], store: StateStore, sink: TextIO,
                bar: ItemProgress, summary: RunSummary) -> None:
        if not group:
            return
        # Commit first, then append: a crash in between loses only a line that the next start rewrites.
        store.save_many([(r, p.seq) for p, r in group])
        for _, r in group:
            sink.write(json.dumps(result_record(r), ensure_ascii=False) + "\n")
        sink.flush()
        summary.processed += len(group)
        bar.advance(len(group))

    def _write_outputs(self, store: StateStore) -> list[str]:
        """Final pass: results.jsonl in dataset order, plus each other format asked for."""
        paths = []
        for fmt in dict.fromkeys(["jsonl", *self.config.formats]):
            path = self.out_dir / f"{RESULTS}.{fmt}"
            write_records(store.results(), path, fmt)
            paths.append(str(path))
        return paths


def brief(result: dict[str, Any]) -> str:
    """One line saying what became of an item, for people skimming a summary: the caption (or the media
    facts when no caption stage ran), then any text read in the media and any speech heard."""
    if err := result.get("error"):
        return f"FAILED in {err['stage']}: {err['reason']}"
    outputs = result.get("outputs", {})
    facts, captions = outputs.get("facts") or [], outputs.get("caption") or []
    ocr, speech = outputs.get("ocr") or [], outputs.get("transcribe") or []
    parts = []
    for i in range(max(len(facts), len(captions))):
        line = captions[i]["caption"].rstrip(".") if i < len(captions) else _facts_line(facts[i])
        if i < len(ocr) and ocr[i] and ocr[i].get("text") and ocr[i]["text"] not in line:
            line += f' [text: "{_clip(ocr[i]["text"])}"]'
        if i < len(speech) and speech[i] and speech[i].get("text"):
            line += f' [speech: "{_clip(speech[i]["text"])}"]'
        parts.append(line)
    posts = (outputs.get("write") or {}).get("posts") or []
    if posts:
        parts.append(f'post: "{_clip(posts[0]["text"], 140)}"')
    return "; ".join(parts) or "done"


def _facts_line(facts: dict[str, Any]) -> str:
    size = f"{facts['width']}x{facts['height']} {facts['orientation']}"
    if facts.get("duration"):
        size += f", {facts['duration']:.1f} s" + (" with sound" if facts.get("has_audio") else "")
    colours = "/".join(c["name"] for c in facts.get("dominant_colours", []))
    return f"{facts['kind']} {size}" + (f", mostly {colours}" if colours else "")


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_VOLATILE = [
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"]+)+/?"), "<path>"),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r"\d+(?:\.\d+)?"), "N"),
]


def normalise_reason(reason: str) -> str:
    """The reason with URLs, paths, quoted names and numbers blanked, so that like failures group together."""
    for pattern, repl in _VOLATILE:
        reason = pattern.sub(repl, reason)
    return reason


def group_failures(results: Iterable[dict[str, Any]], examples: int = 3) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str]] = Counter()
    samples: dict[tuple[str, str], list[str]] = {}
    first: dict[tuple[str, str], str] = {}
    for r in results:
        err = r.get("error")
        if not err:
            continue
        key = (err["stage"], normalise_reason(err["reason"]))
        counts[key] += 1
        first.setdefault(key, err["reason"])
        if len(samples.setdefault(key, [])) < examples:
            samples[key].append(str(r["id"]))
    return [
        {"stage": stage, "count": n, "reason": first[(stage, reason)], "pattern": reason, "examples": samples[(stage, reason)]}
        for (stage, reason), n in counts.most_common()
    ]
