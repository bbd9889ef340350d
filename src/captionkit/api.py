"""The Python API: the same operations as the CLI, on plain records.

>>> import captionkit
>>> captionkit.describe("photo.jpg")[0]["facts"]["orientation"]
'landscape'
>>> summary = captionkit.run("posts.csv", out="out/")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captionkit.config import DESCRIBE_STAGES, RunConfig
from captionkit.errors import CaptionkitError
from captionkit.io.readers import Dataset, read_dataset
from captionkit.io.results import headline
from captionkit.media.kinds import kind_from_suffix
from captionkit.pipeline.core import Pipeline
from captionkit.pipeline.runner import Runner, RunSummary, make_engine
from captionkit.records import Item, ItemResult, MediaRef
from captionkit.stages.media import load_item_media

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
    pipeline = pipeline_for(config or RunConfig(stages=list(DESCRIBE_STAGES)))
    return [describe_record(r) for r in pipeline.process([item_for_media(s) for s in sources])]


def describe_record(result: ItemResult) -> dict[str, Any]:
    """Flatten a one-media result into what ``captionkit describe`` prints: the headline fields
    (caption, ocr_text, transcript, facts, models), then each stage's full output under ``details``."""
    outs = {stage: out[0] if isinstance(out, list) and len(out) == 1 else out for stage, out in result.outputs.items()}
    top = headline(result.outputs)
    facts = outs.get("facts")
    rec: dict[str, Any] = {
        "input": result.id,
        "kind": facts.get("kind") if isinstance(facts, dict) else None,
        "caption": top["description"],
        "ocr_text": top["ocr_text"],
        "transcript": top["transcript"],
        "language": top["language"],
        "models": top["models"],
        "facts": facts,
        "details": {k: v for k, v in outs.items() if k != "facts"},
    }
    rec["timings"] = {k: round(v, 4) for k, v in result.timings.items()}
    rec["error"] = result.error.reason if result.error else None
    if result.error:
        rec["error_stage"] = result.error.stage
    return rec


def ask(media: str | Path, question: str, config: RunConfig | None = None) -> dict[str, Any]:
    """Answer ``question`` about one image, GIF or video with a model that takes questions.

    Without ``--captioner`` this uses the catalogue's small chat VLM (smolvlm); a video's sampled frames go
    into one prompt when the model takes several images, otherwise each frame is asked in turn.
    """
    from captionkit.captioners.base import load_captioner

    config = config or RunConfig()
    settings = config.caption
    model = settings.model or "smolvlm"
    rec: dict[str, Any] = {"input": str(media), "question": question, "answer": None, "model": model, "error": None}
    try:
        [media_file] = load_item_media(item_for_media(media), config)
    except CaptionkitError as exc:  # like describe: a bad input is reported, not raised
        rec["error"] = str(exc)
        return rec
    captioner = load_captioner(model, settings.model_options)
    frames = media_file.frames
    if len(frames) > 1 and captioner.max_images_per_prompt > 1:
        images = [f.image for f in frames][: captioner.max_images_per_prompt]
        rec["answer"] = captioner.caption_frames(images, question, settings.generation)
    else:
        answers = captioner.ask([f.image for f in frames], question, settings.generation)
        rec["answer"] = answers[0] if len(answers) == 1 else " ".join(
            f"[{f.time:.1f}s] {a}" for f, a in zip(frames, answers))
    rec["model"] = captioner.model_id
    return rec


def run(
    dataset: str | Path | Dataset,
    out: str | Path,
    config: RunConfig | None = None,
    *,
    sheet: str | None = None,
    restart: bool = False,
    progress: bool = False,
    engine: str | None = None,
    address: str | None = None,
) -> RunSummary:
    """Run the pipeline over a dataset into ``out``; rerunning with the same arguments resumes.

    ``engine="ray"`` (default: ``config.engine``, "local") runs it on a Ray cluster at ``address`` (default:
    ``config.ray.address``); a run may resume on the other engine. See docs/ray.md.
    """
    config = (config or RunConfig()).with_engine(engine, address=address)
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset, config.mapping, sheet=sheet)
    worker = make_engine(config, pipeline_for(config) if config.engine == "local" else None)
    runner = Runner(None, out, config, restart=restart, progress=progress, engine=worker)
    return runner.run(ds, total=_count(ds), name=str(ds.path))


def write(items: Item | dict[str, Any] | Sequence[Item | dict[str, Any]], config: RunConfig | None = None) -> list[dict[str, Any]]:
    """Posts for described items: each an :class:`Item` whose metadata holds ``description`` (and maybe
    ``ocr_text``, ``transcript``), or a dict like ``{"id", "description", "metadata": {...}}``.

    Returns the write stage's output per item (prompt, ``posts`` with ``text`` and ``chars``, model), or
    ``{"error": reason}`` for an item that failed.
    """
    config = dataclasses.replace(config or RunConfig(), stages=["write"])
    batch = [items] if isinstance(items, (Item, dict)) else list(items)
    results = pipeline_for(config).process([_as_item(x, i) for i, x in enumerate(batch)])
    return [r.outputs["write"] if r.ok else {"error": r.error.reason if r.error else "failed"} for r in results]


def _as_item(value: Item | dict[str, Any], index: int) -> Item:
    if isinstance(value, Item):
        return value
    meta = dict(value.get("metadata") or {})
    for key in ("description", "ocr_text", "transcript", "language"):
        if value.get(key):
            meta[key] = value[key]
    return Item(id=str(value.get("id", index)), metadata=meta)


def write_dataset(source: str | Path, out: str | Path, config: RunConfig, *, sheet: str | None = None,
                  restart: bool = False, progress: bool = False) -> RunSummary:
    """``captionkit write``: the write stage over described items, resumable like :func:`run`."""
    from captionkit.io.results import items_for_writing

    items = list(items_for_writing(source, config.mapping, sheet=sheet))
    runner = Runner(pipeline_for(config), out, config, restart=restart, progress=progress)
    return runner.run(items, total=len(items), name=str(source))


def _count(ds: Dataset) -> int | None:
    try:
        return len(ds)
    except TypeError:
        return None


__all__ = ["RunConfig", "ask", "describe", "read_dataset", "run", "write", "write_dataset"]
