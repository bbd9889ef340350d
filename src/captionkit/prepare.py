"""Instruction data for fine-tuning a post writer, from described items and their real post texts.

Each usable item becomes one record whose input holds what captionkit learnt about the media (captions, text
read in it, speech heard) and the post's facts (expected likes, username, company, date), and whose output is
the dataset's own post text (the item's reference). Two shapes:

* ``alpaca``: ``{"instruction", "input", "output", "id"}``, the seed system's ``finetuning.json`` record;
* ``chat``: ``{"id", "messages": [system, user (instruction + input), assistant (the post)]}``.

Items go to the validation split by a hash of their id (and ``seed``), never by their position, so an item
keeps its split across runs, formats and dataset orders, and adding items never moves the others.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, DatasetError
from captionkit.io.values import is_missing, to_jsonable
from captionkit.records import ROW_ERROR_KEY, ItemResult
from captionkit.retrieval import media_text

FORMATS: tuple[str, ...] = ("alpaca", "chat")
RESULTS_FILE = "results.jsonl"
# The seed system's instruction (Adobe content-simulation challenge), and ones in the same spirit per platform.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "adobe": "Generate the tweet content given the expected likes and the other information about the post.",
    "x": "Write the tweet for this post given the description of its media and the other information about it.",
    "instagram": "Write the Instagram caption for this post given the description of its media and the other "
    "information about it.",
    "linkedin": "Write the LinkedIn post for this media given its description and the other information about it.",
    "facebook": "Write the Facebook post for this media given its description and the other information about it.",
    "alt-text": "Write alt text for this media, for people who cannot see it, given its description.",
}
SYSTEM_PROMPT = (
    "You write social-media posts for brands. You are given what a post's media shows and facts about the post; "
    "answer with the post's text only."
)
# Input line label -> item metadata keys that may hold it (first present wins), in the seed's order.
METADATA_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Expected Likes", ("likes", "expected_likes", "expected likes")),
    ("Username", ("username", "user", "handle")),
    ("Company Name", ("company", "inferred company", "company_name", "brand")),
    ("Date Time", ("date", "datetime", "date_time", "created_at")),
)
SKIP_UNREADABLE = "unreadable row"
SKIP_FAILED = "item failed in the pipeline"
SKIP_NO_REFERENCE = "no reference text"
SKIP_NO_DESCRIPTION = "no description"
SKIP_DUPLICATE = "duplicate id"


class Prepared(tuple):
    """``(train, val)``: unpacks as a pair; ``skipped`` maps each reason a row was left out to its count."""

    skipped: dict[str, int]

    def __new__(cls, train: list[dict[str, Any]], val: list[dict[str, Any]], skipped: Mapping[str, int]) -> Prepared:
        self = super().__new__(cls, (train, val))
        self.skipped = dict(skipped)
        return self

    @property
    def train(self) -> list[dict[str, Any]]:
        return self[0]

    @property
    def val(self) -> list[dict[str, Any]]:
        return self[1]

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())


def default_instruction(platform: str = "adobe") -> str:
    key = platform.strip().lower()
    return DEFAULT_INSTRUCTIONS.get(
        key, f"Write the {platform} post for this media given its description and the other information about it."
    )


def is_validation(item_id: str, val_fraction: float, seed: int = 0) -> bool:
    """Whether ``item_id`` belongs to the validation split: a stable hash, independent of order and format."""
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def build_input(record: ItemResult | Mapping[str, Any]) -> str | None:
    """The record's input text, one ``Label: value`` line per known field; None when it has no description."""
    texts = media_text(record)
    if texts.caption is None:
        return None
    lines = [f"Caption: {texts.caption}"]
    if texts.ocr_text:
        lines.append(f"Text in media: {texts.ocr_text}")
    if texts.transcript:
        lines.append(f"Transcript: {texts.transcript}")
    metadata = _item(record).get("metadata") or {}
    for label, keys in METADATA_FIELDS:
        value = next((metadata[k] for k in keys if k in metadata and not is_missing(metadata[k])), None)
        if value is not None:
            lines.append(f"{label}: {_field_text(value)}")
    return "\n".join(lines)


def prepare(
    records: Iterable[ItemResult | Mapping[str, Any]],
    *,
    fmt: str = "alpaca",
    instruction: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    platform: str = "adobe",
) -> Prepared:
    """Turn pipeline results (``ItemResult`` or ``results.jsonl`` records) into ``(train, val)`` records.

    Items that failed, have no reference text or no description (no caption) are skipped and counted in
    ``result.skipped`` by reason. Records keep their input order within each split.
    """
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (got {val_fraction})")
    instruction = instruction.strip() if instruction and instruction.strip() else default_instruction(platform)
    train: list[dict[str, Any]] = []
    val: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    for record in records:
        data = record.to_dict() if isinstance(record, ItemResult) else record
        reason = _skip_reason(data, seen)
        if reason:
            skipped[reason] += 1
            continue
        item_id = str(data["id"])
        seen.add(item_id)
        text = build_input(data)
        assert text is not None  # _skip_reason checked the description
        output = str(_item(data)["reference"]).strip()
        row = _alpaca(item_id, instruction, text, output) if fmt == "alpaca" else _chat(item_id, instruction, text, output)
        (val if is_validation(item_id, val_fraction, seed) else train).append(row)
    return Prepared(train, val, skipped)


def _skip_reason(data: Mapping[str, Any], seen: set[str]) -> str | None:
    if ROW_ERROR_KEY in data or "id" not in data:
        return SKIP_UNREADABLE
    if data.get("error") or data.get("ok") is False:
        return SKIP_FAILED
    if str(data["id"]) in seen:
        return SKIP_DUPLICATE
    reference = _item(data).get("reference")
    if is_missing(reference) or not str(reference).strip():
        return SKIP_NO_REFERENCE
    if media_text(data).caption is None:
        return SKIP_NO_DESCRIPTION
    return None


def _item(record: ItemResult | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(record, ItemResult):
        return record.item.to_dict()
    item = record.get("item")
    return item if isinstance(item, Mapping) else {}


def _field_text(value: Any) -> str:
    value = to_jsonable(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


def _alpaca(item_id: str, instruction: str, text: str, output: str) -> dict[str, Any]:
    return {"instruction": instruction, "input": text, "output": output, "id": item_id}


def _chat(item_id: str, instruction: str, text: str, output: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{instruction}\n\n{text}"},
            {"role": "assistant", "content": output},
        ],
    }


# ------------------------------------------------------------------------------------------------ inputs


def load_records(
    path: str | Path, *, description_column: str | None = None, mapping: Any = None, sheet: str | None = None
) -> Iterator[dict[str, Any]]:
    """``results.jsonl``-shaped records from a run folder, a ``results.jsonl`` file, or (with
    ``description_column``) any dataset file whose rows already describe their media.

    For a dataset file the reference text comes from ``mapping`` (a :class:`ColumnMapping`; default: the
    ``content`` column) and the description column becomes the item's caption. Raises :class:`DatasetError`
    when the input is none of these. Reading is lazy; the shape is checked before the first record.
    """
    path = Path(path).expanduser()
    if description_column:
        if path.is_dir():
            raise DatasetError(f"--description-column applies to a dataset file, but {path} is a folder")
        return _dataset_records(path, description_column, mapping, sheet)
    if path.is_dir():
        results = path / RESULTS_FILE
        if not results.is_file():
            raise DatasetError(
                f"no {RESULTS_FILE} in {path}: expected the output folder of `captionkit run`, a {RESULTS_FILE} "
                "file, or a dataset file with --description-column"
            )
        path = results
    if not path.is_file():
        raise DatasetError(f"no such file or folder: {path}")
    return _results_records(path)


def _results_records(path: Path) -> Iterator[dict[str, Any]]:
    from captionkit.io.readers import JsonlReader

    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise DatasetError(
            f"{path} is not a {RESULTS_FILE} file; for a dataset whose rows already describe their media pass "
            "--description-column NAME"
        )
    reader = JsonlReader(path)
    columns = [c for c in reader.columns() if c != ROW_ERROR_KEY]
    if not ({"id", "item", "outputs"} <= set(columns)):
        raise DatasetError(
            f"{path} is not a captionkit {RESULTS_FILE} (its records have {', '.join(columns) or 'no fields'}, "
            "not id, item and outputs); for a dataset whose rows already describe their media pass "
            "--description-column NAME"
        )
    return iter(reader.rows())


def _dataset_records(path: Path, column: str, mapping: Any, sheet: str | None) -> Iterator[dict[str, Any]]:
    from captionkit.io.mapping import ColumnMapping
    from captionkit.io.readers import read_dataset

    mapping = mapping or ColumnMapping()
    if not mapping.is_explicit("media"):
        mapping = mapping.with_overrides(["media="])  # no media needed: the description is already written
    key = "_description"
    mapping = mapping.with_overrides([f"metadata.{key}={column}"])  # checked: a missing column is named
    dataset = read_dataset(path, mapping, sheet=sheet)
    if mapping.reference is None or dataset.mapping.reference is None:
        raise DatasetError(
            f"{path} has no reference (post text) column {mapping.reference!r}; columns are: "
            f"{', '.join(dataset.columns)}; pick one with --map reference=COLUMN"
        )

    def records() -> Iterator[dict[str, Any]]:
        for item in dataset:
            if item.read_error:
                yield {"id": item.id, "ok": False, "item": item.to_dict(), "outputs": {},
                       "error": {"stage": "read", "reason": item.read_error, "type": "DatasetError"}}
                continue
            description = item.metadata.pop(key, None)
            caption = None if is_missing(description) else " ".join(str(description).split())
            outputs = {"caption": [{"caption": caption}]} if caption else {}
            yield {"id": item.id, "ok": True, "item": item.to_dict(), "outputs": outputs, "error": None}

    return records()


def val_path(path: str | Path) -> Path:
    """Where the validation split of ``path`` goes: ``finetune.jsonl`` -> ``finetune.val.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.val{path.suffix}")


__all__ = [
    "DEFAULT_INSTRUCTIONS", "FORMATS", "Prepared", "build_input", "default_instruction", "is_validation",
    "load_records", "prepare", "val_path",
]
