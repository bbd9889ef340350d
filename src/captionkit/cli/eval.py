"""``captionkit eval``: compare systems against references, as a table, JSON, or an HTML/Markdown report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from captionkit.cli import app
from captionkit.cli.common import split_csv
from captionkit.errors import ConfigError


@app.command(
    "eval",
    epilog="Examples:\n\n  captionkit eval --predictions preds.jsonl --references refs.jsonl\n\n"
    "  captionkit eval --predictions blip=out_blip/ --predictions florence=out_florence/ "
    "--references refs.jsonl --metrics coco,embed,clip --out report/\n\n"
    "  captionkit eval --predictions out/ --field posts --references out/ --metrics coco,sacrebleu,posts --platform x",
)
def eval_command(
    predictions: list[str] = typer.Option(..., "--predictions", "-p", help="[NAME=]FILE: JSONL {id,text}, CSV id,text, describe JSONL, or a run output. Repeat for several systems."),
    references: Path = typer.Option(..., "--references", "-r", help="JSONL {id,references:[...]} or {id,text} lines, CSV, COCO captions JSON, or a run output (the items' reference text)."),
    field: str = typer.Option("description", "--field", help="What is scored in a run output: description, posts, ocr_text, transcript, or a dotted path."),
    metrics: Optional[list[str]] = typer.Option(None, "--metrics", help="Families: coco, embed, clip, bertscore, sacrebleu, posts. [default: coco]"),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.html, report.md and metrics.json here."),
    media: Optional[Path] = typer.Option(None, "--media", help="A run output whose media give thumbnails and CLIPScore. [default: the first run-output prediction]"),
    platform: Optional[str] = typer.Option(None, "--platform", help="Platform limits for the post checks (x, instagram, ...)."),
    embedder: Optional[str] = typer.Option(None, "--embedder", help="sentence-transformers model for `embed`. [default: all-MiniLM-L6-v2]"),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="CLIP model (hub id or folder) for `clip`. [default: openai/clip-vit-base-patch32]"),
    primary: Optional[str] = typer.Option(None, "--primary", help="Metric that orders the report's item table. [default: CIDEr]"),
    resamples: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% intervals."),
) -> None:
    """Score predictions against references: BLEU-1..4, METEOR, ROUGE-L, CIDEr (equal to pycocoevalcap) and more."""
    from captionkit.eval.data import load_media_paths, load_predictions, load_references
    from captionkit.eval.evaluate import evaluate

    console = Console(stderr=True)
    systems, sources = {}, {}
    for spec in predictions:
        name, _, path = spec.rpartition("=") if "=" in spec else (None, "", spec)
        name = name or Path(path).stem or Path(path).name
        if name in systems:
            raise ConfigError(f"--predictions: two systems are named {name!r}; name them with NAME=FILE")
        preds, skipped = load_predictions(path, field)
        for reason, count in skipped.items():
            console.print(f"{name}: skipped {count} rows ({reason})")
        systems[name], sources[name] = preds, Path(path)
    refs = load_references(references)
    media_paths = load_media_paths(media) if media else next(
        (m for m in (load_media_paths(p) for p in sources.values()) if m), {})
    ocr = None
    if "posts" in (split_csv(metrics) or []):
        ocr_source = next((p for p in sources.values() if p.is_dir() or p.suffix == ".jsonl"), None)
        ocr = {k: v for k, v in load_predictions(ocr_source, "ocr_text")[0].items() if isinstance(v, str)} if ocr_source else None
    result = evaluate(systems, refs, metrics=split_csv(metrics) or ["coco"], media=media_paths, ocr=ocr,
                      platform=platform, embedder=embedder, clip_model=clip_model, n_resamples=resamples)
    for name, miss in result.missing.items():
        if miss["no_prediction"] or miss["no_reference"]:
            console.print(f"[yellow]{name}:[/] {len(miss['no_prediction'])} referenced items have no prediction, "
                          f"{len(miss['no_reference'])} predictions have no reference (not scored)")
    for metric, reason in result.unavailable.items():
        console.print(f"[yellow]{metric} unavailable:[/] {reason}")
    if out:
        from captionkit.eval.report import write_report

        files = write_report(result, out, primary_metric=primary)
        console.print(f"report: {files.get('html', out)}")
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    elif fmt == "table":
        print_table(result)
    else:
        raise ConfigError(f"--format: unknown {fmt!r}; use table or json")


def print_table(result) -> None:
    """Metrics as rows and systems as columns: many metrics stay readable in a narrow terminal."""
    metrics = list(dict.fromkeys(m for s in result.systems for m in s.corpus))
    table = Table("metric", *[s.name for s in result.systems], title=f"{len(result.ids)} items (95% bootstrap CI)",
                  title_justify="left")
    for m in metrics:
        table.add_row(m, *[_cell(s.corpus.get(m), s.ci.get(m)) for s in result.systems])
    Console().print(table)


def _cell(value, ci) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text
