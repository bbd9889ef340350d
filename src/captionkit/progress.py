"""One progress bar for every long command: count, items/s and ETA, on stderr."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ItemProgress:
    """``with ItemProgress(total) as bar: bar.advance(n)`` — rich's own speed column counts bytes, not items."""

    def __init__(self, total: int | None, label: str = "items", *, enabled: bool = True,
                 console: Console | None = None) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.bar.add_task(label, total=total, rate="")
        self.start = time.perf_counter()
        self.count = 0

    def __enter__(self) -> ItemProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def advance(self, n: int = 1) -> None:
        self.count += n
        rate = self.count / max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(self.task, advance=n, rate=f"{rate:.1f} items/s")
