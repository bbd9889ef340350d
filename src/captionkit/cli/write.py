"""``captionkit write``: posts for items that are already described."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from captionkit import api
from captionkit.cli import app
from captionkit.cli.common import (
    CAPTION,
    DECODING,
    WRITE,
    ConfigOpt,
    MapOpt,
    SheetOpt,
    build_config,
    options,
    split_csv,
)
from captionkit.cli.pipeline import print_summary

# Only the model-placement flags of the caption group apply to writing.
PLACEMENT = {k: v for k, v in CAPTION.items() if k in ("batch_size", "device", "dtype")}


@app.command(
    epilog="Examples:\n\n  captionkit write out/ --out posts/ --platform instagram -n 3\n\n"
    "  captionkit describe *.jpg > described.jsonl && captionkit write described.jsonl --out posts/ --writer template\n\n"
    "  captionkit write captions.csv --map metadata.description=caption --out posts/ --platform linkedin "
    "--writer http://localhost:8000/v1 --examples history.jsonl --k 3",
)
@options(PLACEMENT, DECODING, WRITE)
def write(
    source: Path = typer.Argument(..., help="A run/describe output folder or results.jsonl, `describe` JSONL, or a dataset with a description column."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (results, state, summary)."),
    formats: Optional[list[str]] = typer.Option(None, "--formats", help="Result formats besides jsonl: csv, parquet, xlsx."),
    config: Optional[Path] = ConfigOpt,
    maps: Optional[list[str]] = MapOpt,
    sheet: Optional[str] = SheetOpt,
    restart: bool = typer.Option(False, "--restart", help="Forget the state in --out and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    *,
    opts: dict[str, Any],
) -> None:
    """Write posts for described items (description, visible text, transcript, metadata), resumably."""
    cfg = build_config(config, maps=maps, opts=opts, decoding="write", stages=["write"], formats=split_csv(formats))
    summary = api.write_dataset(source, out, cfg, sheet=sheet, restart=restart, progress=progress)
    print_summary(summary, Console(stderr=True))
