"""Write result records to JSON Lines, CSV, Parquet or Excel, atomically.

JSON Lines keeps records nested. The tabular formats flatten them (``{"outputs": {"facts": {"width": 640}}}``
-> column ``outputs.facts.width``; lists become JSON text) and take the union of all records' columns in
first-seen order, so they read the records twice: the flattened records are spooled to a temporary file first,
which keeps memory flat for any number of records.

Every format writes to a hidden temporary file next to the target and renames it into place, so a crash or
Ctrl-C never leaves a half-written output (and never destroys the previous one).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from captionkit.errors import ConfigError
from captionkit.io.values import to_jsonable

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "xlsx")
SUFFIX_FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
}
EXCEL_CELL_LIMIT = 32767  # characters per cell; Excel refuses to open files with longer cells
EXCEL_MAX_ROWS = 1_048_576  # rows per sheet, header included; further rows continue on a new sheet
TRUNCATION_MARKER = "…[truncated]"
_SAFE_INT = 2**53  # beyond this Excel (a float store) silently changes the number: write it as text
_INT64 = (-(2**63), 2**63 - 1)
_PARQUET_BATCH_ROWS = 10_000
_SPOOL_IN_MEMORY = 16 * 1024 * 1024  # spooled records stay in RAM up to this size, then go to disk

Record = Mapping[str, Any]
Scalar = None | bool | int | float | str


# --------------------------------------------------------------------------------------------- public API


def write_records(records: Iterable[Any], path: str | Path, fmt: str | None = None) -> int:
    """Write ``records`` (dicts, or objects with ``to_dict()``) to ``path``; return how many were written.

    ``fmt`` is one of :data:`FORMATS`; when None it is taken from the suffix. Raises :class:`ConfigError` for
    an unknown format. The parent folder is created if needed.
    """
    path = Path(path)
    writer = WRITERS[resolve_format(path, fmt)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(path) as temporary:
        return writer(records, temporary)


def resolve_format(path: str | Path, fmt: str | None = None) -> str:
    """The writer name for ``fmt`` or, when None, for the suffix of ``path``."""
    if fmt is not None:
        name = fmt.strip().lower().lstrip(".")
        name = SUFFIX_FORMATS.get(f".{name}", name)  # "ndjson" and "pq" are spellings of the same formats
        if name not in WRITERS:
            raise ConfigError(f"unknown output format {fmt!r}; formats are: {', '.join(FORMATS)}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise ConfigError(
            f"cannot tell the output format of {str(path)!r} from its suffix; use one of "
            f"{', '.join(sorted(SUFFIX_FORMATS))} or pass a format ({', '.join(FORMATS)})"
        )
    return SUFFIX_FORMATS[suffix]


def flatten_record(record: Any, *, sep: str = ".") -> dict[str, Scalar]:
    """One level of scalar columns: nested dicts joined with ``sep``, lists as JSON text, dates as ISO text.

    Empty nested dicts add no column. Values are JSON-friendly (NaN -> None).
    """
    flat: dict[str, Scalar] = {}
    _flatten_into(to_jsonable(_as_dict(record)), "", sep, flat)
    return flat


def _flatten_into(data: dict[str, Any], prefix: str, sep: str, out: dict[str, Scalar]) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten_into(value, f"{name}{sep}", sep, out)
        elif isinstance(value, list):
            out[_encodable(name)] = _encodable(json.dumps(value, ensure_ascii=False))
        else:
            out[_encodable(name)] = _encodable(value) if isinstance(value, str) else value


def _encodable(text: str) -> str:
    """Text that UTF-8 can encode: lone surrogates (undecodable file names) become visible ``\\udcxx``."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _as_dict(record: Any) -> dict[str, Any]:
    to_dict = getattr(record, "to_dict", None)
    if callable(to_dict):  # ItemResult, Item
        record = to_dict()
    if not isinstance(record, Mapping):
        raise TypeError(f"records must be dicts (or have to_dict()), got {type(record).__name__}")
    return dict(record)


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` that replaces it on success and is removed on failure."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # same folder: rename is atomic
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- JSON Lines


def _write_jsonl(records: Iterable[Any], path: Path) -> int:
    count = 0
    # backslashreplace: a lone surrogate becomes a \udcxx escape, which is valid JSON for the same string.
    with open(path, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as handle:
        for record in records:
            handle.write(_json_line(to_jsonable(_as_dict(record))))
            count += 1
    return count


# Characters that str.splitlines() and JavaScript treat as line breaks although JSON allows them raw.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_LINE_BREAK_RE = re.compile("[\x85\u2028\u2029]")


def _json_line(value: Any) -> str:
    """One JSON line, readable (non-ASCII kept) yet one line for every line splitter."""
    text = json.dumps(value, ensure_ascii=False)
    return _LINE_BREAK_RE.sub(lambda m: _LINE_BREAKS[m.group()], text) + "\n"


# ------------------------------------------------------------------------------------------- tabular spool


@dataclass
class _ColumnKind:
    """What a column holds across all records, to give Parquet one type per column."""

    types: set[type] = field(default_factory=set)
    big_int: bool = False  # an int outside int64

    def add(self, value: Scalar) -> None:
        if value is None:
            return
        self.types.add(type(value))
        if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
            self.big_int = True


class _Spool:
    """Flattened records in a temporary file, with the union of their columns in first-seen order."""

    def __init__(self, handle: IO[str], records: Iterable[Any]) -> None:
        self.kinds: dict[str, _ColumnKind] = {}  # dicts keep insertion order: first-seen column order
        self.count = 0
        self._file = handle
        for record in records:
            flat = flatten_record(record)
            for key, value in flat.items():
                self.kinds.setdefault(key, _ColumnKind()).add(value)
            handle.write(json.dumps(flat, ensure_ascii=False) + "\n")
            self.count += 1

    @property
    def columns(self) -> list[str]:
        return list(self.kinds)

    def __iter__(self) -> Iterator[dict[str, Scalar]]:
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)


@contextmanager
def _spooled(records: Iterable[Any]) -> Iterator[_Spool]:
    with tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", newline="\n") as handle:
        yield _Spool(handle, records)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- CSV


def _write_csv(records: Iterable[Any], path: Path) -> int:
    with _spooled(records) as spool, open(path, "w", encoding="utf-8", newline="") as handle:
        if not spool.columns:
            return spool.count
        writer = csv.writer(handle)
        writer.writerow(spool.columns)
        for row in spool:
            writer.writerow([_csv_cell(row.get(column)) for column in spool.columns])
        return spool.count


def _csv_cell(value: Scalar) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # JSON spelling, as in the JSON-encoded list cells
    return str(value)


# ------------------------------------------------------------------------------------------------ Parquet


def _write_parquet(records: Iterable[Any], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _spooled(records) as spool:
        plan = {column: _parquet_plan(kind) for column, kind in spool.kinds.items()}
        schema = pa.schema([(column, pa_type) for column, (pa_type, _) in plan.items()])
        with pq.ParquetWriter(path, schema) as writer:
            for chunk in _chunks(spool, _PARQUET_BATCH_ROWS):
                arrays = [
                    pa.array([convert(row.get(column)) for row in chunk], type=pa_type)
                    for column, (pa_type, convert) in plan.items()
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        return spool.count


def _parquet_plan(kind: _ColumnKind) -> tuple[Any, Callable[[Scalar], Any]]:
    """(arrow type, value converter): a native type when the column is uniform, else JSON text."""
    import pyarrow as pa

    types = kind.types
    if types == {bool}:
        return pa.bool_(), _same
    if types == {int} and not kind.big_int:
        return pa.int64(), _same
    if types and types <= {int, float} and not kind.big_int:
        return pa.float64(), _to_float
    if types <= {str}:  # includes a column that is None everywhere
        return pa.string(), _same
    return pa.string(), _to_json_text  # mixed types: keep every value, as text


def _same(value: Scalar) -> Any:
    return value


def _to_float(value: Scalar) -> float | None:
    return None if value is None else float(value)


def _to_json_text(value: Scalar) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _chunks(rows: Iterable[dict[str, Scalar]], size: int) -> Iterator[list[dict[str, Scalar]]]:
    chunk: list[dict[str, Scalar]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -------------------------------------------------------------------------------------------------- Excel


def _write_xlsx(records: Iterable[Any], path: Path) -> int:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    with _spooled(records) as spool:
        sheet, rows_in_sheet, sheets = None, EXCEL_MAX_ROWS, 0
        for row in spool:
            if rows_in_sheet == EXCEL_MAX_ROWS:  # start (or continue on) a sheet, with its own header
                sheets += 1
                sheet = workbook.create_sheet("records" if sheets == 1 else f"records_{sheets}")
                sheet.append([_excel_cell(sheet, column) for column in spool.columns])
                rows_in_sheet = 1
            sheet.append([_excel_cell(sheet, row.get(column)) for column in spool.columns])
            rows_in_sheet += 1
        if sheet is None:  # no records: an empty sheet, so the file still opens
            workbook.create_sheet("records")
        workbook.save(path)
        return spool.count


def _excel_cell(sheet: Any, value: Scalar) -> Any:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value if abs(value) <= _SAFE_INT else str(value)
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))  # control characters make the file unreadable
    if len(text) > EXCEL_CELL_LIMIT:
        text = text[: EXCEL_CELL_LIMIT - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER
    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"  # text such as "=cmd|..." must stay text, never become a formula
    return cell


# ----------------------------------------------------------------------------------------------- registry

WriterFn = Callable[[Iterable[Any], Path], int]
WRITERS: dict[str, WriterFn] = {
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "parquet": _write_parquet,
    "xlsx": _write_xlsx,
}
