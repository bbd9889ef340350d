"""JSON Lines files of objects, read strictly: a bad line is an error naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from captionkit.errors import DatasetError


def json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; invalid JSON or a non-object raises DatasetError.

    Datasets that must survive a bad row use :mod:`captionkit.io.readers` instead, which turns the row into a
    failed item; this is for files whose every line a command needs (results, training data, references).
    """
    path = Path(path)
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc})") from None
            if not isinstance(value, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
            yield number, value
