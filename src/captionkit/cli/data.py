"""Dataset commands: ``inspect`` (what captionkit reads from a dataset) and ``clean``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from captionkit.cli import app
from captionkit.cli.common import ConfigOpt, MapOpt, SheetOpt, build_config, emit
from captionkit.io.readers import read_dataset


@app.command(
    epilog="Examples:\n\n  captionkit inspect examples/posts.csv --limit 3\n\n"
    "  captionkit inspect tweets.xlsx --map reference=text --map metadata.brand=company",
)
def inspect(
    dataset: Path = typer.Argument(..., help="CSV, XLSX, JSONL, JSON or Parquet file, or a folder of media."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one object per item) or json."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Print at most this many items."),
    config: Optional[Path] = ConfigOpt,
    maps: Optional[list[str]] = MapOpt,
    sheet: Optional[str] = SheetOpt,
) -> None:
    """Print the items captionkit reads from DATASET: id, metadata, media (kind, url, thumbnail, duration), reference."""
    cfg = build_config(config, maps=maps)
    items = []
    for n, item in enumerate(read_dataset(dataset, cfg.mapping, sheet=sheet)):
        if limit is not None and n >= limit:
            break
        if fmt == "jsonl":
            emit(item.to_dict(), fmt)  # stream: big datasets print as they are read
        else:
            items.append(item.to_dict())
    if fmt != "jsonl":
        emit(items, fmt)


@app.command(
    epilog="Examples:\n\n  captionkit clean examples/posts.csv\n\n"
    "  captionkit clean photos/ --checks unreadable,near_duplicate --near-threshold 4 --out kept.jsonl --report report.json\n\n"
    "  captionkit clean posts.csv --checks overlay_text --max-text-chars 10   # drop images with heavy overlaid text",
)
def clean(
    dataset: Path = typer.Argument(..., help="CSV, XLSX, JSONL, JSON or Parquet file, or a folder of media."),
    checks: Optional[list[str]] = typer.Option(
        None, "--checks", help="Checks to run, comma-separated. [default: no_media, unreadable, no_reference, "
        "too_small, duplicate, near_duplicate; also available: overlay_text (heavy text found by OCR)]",
    ),
    min_side: int = typer.Option(64, "--min-side", min=0, help="Flag images whose shorter side is below this (px)."),
    near_threshold: int = typer.Option(6, "--near-threshold", min=0, max=32, help="pHash bits within which images are near duplicates."),
    max_text_chars: int = typer.Option(10, "--max-text-chars", min=0, help="overlay_text: flag images with more OCR characters than this."),
    max_text_area: float = typer.Option(0.15, "--max-text-area", min=0.0, max=1.0, help="overlay_text: or whose text covers more than this share."),
    ocr: Optional[str] = typer.Option(None, "--ocr", help="OCR engine for overlay_text: rapidocr or tesseract. [default: rapidocr]"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the rows that pass (.jsonl keeps captionkit's item shape; .csv/.parquet/.xlsx flatten it)."),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Write the full report (JSON); otherwise flagged rows print as JSON lines."),
    config: Optional[Path] = ConfigOpt,
    maps: Optional[list[str]] = MapOpt,
    sheet: Optional[str] = SheetOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Find corrupt media, exact and near duplicates, too-small images, and rows without media or reference text."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.table import Table

    from captionkit.clean import Cleaner, CleanOptions
    from captionkit.cli.common import split_csv
    from captionkit.io.writers import write_records
    from captionkit.progress import ItemProgress

    cfg = build_config(config, maps=maps)
    ds = read_dataset(dataset, cfg.mapping, sheet=sheet)
    ocr_settings = dataclasses.replace(cfg.ocr, engine=ocr) if ocr else cfg.ocr
    cleaner = Cleaner(split_csv(checks), CleanOptions(
        min_side=min_side, near_threshold=near_threshold, max_text_chars=max_text_chars, max_text_area=max_text_area,
        ocr=ocr_settings, fetch=cfg.fetch, limits=cfg.limits))
    report = cleaner.new_report()
    console = Console(stderr=True)
    with ItemProgress(len(ds), "checking", enabled=progress, console=console) as bar:

        def kept():  # streams: a big dataset is checked and written row by row
            for item, verdict in cleaner.run(ds):
                report.add(item, verdict)
                bar.advance()
                if verdict is None:
                    yield item.to_dict()

        if out:
            write_records(kept(), out)
        else:
            for _ in kept():
                pass
    if report_path:
        report_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        emit(report.flagged, "jsonl")
    table = Table("check", "rows flagged", title=f"clean: {report.kept} of {report.total} rows kept", title_justify="left")
    for name in report.checks:
        table.add_row(name, str(report.counts.get(name, 0)))
    console.print(table)
