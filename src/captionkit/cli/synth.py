"""``captionkit synth``: a synthetic, self-describing dataset (shapes, captions, questions, posts) for training."""

from __future__ import annotations

from pathlib import Path

import typer

from captionkit.cli import app


def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the dataset into (created if needed)."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of images (scenes)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    size: int = typer.Option(64, "--size", min=24, help="Image width and height in pixels."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=1.0,
                                       help="Share of items in the validation split, chosen by a hash of the id."),
) -> None:
    """Write a synthetic dataset whose truth is known: shape images, captions with references, VQA pairs,
    description -> post pairs following learnable rules, a captionkit dataset.csv and a README of the rules."""
    from rich.console import Console

    from captionkit.training.synth import make_synthetic

    info = make_synthetic(out, n=n, seed=seed, size=size, val_fraction=val_fraction)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(
        f"synth: {info.n_images} images ({info.n_train} train, {info.n_val} val), {info.n_questions} questions, "
        f"{info.n_posts} posts -> {info.out_dir} in {info.seconds:.2f}s"
    )
    console.print(f"rules and formats: {info.readme}")


app.command(
    "synth",
    epilog="Examples:\n\n  captionkit synth --out data/synth   # 1000 64x64 images, 10 % validation\n\n"
    "  captionkit synth --out data/tiny --n 50 --seed 1 --size 96 --val-fraction 0.2\n\n"
    "  captionkit synth --out data/synth && captionkit run data/synth/dataset.csv --out out/synth",
)(synth)
