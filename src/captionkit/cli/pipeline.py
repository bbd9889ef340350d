"""Pipeline commands: ``describe`` (a few files), ``ask`` (a question about one) and ``run`` (a dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from captionkit import api
from captionkit.cli import app
from captionkit.cli.common import (
    CAPTION,
    DECODING,
    FETCH,
    FRAMES,
    OCR,
    SPEECH,
    WRITE,
    WRITER_DECODING,
    ConfigOpt,
    MapOpt,
    SheetOpt,
    build_config,
    emit,
    options,
    split_csv,
)
from captionkit.config import DESCRIBE_STAGES
from captionkit.pipeline.runner import RunSummary

StagesOpt = typer.Option(None, "--stages", help="Stages to run, in order. [default: media,facts,caption,ocr,transcribe,write for run; without write for describe]")


@app.command(
    epilog="Examples:\n\n  captionkit describe photo.jpg clip.mp4\n\n"
    "  captionkit describe https://example.com/a.gif --frames 4 --format json\n\n"
    "  captionkit describe photo.jpg --captioner blip-base --num-beams 3 --max-new-tokens 30\n\n"
    "  captionkit describe poster.png --captioner smolvlm --prompt 'Describe this poster for a blind reader.'",
)
@options(FRAMES, FETCH, CAPTION, DECODING, OCR, SPEECH)
def describe(
    media: list[str] = typer.Argument(..., help="Media files or http(s) URLs.", show_default=False),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one object per input) or json."),
    config: Optional[Path] = ConfigOpt,
    stages: Optional[list[str]] = StagesOpt,
    *,
    opts: dict[str, Any],
) -> None:
    """Describe media files or URLs: caption (or merged video description), OCR text, transcript, media facts.

    One JSON line per input; an input that fails gets an `error` naming the file and the reason, the
    others still succeed, and the exit code is 1.
    """
    cfg = build_config(config, opts=opts, stages=split_csv(stages) or list(DESCRIBE_STAGES))
    records = api.describe(media, cfg)
    emit(records, fmt)
    if any(r["error"] for r in records):
        raise typer.Exit(1)


@app.command(
    epilog="Examples:\n\n  captionkit ask photo.jpg \"What is the person holding?\" --captioner smolvlm\n\n"
    "  captionkit ask clip.mp4 \"What happens at the end?\" --captioner qwen2-vl-2b --frames 6",
)
@options(FRAMES, FETCH, CAPTION, DECODING)
def ask(
    media: str = typer.Argument(..., help="A media file or http(s) URL."),
    question: str = typer.Argument(..., help="The question about it."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or json."),
    config: Optional[Path] = ConfigOpt,
    *,
    opts: dict[str, Any],
) -> None:
    """Visual question answering with a chat VLM (or BLIP-2): one JSON object with the answer."""
    cfg = build_config(config, opts=opts)
    emit(api.ask(media, question, cfg), fmt)


@app.command(
    epilog="Examples:\n\n  captionkit run examples/posts.csv --out out/\n\n"
    "  captionkit run posts.xlsx --out out/ --map media=image_url --map reference=caption --formats jsonl,parquet\n\n"
    "  captionkit run media_folder/ --out out/ --frame-policy scene --captioner blip-base --ocr tesseract\n\n"
    "  captionkit run posts.csv --out out/ --platform instagram --writer http://localhost:8000/v1 -n 3 --examples history.jsonl\n\n"
    "  captionkit run posts.csv --out out/ --engine ray --address ray://head-node:10001 --ray-actors 4\n\n"
    "Rerun the same command after a crash or Ctrl-C: finished items are skipped, failed ones retried (on either engine).",
)
@options(FRAMES, FETCH, CAPTION, DECODING, OCR, SPEECH, WRITE, WRITER_DECODING)
def run(
    dataset: Path = typer.Argument(..., help="CSV, XLSX, JSONL, JSON or Parquet file, or a folder of media."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (results, state, summary)."),
    formats: Optional[list[str]] = typer.Option(None, "--formats", help="Result formats besides jsonl: csv, parquet, xlsx."),
    config: Optional[Path] = ConfigOpt,
    maps: Optional[list[str]] = MapOpt,
    sheet: Optional[str] = SheetOpt,
    stages: Optional[list[str]] = StagesOpt,
    max_attempts: Optional[int] = typer.Option(None, "--max-attempts", min=1, help="Runs an item may fail before it is final. [default: 3]"),
    restart: bool = typer.Option(False, "--restart", help="Forget the state in --out and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    engine: Optional[str] = typer.Option(None, "--engine", help="local (this process) or ray (a Ray cluster; see docs/ray.md). A run may resume on the other. [default: local]"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: ray://HOST:10001 (Ray Client), HOST:6379 (head node), auto (the one started here with `ray start`) or local (a new one here). [default: $RAY_ADDRESS, else a running local cluster, else a new one]"),
    ray_actors: Optional[int] = typer.Option(None, "--ray-actors", min=1, help="Ray: pipelines at work, each with its own copy of the models. [default: one per GPU, else one per CPU]"),
    ray_batch_size: Optional[int] = typer.Option(None, "--ray-batch-size", min=1, help="Ray: items per actor call. [default: the largest stage batch size]"),
    ray_gpus: Optional[float] = typer.Option(None, "--ray-gpus", min=0.0, help="Ray: GPUs per actor; 0.5 puts two actors on each GPU. [default: 1 when the cluster has GPUs]"),
    *,
    opts: dict[str, Any],
) -> None:
    """Describe every item, then write its posts, resumably: results.jsonl holds every item exactly once."""
    cfg = build_config(config, maps=maps, opts=opts, stages=split_csv(stages), formats=split_csv(formats),
                       max_attempts=max_attempts)
    cfg = cfg.with_engine(engine, address=address, actors=ray_actors, batch_size=ray_batch_size, num_gpus=ray_gpus)
    summary = api.run(dataset, out, cfg, sheet=sheet, restart=restart, progress=progress)
    print_summary(summary, Console(stderr=True))


def print_summary(summary: RunSummary, console: Console) -> None:
    for notice in summary.notices:
        console.print(f"[bold yellow]notice:[/] {escape(notice)}", highlight=False)
    console.print(
        f"[bold]{summary.done} done, {summary.failed} failed[/] of {summary.total} items "
        f"({summary.processed} processed now, {summary.skipped} already finished) in {summary.seconds:.1f} s "
        f"-> {summary.out_dir}"
    )
    if summary.failures:
        table = Table("stage", "count", "reason (first of its kind)", title="Failures by reason", title_justify="left")
        for f in summary.failures:
            table.add_row(f["stage"], str(f["count"]), escape(f["reason"]))
        console.print(table)
