"""The Python API: the same operations as the CLI, on plain records.

>>> import captionkit
>>> captionkit.describe("photo.jpg")[0]["facts"]["orientation"]
'landscape'
>>> summary = captionkit.run("posts.csv", out="out/")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captionkit.config import RunConfig
from captionkit.io.readers import Dataset, read_dataset
from captionkit.media.kinds import kind_from_suffix
from captionkit.pipeline.core import Pipeline
from captionkit.pipeline.runner import Runner, RunSummary
from captionkit.records import Item, ItemResult, MediaRef

_PIPELINES: dict[str, Pipeline] = {}


def pipeline_for(config: RunConfig) -> Pipeline:
    """One pipeline per configuration per process, so models load once and are reused across calls."""
    key = config.fingerprint() + repr(config.fetch)
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline.from_config(config)
    return _PIPELINES[key]


def item_for_media(source: str | Path) -> Item:
    """An item holding one media file or URL, identified by the string the user gave."""
    source = str(source)
    return Item(id=source, media=[MediaRef(kind=kind_from_suffix(source) or "image", url=source)])  # type: ignore[arg-type]


def describe(media: str | Path | Sequence[str | Path], config: RunConfig | None = None) -> list[dict[str, Any]]:
    """Describe each media file or URL; a failure is reported in that entry's ``error``, never raised."""
    sources = [media] if isinstance(media, (str, Path)) else list(media)
    pipeline = pipeline_for(config or RunConfig())
    return [describe_record(r) for r in pipeline.process([item_for_media(s) for s in sources])]


def describe_record(result: ItemResult) -> dict[str, Any]:
    """Flatten a one-media result into what ``captionkit describe`` prints."""
    rec: dict[str, Any] = {"input": result.id}
    for stage, out in result.outputs.items():
        rec[stage] = out[0] if isinstance(out, list) and len(out) == 1 else out
    rec["timings"] = {k: round(v, 4) for k, v in result.timings.items()}
    rec["error"] = result.error.reason if result.error else None
    if result.error:
        rec["error_stage"] = result.error.stage
    return rec


def run(
    dataset: str | Path | Dataset,
    out: str | Path,
    config: RunConfig | None = None,
    *,
    sheet: str | None = None,
    restart: bool = False,
    progress: bool = False,
) -> RunSummary:
    """Run the pipeline over a dataset into ``out``; rerunning with the same arguments resumes."""
    config = config or RunConfig()
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset, config.mapping, sheet=sheet)
    runner = Runner(pipeline_for(config), out, config, restart=restart, progress=progress)
    return runner.run(ds, total=_count(ds), name=str(ds.path))


def _count(ds: Dataset) -> int | None:
    try:
        return len(ds)
    except TypeError:
        return None


__all__ = ["RunConfig", "describe", "read_dataset", "run"]
