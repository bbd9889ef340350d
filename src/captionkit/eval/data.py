"""Reading predictions and references for ``captionkit eval``, in the shapes users have.

Predictions: JSONL lines ``{"id", "text"}``, a CSV with ``id`` and ``text`` columns, ``captionkit describe``
JSONL (``input`` / ``caption``), or a ``captionkit run`` output (folder or results.jsonl) with ``--field``
choosing what is scored (``description``, ``posts``, ``ocr_text``, ``transcript``, or a dotted path).
References: JSONL ``{"id", "references": [...]}`` or one ``{"id", "text"}`` line per reference, a CSV with
``id`` and ``text`` (several rows per id) or ``references`` (a JSON list), a COCO captions file
(``{"annotations": [{"image_id", "caption"}]}``), or a run output / dataset whose items carry their
reference text.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from captionkit.errors import DatasetError
from captionkit.io.jsonl import json_objects
from captionkit.io.results import results_file

FIELDS = ("description", "posts", "ocr_text", "transcript")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows


def _is_results(path: Path) -> bool:
    if path.is_dir():
        return (path / "results.jsonl").exists()
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return False
    for _, first in json_objects(path):
        return "outputs" in first and "item" in first
    return False


def _dig(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit():
            value = value[int(part)] if int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _text_of(record: dict[str, Any], field: str) -> str | list[str] | None:
    if field == "posts":
        posts = record.get("posts") or []
        return [p["text"] for p in posts if isinstance(p, dict) and "text" in p] or None
    value = record.get(field) if field in record else _dig(record, field)
    return None if value is None else str(value)


def load_predictions(path: str | Path, field: str = "description") -> tuple[dict[str, str | list[str]], dict[str, int]]:
    """(id -> text, or -> list of candidate texts for ``--field posts``) and counts of skipped rows by reason."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"--predictions: no such file or folder: {path}")
    preds: dict[str, str | list[str]] = {}
    skipped: dict[str, int] = {}
    if _is_results(path):
        for _, record in json_objects(results_file(path)):
            if record.get("error"):
                skipped["failed item"] = skipped.get("failed item", 0) + 1
                continue
            text = _text_of(record, field)
            if text is None:
                skipped[f"no {field}"] = skipped.get(f"no {field}", 0) + 1
                continue
            preds[str(record["id"])] = text
        return preds, skipped
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for number, rec in json_objects(path):
            if "input" in rec and ("caption" in rec or "error" in rec):  # `captionkit describe` output
                key, text = rec["input"], rec.get("caption") if field == "description" else _text_of(rec, field)
            elif "id" in rec and ("text" in rec or field in rec):
                key, text = rec["id"], rec.get("text", rec.get(field))
            else:
                raise DatasetError(f"{path} line {number}: a prediction needs `id` and `text` "
                                   f"(found keys: {', '.join(rec)})")
            if text is None or rec.get("error"):
                skipped["no text"] = skipped.get("no text", 0) + 1
                continue
            preds[str(key)] = text if isinstance(text, list) else str(text)
        return preds, skipped
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = _csv_rows(path)
        if rows and not {"id", "text"} <= set(rows[0]):
            raise DatasetError(f"--predictions {path}: needs `id` and `text` columns; columns are: {', '.join(rows[0])}")
        for row in rows:
            preds[str(row["id"])] = row["text"] or ""
        return preds, skipped
    raise DatasetError(f"--predictions {path}: unsupported; give JSONL, CSV or a captionkit run output")


def load_references(path: str | Path) -> dict[str, list[str]]:
    """id -> list of reference texts."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"--references: no such file or folder: {path}")
    refs: dict[str, list[str]] = {}
    if _is_results(path):
        for _, record in json_objects(results_file(path)):
            ref = (record.get("item") or {}).get("reference")
            if ref:
                refs.setdefault(str(record["id"]), []).append(str(ref))
        return refs
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        for number, rec in json_objects(path):
            if "id" not in rec:
                raise DatasetError(f"{path} line {number}: a reference line needs `id` (found keys: {', '.join(rec)})")
            if isinstance(rec.get("references"), list):
                refs.setdefault(str(rec["id"]), []).extend(str(r) for r in rec["references"])
            elif "text" in rec:
                refs.setdefault(str(rec["id"]), []).append(str(rec["text"]))
            else:
                raise DatasetError(f"{path} line {number}: needs `references` (a list) or `text`")
        return refs
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):  # COCO captions format
            for ann in data["annotations"]:
                refs.setdefault(str(ann["image_id"]), []).append(str(ann["caption"]))
            return refs
        raise DatasetError(f"--references {path}: a .json file must be COCO captions ({{\"annotations\": [...]}})")
    if suffix in (".csv", ".tsv"):
        rows = _csv_rows(path)
        cols = set(rows[0]) if rows else set()
        if "id" not in cols or not cols & {"text", "references"}:
            raise DatasetError(f"--references {path}: needs `id` and `text` (or `references`) columns; "
                               f"columns are: {', '.join(sorted(cols))}")
        for row in rows:
            if row.get("references"):
                refs.setdefault(row["id"], []).extend(json.loads(row["references"]))
            elif row.get("text") is not None:
                refs.setdefault(row["id"], []).append(row["text"])
        return refs
    raise DatasetError(f"--references {path}: unsupported; give JSONL, CSV, COCO JSON or a captionkit run output")


def load_media_paths(path: str | Path) -> dict[str, str]:
    """id -> local path of the item's first media file, from a captionkit run output (for thumbnails, CLIPScore)."""
    path = Path(path)
    media: dict[str, str] = {}
    if _is_results(path):
        for _, record in json_objects(results_file(path)):
            files = (record.get("outputs") or {}).get("media") or []
            if files and isinstance(files[0], dict) and files[0].get("path"):
                media[str(record["id"])] = files[0]["path"]
    return media
