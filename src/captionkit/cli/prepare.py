"""``captionkit prepare``: instruction data (Alpaca or chat) for fine-tuning a post writer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from captionkit.cli import app
from captionkit.cli.common import ConfigOpt, MapOpt, SheetOpt


@app.command(
    epilog="Examples:\n\n  captionkit prepare out/run1 --out finetune.jsonl   # also writes finetune.val.jsonl\n\n"
    "  captionkit prepare out/run1/results.jsonl --out chat.jsonl --format chat --val-fraction 0.05 --seed 1\n\n"
    "  captionkit prepare described.csv --description-column caption --map reference=text --out finetune.jsonl",
)
def prepare(
    dataset: Path = typer.Argument(..., help="A `captionkit run` output folder, its results.jsonl, or a dataset "
                                   "file whose rows already describe their media (with --description-column)."),
    out: Path = typer.Option(..., "--out", "-o", help="Training file (.jsonl); the validation split goes beside it "
                             "with .val before the suffix (finetune.jsonl -> finetune.val.jsonl)."),
    fmt: str = typer.Option("alpaca", "--format", help="alpaca ({instruction, input, output, id}) or chat "
                            "({id, messages: [system, user, assistant]})."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=1.0,
                                       help="Share of items in the validation split, chosen by a hash of the id."),
    seed: int = typer.Option(0, "--seed", help="Changes which items the hash puts in the validation split."),
    instruction: Optional[str] = typer.Option(None, "--instruction", help="Instruction text. [default: the "
                                              "platform's, for adobe the seed's: Generate the tweet content given "
                                              "the expected likes and the other information about the post.]"),
    platform: str = typer.Option("adobe", "--platform", help="Picks the default instruction: adobe, x, instagram, "
                                 "linkedin, facebook, alt-text."),
    description_column: Optional[str] = typer.Option(None, "--description-column", help="Dataset column that "
                                                     "already describes each row's media (instead of a run's captions)."),
    config: Optional[Path] = ConfigOpt,
    maps: Optional[list[str]] = MapOpt,
    sheet: Optional[str] = SheetOpt,
) -> None:
    """Build fine-tuning data from described items: input = captions, text in media, transcript, expected likes,
    username, company and date; output = the item's real post text. Items without a description or a post text are skipped and counted."""
    from rich.console import Console

    from captionkit.cli.common import build_config
    from captionkit.errors import ConfigError, DatasetError
    from captionkit.io.writers import resolve_format, write_records
    from captionkit.prepare import FORMATS, load_records, val_path
    from captionkit.prepare import prepare as build

    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    out_format = resolve_format(out)
    if fmt == "chat" and out_format != "jsonl":
        raise ConfigError(f"--out {out}: chat records hold a list of messages; write them to a .jsonl file")
    mapping = build_config(config, maps=maps).mapping
    records = load_records(dataset, description_column=description_column, mapping=mapping, sheet=sheet)
    result = build(records, fmt=fmt, instruction=instruction, val_fraction=val_fraction, seed=seed, platform=platform)
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(result.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    if not result.train and not result.val:
        raise DatasetError(
            f"no usable items in {dataset}: every item was skipped ({skipped or 'the input is empty'}); items need a "
            "description (captions from `captionkit run`, or --description-column) and a reference text"
        )
    val_out = val_path(out)
    write_records(result.train, out, out_format)
    write_records(result.val, val_out, out_format)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"prepare: {len(result.train)} train -> {out}, {len(result.val)} val -> {val_out} ({fmt})")
    console.print(f"skipped: {result.total_skipped}" + (f" ({skipped})" if skipped else ""))
