"""``captionkit bench``: captionkit's inference paths against the plain Hugging Face loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from captionkit.cli import app
from captionkit.cli.common import split_csv


@app.command(epilog="Examples:\n\n  captionkit bench --quick\n\n  captionkit bench --json > bench.json\n\n"
                    "  captionkit bench --models blip-base --settings batched,int8 --write-docs docs/benchmarks.md")
def bench(
    quick: bool = typer.Option(False, "--quick", help="Smaller configs (2 layers), fewer items: under 3 minutes."),
    scale: Optional[str] = typer.Option(None, "--scale", help="full, quick or tiny (tests). [default: full; --quick: quick]"),
    as_json: bool = typer.Option(False, "--json", help="Print the results as a JSON list of cases (table to stderr)."),
    models: Optional[list[str]] = typer.Option(None, "--models", help="Only these models (comma-separated names)."),
    settings: Optional[list[str]] = typer.Option(
        None, "--settings", help="Only these settings: batched, bf16, int8, compile (writers, only when named: it "
                                 "compiles for a minute or more first)."),
    items: Optional[int] = typer.Option(None, "--items", min=1, help="Items per timed run."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="Alternating A/B rounds after the warm-up."),
    new_tokens: Optional[int] = typer.Option(None, "--new-tokens", min=1, help="New tokens per item (fixed)."),
    frames: bool = typer.Option(True, "--frames/--no-frames", help="Also time video frame sampling."),
    run_items: Optional[int] = typer.Option(None, "--run-items", min=0, help="Items for the end-to-end `captionkit run` case; 0 skips it. [default: 2000; --quick: 200]"),
    ray: Optional[bool] = typer.Option(None, "--ray/--no-ray", help="Also run the end-to-end case on the Ray engine. [default: on for the full bench]"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N]: where both sides run (int8 is CPU only)."),
    write_docs: Optional[Path] = typer.Option(None, "--write-docs", help="Put the results into this Markdown file."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the random-weight models are saved once. [default: $CAPTIONKIT_CACHE_DIR/bench or ~/.cache/captionkit/bench]"),
) -> None:
    """Time describe and write against the plain transformers loop on the same random-weight models.

    Models are built from the real configurations of the default captioner and writer (and BLIP-base, GIT-base,
    ViT-GPT2, Llama-3.2-1B) with random weights, saved once, and run by both sides: the plain loop (processor,
    model.generate one item at a time, float32, greedy) and captionkit (batched, with each fast path). Reports
    items/s, tokens/s, the ratio with its spread over rounds, peak memory and whether outputs were identical.
    """
    from captionkit.bench import report
    from captionkit.bench.suite import plan_for, run_plan
    from captionkit.models.hf import transformers

    transformers().utils.logging.disable_progress_bar()  # loading bars of every model would bury the bench's lines
    chosen = scale or ("quick" if quick else "full")
    plan = plan_for(chosen, models=split_csv(models), settings=split_csv(settings), items=items, rounds=rounds,
                    new_tokens=new_tokens, frames=frames, run_items=run_items, ray=ray)
    err = Console(stderr=True)
    started = time.perf_counter()
    results = run_plan(plan, chosen, root=cache_dir, device=device, log=lambda msg: err.print(f"[dim]{msg}[/]", highlight=False))
    err.print(f"[dim]bench: {len(results)} cases in {time.perf_counter() - started:.0f} s[/]")
    report.print_table(results, err if as_json else Console())
    if as_json:
        sys.stdout.write(report.to_json(results) + "\n")
    if write_docs:
        command = "captionkit bench" + (" --quick" if chosen == "quick" else f" --scale {chosen}" if chosen != "full" else "")
        report.write_section(write_docs, report.markdown(results, report.machine(), scale=chosen, command=command),
                             marker=chosen)
        err.print(f"bench: results written to {write_docs}")
