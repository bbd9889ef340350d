"""The ``captionkit`` command line. Each command family lives in its own module."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from captionkit import __version__
from captionkit.errors import CaptionkitError

app = typer.Typer(
    name="captionkit",
    help="Turn images, GIFs and videos plus their metadata into captions, visible text, transcripts and posts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # our errors are printed by main(); tracebacks only with --debug
    rich_markup_mode=None,  # help texts show "[default: 8]" literally, not as markup
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"captionkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Log details and show tracebacks of errors."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _state["debug"] = debug


_state = {"debug": False}

# Register the commands (import for side effects, after `app` exists).
from captionkit.cli import bench as _bench  # noqa: E402,F401
from captionkit.cli import data as _data  # noqa: E402,F401
from captionkit.cli import eval as _eval  # noqa: E402,F401
from captionkit.cli import synth as _synth  # noqa: E402,F401
from captionkit.cli.train import train_app as _train_app  # noqa: E402

app.add_typer(_train_app, name="train")
from captionkit.cli import models as _models  # noqa: E402,F401
from captionkit.cli import pipeline as _pipeline  # noqa: E402,F401
from captionkit.cli import prepare as _prepare  # noqa: E402,F401
from captionkit.cli import serve as _serve  # noqa: E402,F401
from captionkit.cli import write as _write  # noqa: E402,F401


def main() -> None:
    """Entry point of the ``captionkit`` script: user errors print one line and exit 2."""
    try:
        app()
    except CaptionkitError as exc:
        if _state["debug"]:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: rerun the same command to resume where it stopped")
        sys.exit(130)
