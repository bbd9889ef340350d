"""``captionkit models list|pull``: the model catalogue and the local cache."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from captionkit.cli import app
from captionkit.errors import ConfigError
from captionkit.models import catalog

models_app = typer.Typer(help="Known models: list them and what is cached; fetch them ahead of time.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list", epilog="Examples:\n\n  captionkit models list\n\n  captionkit models list --task speech")
def list_models(task: Optional[str] = typer.Option(None, "--task", help="captioner, ocr or speech.")) -> None:
    """Models captionkit knows by name: task, backend, hub id, licence, size, and whether it is cached."""
    table = Table("name", "task", "backend", "source", "licence", "params", "default", "cached")
    for e in catalog.entries(task):
        cached = catalog.is_cached(e)
        table.add_row(e.name, e.task, e.backend, e.source, e.licence, e.params, "yes" if e.default else "",
                      "-" if cached is None else ("yes" if cached else "no"))
    Console().print(table)


@models_app.command("pull", epilog="Examples:\n\n  captionkit models pull\n\n  captionkit models pull blip-base whisper-small")
def pull(names: Optional[list[str]] = typer.Argument(None, help="Catalogue names; default: the default models.")) -> None:
    """Download models into the local hub cache now, so later runs need no network."""
    if names:
        entries = []
        for name in names:
            if (entry := catalog.lookup(name)) is None:
                known = ", ".join(e.name for e in catalog.entries())
                raise ConfigError(f"models pull: unknown model {name!r}; known: {known}")
            entries.append(entry)
    else:
        entries = [e for e in catalog.entries() if e.default]
    console = Console(stderr=True)
    for entry in entries:
        if not entry.downloadable:
            console.print(f"{entry.name}: nothing to download ({entry.source})")
            continue
        console.print(f"{entry.name}: downloading {entry.source} ...")
        console.print(f"{entry.name}: cached in {catalog.pull(entry)}")
