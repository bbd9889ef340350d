"""Reading what the pipeline wrote, and the headline fields every result line carries.

A result line (``results.jsonl``) holds each stage's full output under ``outputs``; the headline fields
(``description``, ``ocr_text``, ``transcript``, ``posts``, ``models``) sit at the top level so that people
and later commands (``write``, ``prepare``, ``eval``) need not know the stages' shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from captionkit.errors import DatasetError
from captionkit.io.jsonl import json_objects
from captionkit.records import Item, ItemResult


def _per_media(outputs: dict[str, Any], stage: str, key: str) -> list[str]:
    values = []
    for out in outputs.get(stage) or []:
        if isinstance(out, dict) and out.get(key):
            values.append(str(out[key]))
    return values


def described_of(outputs: dict[str, Any]) -> dict[str, Any]:
    """description / ocr_text / transcript / language of an item from its stage outputs.

    Several media files are numbered ("Image 1: …  Image 2: …") so a writer knows there were several.
    """
    captions = _per_media(outputs, "caption", "caption")
    description = captions[0] if len(captions) == 1 else " ".join(f"Media {i + 1}: {c}" for i, c in enumerate(captions))
    languages = _per_media(outputs, "transcribe", "language")
    return {
        "description": description or None,
        "ocr_text": "\n".join(_per_media(outputs, "ocr", "text")) or None,
        "transcript": " ".join(_per_media(outputs, "transcribe", "text")) or None,
        "language": languages[0] if languages else None,
    }


def headline(outputs: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of a result line."""
    write = outputs.get("write") if isinstance(outputs.get("write"), dict) else {}
    models = {}
    for stage, key, name in (("caption", "model", "caption"), ("ocr", "engine", "ocr"), ("transcribe", "model", "speech")):
        found = [o.get(key) for o in outputs.get(stage) or [] if isinstance(o, dict) and o.get(key)]
        if found:
            models[name] = found[0]
    if write.get("model"):
        models["writer"] = write["model"]
    return {**described_of(outputs), "posts": write.get("posts"), "models": models}


def result_record(result: ItemResult) -> dict[str, Any]:
    """A result line: id, ok, the headline fields, then the full record (item, outputs, timings, error)."""
    record = result.to_dict()
    rest = {k: v for k, v in record.items() if k not in ("id", "ok")}
    return {"id": record["id"], "ok": record["ok"], **headline(result.outputs), **rest}


def results_file(path: str | Path) -> Path:
    """``results.jsonl`` itself, or the one inside a run's output directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.jsonl"
    if not path.exists():
        raise DatasetError(f"no results at {path}: give a `captionkit run`/`describe` output directory or results.jsonl")
    return path


def read_results(path: str | Path, *, ok_only: bool = True) -> Iterator[tuple[Item, dict[str, Any], dict[str, Any]]]:
    """(item, described, record) for each line of a results file; failed items are skipped when ``ok_only``."""
    file = results_file(path)
    for number, record in json_objects(file):
        try:
            item = Item.from_dict(record["item"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{file}:{number}: not a captionkit result line ({exc})") from None
        if ok_only and record.get("error"):
            continue
        yield item, described_of(record.get("outputs") or {}), record


def items_for_writing(path: str | Path, mapping: Any = None, sheet: str | None = None) -> Iterator[Item]:
    """Items that carry their description in metadata, ready for the ``write`` stage, from:

    - a ``captionkit run``/``describe`` output directory or ``results.jsonl`` (failed items skipped),
    - ``captionkit describe --format jsonl`` output (lines with ``input`` and ``caption``),
    - any dataset whose rows have a ``description`` column (map another with ``--map metadata.description=COL``).
    """
    path = Path(path)
    first = _first_json_line(path)
    if path.is_dir() or (first and "outputs" in first and "item" in first):
        for item, described, _ in read_results(path):
            item.metadata.update({k: v for k, v in described.items() if v})
            yield item
    elif first and "input" in first and "caption" in first:
        for _, rec in json_objects(path):
            if not rec.get("error"):
                meta = {"description": rec.get("caption"), "ocr_text": rec.get("ocr_text"),
                        "transcript": rec.get("transcript"), "language": rec.get("language")}
                yield Item(id=str(rec["input"]), metadata={k: v for k, v in meta.items() if v})
    else:
        from captionkit.io.readers import read_dataset

        yield from read_dataset(path, mapping, sheet=sheet)


def _first_json_line(path: Path) -> dict[str, Any] | None:
    if path.is_dir() or path.suffix.lower() not in (".jsonl", ".ndjson"):
        return None
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
    return None
