"""Pipeline commands: ``describe`` (a few files) and ``run`` (a whole dataset, resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from captionkit import api
from captionkit.cli import app
from captionkit.cli.common import (
    ConfigOpt,
    EveryOpt,
    FramesOpt,
    MapOpt,
    MaxMbOpt,
    PolicyOpt,
    RetriesOpt,
    SceneOpt,
    SheetOpt,
    TimeoutOpt,
    build_config,
    emit,
    split_csv,
)
from captionkit.pipeline.runner import RunSummary


@app.command(
    epilog="Examples:\n\n  captionkit describe photo.jpg clip.mp4\n\n"
    "  captionkit describe https://example.com/a.gif --frames 4 --format json",
)
def describe(
    media: list[str] = typer.Argument(..., help="Media files or http(s) URLs.", show_default=False),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one object per input) or json."),
    config: Optional[Path] = ConfigOpt,
    stages: Optional[list[str]] = typer.Option(None, "--stages", help="Stages to run, in order. [default: media,facts]"),
    frames: Optional[int] = FramesOpt,
    frame_policy: Optional[str] = PolicyOpt,
    every: Optional[float] = EveryOpt,
    scene_threshold: Optional[float] = SceneOpt,
    timeout: Optional[float] = TimeoutOpt,
    retries: Optional[int] = RetriesOpt,
    max_download_mb: Optional[float] = MaxMbOpt,
) -> None:
    """Describe media files or URLs: one JSON line per input. Exit code 1 if any input failed."""
    cfg = build_config(
        config, frames=frames, frame_policy=frame_policy, every=every, scene_threshold=scene_threshold,
        timeout=timeout, retries=retries, max_download_mb=max_download_mb, stages=split_csv(stages),
    )
    records = api.describe(media, cfg)
    emit(records, fmt)
    if any(r["error"] for r in records):
        raise typer.Exit(1)


@app.command(
    epilog="Examples:\n\n  captionkit run examples/posts.csv --out out/\n\n"
    "  captionkit run posts.xlsx --out out/ --map media=image_url --map reference=caption --formats jsonl,parquet\n\n"
    "  captionkit run media_folder/ --out out/ --frame-policy scene\n\n"
    "Rerun the same command after a crash or Ctrl-C: finished items are skipped, failed ones retried.",
)
def run(
    dataset: Path = typer.Argument(..., help="CSV, XLSX, JSONL, JSON or Parquet file, or a folder of media."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (results, state, summary)."),
    formats: Optional[list[str]] = typer.Option(None, "--formats", help="Result formats besides jsonl: csv, parquet, xlsx."),
    config: Optional[Path] = ConfigOpt,
    maps: Optional[list[str]] = MapOpt,
    sheet: Optional[str] = SheetOpt,
    stages: Optional[list[str]] = typer.Option(None, "--stages", help="Stages to run, in order. [default: media,facts]"),
    frames: Optional[int] = FramesOpt,
    frame_policy: Optional[str] = PolicyOpt,
    every: Optional[float] = EveryOpt,
    scene_threshold: Optional[float] = SceneOpt,
    timeout: Optional[float] = TimeoutOpt,
    retries: Optional[int] = RetriesOpt,
    max_download_mb: Optional[float] = MaxMbOpt,
    max_attempts: Optional[int] = typer.Option(None, "--max-attempts", min=1, help="Runs an item may fail before it is final. [default: 3]"),
    restart: bool = typer.Option(False, "--restart", help="Forget the state in --out and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Run the pipeline over a dataset, resumably: results.jsonl holds every item exactly once."""
    cfg = build_config(
        config, maps=maps, frames=frames, frame_policy=frame_policy, every=every, scene_threshold=scene_threshold,
        timeout=timeout, retries=retries, max_download_mb=max_download_mb, stages=split_csv(stages),
        formats=split_csv(formats), max_attempts=max_attempts,
    )
    summary = api.run(dataset, out, cfg, sheet=sheet, restart=restart, progress=progress)
    print_summary(summary, Console(stderr=True))


def print_summary(summary: RunSummary, console: Console) -> None:
    console.print(
        f"[bold]{summary.done} done, {summary.failed} failed[/] of {summary.total} items "
        f"({summary.processed} processed now, {summary.skipped} already finished) in {summary.seconds:.1f} s "
        f"-> {summary.out_dir}"
    )
    if summary.failures:
        table = Table("stage", "count", "reason (first of its kind)", title="Failures by reason", title_justify="left")
        for f in summary.failures:
            table.add_row(f["stage"], str(f["count"]), f["reason"])
        console.print(table)
