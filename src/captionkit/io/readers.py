"""Read datasets (CSV/TSV, Excel, JSON Lines, JSON, Parquet, or a folder of media) as a stream of Items.

Every reader streams: rows are read one at a time (csv module, openpyxl read-only, Parquet record batches,
JSON Lines line by line, a JSON list decoded element by element), so a multi-gigabyte dataset costs the memory
of one batch plus the set of ids seen (needed to reject duplicates).

Formats are a registry, :data:`READERS` (suffix -> class); each class follows the small :class:`Reader`
protocol. :class:`Dataset` turns a reader's raw rows into :class:`~captionkit.records.Item` objects through a
:class:`~captionkit.io.mapping.ResolvedMapping`.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from captionkit.errors import ConfigError, DatasetError, MediaStringError
from captionkit.io.mapping import MEDIA_ERROR_KEY, ROW_ERROR_KEY, ColumnMapping, ResolvedMapping
from captionkit.io.tweet import parse_media_cell
from captionkit.io.values import id_text, is_missing, to_jsonable, typed_text
from captionkit.media.kinds import is_media_file, kind_from_suffix
from captionkit.records import Item, MediaRef

Row = dict[str, Any]

SAMPLE_BYTES = 64 * 1024  # enough text to sniff encoding and delimiter, small enough to be instant
DELIMITERS = ",;\t|"
ITEM_KEYS = frozenset({"id", "metadata", "media", "reference"})  # captionkit's own Item.to_dict() shape
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://|^data:")
_BOMS = (  # UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CENTRAL = frozenset({"Czech", "Slovak", "Polish", "Hungarian", "Croatian", "Slovene", "Romanian"})
_BALTIC = frozenset({"Lithuanian", "Latvian", "Estonian"})
# Latin-script code pages other than cp1252 -> the languages they exist for.
_CODEPAGE_LANGUAGES: dict[str, frozenset[str]] = {
    **dict.fromkeys(("cp1250", "iso8859_2", "mac_latin2"), _CENTRAL),
    **dict.fromkeys(("cp1257", "iso8859_13", "iso8859_4", "cp775"), _BALTIC),
    **dict.fromkeys(("cp1254", "iso8859_9"), frozenset({"Turkish"})),
    "cp1258": frozenset({"Vietnamese"}),
}
# Large snscrape cells and long posts exceed csv's default 128 KiB field limit.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


class Reader(Protocol):
    """One dataset format: header and raw rows of one file (or folder)."""

    # Whether ``sheet=`` means something to this format.
    takes_sheet: ClassVar[bool]
    # A format whose columns are its own (folders) ignores the user's mapping and uses this one.
    fixed_mapping: ClassVar[ColumnMapping | None]

    def __init__(self, path: Path, *, sheet: str | None = None) -> None: ...

    def columns(self) -> list[str]:
        """Column names, in file order."""
        ...

    def rows(self) -> Iterator[Row]:
        """Data rows as {column: value}, read lazily; each call starts from the top."""
        ...

    def count(self) -> int:
        """Number of data rows (what ``rows()`` would yield)."""
        ...


# ------------------------------------------------------------------------------------------------- dataset


class Dataset:
    """A dataset file read lazily: iterate for :class:`Item` objects, ``len()`` for the row count.

    Iteration may be repeated (each pass re-reads the file). It raises :class:`DatasetError` on a duplicate id,
    after yielding the items before it. A media cell that cannot be parsed does not stop the read: that item
    gets ``media=[]`` and the reason in ``metadata["_media_error"]``.
    """

    def __init__(self, path: Path, reader: Reader, mapping: ResolvedMapping, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.mapping = mapping
        self._reader = reader
        self._convert = _RowConverter(mapping, base_dir=_base_dir(path), typed=getattr(reader, "untyped", False))
        self._count: int | None = None

    def __iter__(self) -> Iterator[Item]:
        seen: dict[str, int] = {}  # id -> row number, to name both rows of a duplicate
        for number, row in enumerate(self._reader.rows(), start=1):
            item = self._convert(row, number)
            first = seen.setdefault(item.id, number)
            if first != number:
                raise DatasetError(
                    f"duplicate id {item.id!r} in {self.path}: data rows {first} and {number}; ids must be unique "
                    "(pick another column with --map id=COLUMN, or number the rows with --map id=)"
                )
            yield item

    def count(self) -> int:
        """Number of items, computed once (Parquet metadata, a row count otherwise)."""
        if self._count is None:
            self._count = self._reader.count()
        return self._count

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, columns={self.columns!r})"


def read_dataset(
    path: str | Path, mapping: ColumnMapping | None = None, *, sheet: str | None = None
) -> Dataset:
    """Open a dataset file or media folder. Columns are checked now; rows are read when iterated.

    ``mapping`` defaults to :class:`ColumnMapping()` (the Adobe tweet columns). ``sheet`` picks an Excel sheet.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"no such dataset file or folder: {path}")
    reader_cls = FolderReader if path.is_dir() else READERS.get(path.suffix.lower())
    if reader_cls is None:
        raise DatasetError(
            f"cannot read {path}: unknown format {path.suffix or '(no suffix)'!r}; {_supported()}"
        )
    if sheet is not None and not reader_cls.takes_sheet:
        raise ConfigError(f"--sheet {sheet!r} only applies to Excel files, not {path.name}")
    reader = reader_cls(path, sheet=sheet)
    columns = reader.columns()
    chosen = reader_cls.fixed_mapping or mapping or ColumnMapping()
    resolved = chosen.resolve(columns, source=str(path))
    return Dataset(path, reader, resolved, columns)


def _supported() -> str:
    return f"supported formats: {', '.join(sorted(READERS))} files, or a folder of media"


def _base_dir(path: Path) -> Path:
    return (path if path.is_dir() else path.parent).resolve()


# ------------------------------------------------------------------------------------------ rows -> items


class _RowConverter:
    """Builds an Item from one raw row using a resolved mapping."""

    def __init__(self, mapping: ResolvedMapping, base_dir: Path, typed: bool = False) -> None:
        self.mapping = mapping
        self.base_dir = base_dir
        self.value = (lambda v: to_jsonable(typed_text(v))) if typed else to_jsonable  # numbers from text cells

    def __call__(self, row: Row, number: int) -> Item:
        if ROW_ERROR_KEY in row:
            return Item(id=_item_id(None, number), metadata={ROW_ERROR_KEY: row[ROW_ERROR_KEY]})
        if _is_item_shape(row):
            return self._from_item_shape(row, number)
        m = self.mapping
        metadata = {name: self.value(row.get(column)) for name, column in m.metadata.items()}
        metadata.update((key, self.value(row[key])) for key in m.other_columns(row))
        return Item(
            id=_item_id(row.get(m.id) if m.id else None, number),
            metadata=metadata,
            media=self._media(row.get(m.media) if m.media else None, metadata),
            reference=_text(row.get(m.reference)) if m.reference else None,
        )

    def _from_item_shape(self, row: Row, number: int) -> Item:
        metadata = dict(to_jsonable(row.get("metadata") or {}))
        return Item(
            id=_item_id(row.get("id"), number),
            metadata=metadata,
            media=self._media(row.get("media"), metadata),
            reference=_text(row.get("reference")),
        )

    def _media(self, cell: Any, metadata: dict[str, Any]) -> list[MediaRef]:
        try:
            refs = parse_media_cell(cell)
        except MediaStringError as exc:  # one bad cell fails one item (downstream), not the whole dataset
            metadata[MEDIA_ERROR_KEY] = str(exc)
            return []
        return [self._resolve_paths(ref) for ref in refs]

    def _resolve_paths(self, ref: MediaRef) -> MediaRef:
        """Relative local paths are relative to the dataset file, not to wherever the command runs."""
        ref.url = _resolve(ref.url, self.base_dir)
        ref.thumbnail_url = _resolve(ref.thumbnail_url, self.base_dir)
        ref.preview_url = _resolve(ref.preview_url, self.base_dir)
        for variant in ref.variants:
            variant.url = _resolve(variant.url, self.base_dir)
        return ref


def _is_item_shape(row: Row) -> bool:
    """A row written by captionkit itself (Item.to_dict()): metadata is nested, not spread over columns."""
    if not (set(row) <= ITEM_KEYS and "id" in row and isinstance(row.get("metadata", {}), dict)):
        return False
    return "metadata" in row or isinstance(row.get("media"), list)


def _resolve(location: str | None, base_dir: Path) -> str | None:
    if not location or _URL_SCHEME.match(location):
        return location
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _item_id(value: Any, number: int) -> str:
    return f"row-{number}" if is_missing(value) else id_text(value)


def _text(value: Any) -> str | None:
    if is_missing(value):
        return None
    value = to_jsonable(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _unique_header(names: list[Any]) -> list[str]:
    """Header cells as distinct strings: blanks become ``column_<n>``, repeats get ``_2``, ``_3``..."""
    header: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(names, start=1):
        name = str(to_jsonable(raw)).strip() if not is_missing(raw) else f"column_{index}"
        candidate, suffix = name, 2
        while candidate in seen:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        seen.add(candidate)
        header.append(candidate)
    return header


# ---------------------------------------------------------------------------------------- delimited text


def detect_encoding(sample: bytes) -> str:
    """The text encoding of a file's first bytes: BOM, else UTF-8 if it decodes, else charset_normalizer."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding
    if b"\x00" not in sample and _decodes_as_utf8(sample):  # NULs: UTF-16 without BOM also "decodes" as UTF-8
        return "utf-8"
    import charset_normalizer
    from charset_normalizer.cd import encoding_languages

    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return "cp1252"
    best = matches[0]
    # On a short sample of Western text charset_normalizer often ranks a look-alike Latin code page first
    # (cp775, cp1257, cp1250 for French or German). Such a code page is believed only when the language it
    # detected is one the code page exists for; otherwise cp1252 (what Excel on Windows writes) wins if it
    # decodes the sample about as cleanly.
    # A cp1252 match that ties with the best (same chaos and coherence) also wins: the order of ties is arbitrary.
    doubtful = encoding_languages(best.encoding) == ["Latin Based"] and (
        best.language not in _CODEPAGE_LANGUAGES.get(best.encoding, ())
    )
    for match in matches:
        if "cp1252" in match.could_be_from_charset:
            tie = match.chaos <= best.chaos and match.coherence >= best.coherence
            if tie or (doubtful and match.chaos <= best.chaos + 0.1):
                return "cp1252"
    return best.encoding


def _decodes_as_utf8(sample: bytes) -> bool:
    try:  # incremental, final=False: the sample may end in the middle of a character
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def sniff_delimiter(sample: str, *, preferred: str = ",", truncated: bool = False) -> str:
    """The delimiter among , ; tab | that splits ``sample`` into a consistent table.

    csv.Sniffer is asked first; its answer is kept only if every sampled record then has the header's width
    (it is easily fooled by quoted cells full of commas, such as snscrape reprs). Otherwise the delimiter that
    gives the most records of the header's width wins, ``preferred`` on ties.
    """
    try:
        sniffed = csv.Sniffer().sniff(sample[:16384], delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = None
    if sniffed and _is_consistent(sample, sniffed, truncated):
        return sniffed
    return max(DELIMITERS, key=lambda d: (_width_score(sample, d, truncated), d == preferred))


def _sample_records(sample: str, delimiter: str, truncated: bool) -> list[list[str]]:
    try:
        records = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r]
    except csv.Error:
        return []
    return records[:-1] if truncated and len(records) > 1 else records  # the last one may be cut off


def _is_consistent(sample: str, delimiter: str, truncated: bool) -> bool:
    records = _sample_records(sample, delimiter, truncated)
    return bool(records) and len(records[0]) > 1 and all(len(r) == len(records[0]) for r in records)


def _width_score(sample: str, delimiter: str, truncated: bool) -> tuple[bool, int]:
    """(header has several columns, number of records as wide as the header)."""
    records = _sample_records(sample, delimiter, truncated)
    if not records:
        return (False, 0)
    width = len(records[0])
    return (width > 1, sum(len(r) == width for r in records))


class CsvReader:
    """CSV / TSV / TXT with a header row. Encoding and delimiter are sniffed from the first 64 KiB."""

    takes_sheet: ClassVar[bool] = False
    untyped: ClassVar[bool] = True  # every cell is text: metadata numbers are recovered by typed_text
    fixed_mapping: ClassVar[ColumnMapping | None] = None

    def __init__(self, path: Path, *, sheet: str | None = None) -> None:
        self.path = path
        with open(path, "rb") as handle:
            raw = handle.read(SAMPLE_BYTES)
            truncated = bool(handle.read(1))
        self.encoding = detect_encoding(raw)
        sample = codecs.getincrementaldecoder(self.encoding)(errors="replace").decode(
            raw, final=not truncated
        )
        self.delimiter = sniff_delimiter(
            sample, preferred="\t" if path.suffix.lower() == ".tsv" else ",", truncated=truncated
        )
        # A .txt list of URLs/paths has no header: its first line is already media.
        first = next(iter(_sample_records(sample, self.delimiter, False)), [])
        self.headerless = path.suffix.lower() == ".txt" and len(first) == 1 and _looks_like_media(first[0])

    def _records(self) -> Iterator[list[str]]:
        # errors="replace": a stray byte deep in a big file must not abort the read after hours of work.
        with open(self.path, encoding=self.encoding, errors="replace", newline="") as handle:
            for record in csv.reader(handle, delimiter=self.delimiter):
                if any(cell.strip() for cell in record):  # blank lines and ",,," rows from spreadsheets
                    yield record

    def columns(self) -> list[str]:
        if self.headerless:
            return ["media"]
        return _unique_header(next(self._records(), []))

    def rows(self) -> Iterator[Row]:
        records = self._records()
        header = ["media"] if self.headerless else _unique_header(next(records, []))
        for record in records:
            yield {
                column: (cell if cell != "" else None)
                for column, cell in zip(header, _pad(record, len(header)))
            }

    def count(self) -> int:
        records = sum(1 for _ in self._records())
        return records if self.headerless else max(records - 1, 0)


def _pad(record: list[str], width: int) -> list[str]:
    return record + [""] * (width - len(record)) if len(record) < width else record


def _looks_like_media(cell: str) -> bool:
    cell = cell.strip()
    return bool(_URL_SCHEME.match(cell)) or kind_from_suffix(cell) is not None


# ------------------------------------------------------------------------------------------------- Excel


class XlsxReader:
    """Excel workbooks via openpyxl in read-only mode (rows are streamed from the zip)."""

    takes_sheet: ClassVar[bool] = True
    fixed_mapping: ClassVar[ColumnMapping | None] = None

    def __init__(self, path: Path, *, sheet: str | None = None) -> None:
        self.path = path
        self.sheet = sheet

    def _open(self) -> tuple[Any, Any]:
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:  # zip, XML and openpyxl's own errors all mean "not a readable workbook"
            raise DatasetError(f"cannot read {self.path} as an Excel workbook: {exc}") from exc
        if self.sheet is None:
            return workbook, workbook.worksheets[0]
        if self.sheet not in workbook.sheetnames:
            workbook.close()
            raise DatasetError(
                f"no sheet {self.sheet!r} in {self.path}; sheets are: {', '.join(workbook.sheetnames)}"
            )
        return workbook, workbook[self.sheet]

    def _records(self) -> Iterator[tuple[Any, ...]]:
        workbook, sheet = self._open()
        try:
            for values in sheet.iter_rows(values_only=True):
                if not all(is_missing(v) for v in values):
                    yield values
        finally:
            workbook.close()

    def columns(self) -> list[str]:
        records = self._records()
        header = next(records, ())
        records.close()
        return _unique_header(_trim_trailing_blanks(list(header)))

    def rows(self) -> Iterator[Row]:
        records = self._records()
        header = _unique_header(_trim_trailing_blanks(list(next(records, ()))))
        for values in records:
            yield dict(zip(header, _pad(list(values), len(header))))

    def count(self) -> int:
        return max(sum(1 for _ in self._records()) - 1, 0)


def _trim_trailing_blanks(header: list[Any]) -> list[Any]:
    """Read-only sheets often report empty columns past the data; they are not columns."""
    while header and is_missing(header[-1]):
        header.pop()
    return header


# --------------------------------------------------------------------------------------------------- JSON


class JsonlReader:
    """JSON Lines: one object per line (dataset rows, or captionkit's own Item records)."""

    takes_sheet: ClassVar[bool] = False
    fixed_mapping: ClassVar[ColumnMapping | None] = None

    def __init__(self, path: Path, *, sheet: str | None = None) -> None:
        self.path = path

    def rows(self) -> Iterator[Row]:
        with open(self.path, encoding="utf-8-sig", errors="replace") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield self._decode(line, line_number)
                    except DatasetError as exc:  # one broken line fails one item, not the read
                        yield {ROW_ERROR_KEY: str(exc)}

    def _decode(self, line: str, line_number: int) -> Row:
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{self.path} line {line_number} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise DatasetError(
                f"{self.path} line {line_number}: expected a JSON object, got {type(value).__name__}"
            )
        return value

    def columns(self) -> list[str]:
        return _leading_keys(self.rows())

    def count(self) -> int:
        with open(self.path, "rb") as handle:
            return sum(1 for line in handle if line.strip())


class JsonReader:
    """A JSON list of objects, decoded one element at a time so the file never sits in memory whole."""

    takes_sheet: ClassVar[bool] = False
    fixed_mapping: ClassVar[ColumnMapping | None] = None

    def __init__(self, path: Path, *, sheet: str | None = None) -> None:
        self.path = path

    def rows(self) -> Iterator[Row]:
        with open(self.path, encoding="utf-8-sig", errors="replace") as handle:
            for index, value in enumerate(_JsonArrayStream(handle, str(self.path)), start=1):
                if not isinstance(value, dict):
                    raise DatasetError(
                        f"{self.path}: element {index} is not a JSON object but {type(value).__name__}"
                    )
                yield value

    def columns(self) -> list[str]:
        return _leading_keys(self.rows())

    def count(self) -> int:
        return sum(1 for _ in self.rows())


def _leading_keys(rows: Iterator[Row], sample: int = 100) -> list[str]:
    """Columns of a JSON dataset: the keys of its first rows, in first-seen order (objects may omit keys)."""
    keys: dict[str, None] = {}
    try:
        for row in itertools.islice(rows, sample):
            keys.update(dict.fromkeys(k for k in row if k != ROW_ERROR_KEY))
    finally:
        getattr(rows, "close", lambda: None)()  # closes the file now rather than at garbage collection
    return list(keys)


class _JsonArrayStream:
    """Iterates the elements of a top-level JSON array read chunk by chunk (json.JSONDecoder.raw_decode)."""

    CHUNK = 1 << 16

    def __init__(self, handle: io.TextIOBase, name: str) -> None:
        self.handle, self.name = handle, name
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[Any]:
        if self._peek() != "[":
            raise DatasetError(f"{self.name} must hold a JSON list of objects ([{{...}}, ...])")
        self.pos += 1
        if self._peek() == "]":
            return
        while True:
            self._peek()  # raw_decode does not skip the blanks before a value
            yield self._value()
            separator = self._peek()
            self.pos += 1
            if separator == "]":
                return
            if separator != ",":
                raise DatasetError(
                    f"{self.name}: expected ',' or ']' between list elements, found {separator or 'the end'!r}"
                )

    def _fill(self) -> bool:
        chunk = self.handle.read(self.CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return True

    def _peek(self) -> str:
        """The next non-blank character ("" at the end), without consuming it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos].isspace():
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _value(self) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self._fill():  # the element may simply continue in the next chunk
                    continue
                raise DatasetError(
                    f"{self.name} is not valid JSON: {exc.msg} (element ends the file early?)"
                ) from None
            # A number ending the buffer ("12" of "123", "1" of "1.5") may go on in the next chunk: read more.
            if _is_number(value) and _NUMBER_TAIL.fullmatch(self.buf, end) and not self.eof and self._fill():
                continue
            self.pos = end
            return value


_NUMBER_TAIL = re.compile(r"[0-9eE+\-.]*")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------------ Parquet


class ParquetReader:
    """Parquet via pyarrow, one record batch at a time; the row count comes from the file's metadata."""

    takes_sheet: ClassVar[bool] = False
    fixed_mapping: ClassVar[ColumnMapping | None] = None
    BATCH_ROWS = 1024

    def __init__(self, path: Path, *, sheet: str | None = None) -> None:
        self.path = path

    def _open(self) -> Any:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # ArrowInvalid, OSError: not a Parquet file
            raise DatasetError(f"cannot read {self.path} as Parquet: {exc}") from exc

    def columns(self) -> list[str]:
        parquet = self._open()
        try:
            return list(parquet.schema_arrow.names)
        finally:
            parquet.close()

    def rows(self) -> Iterator[Row]:
        parquet = self._open()
        try:
            for batch in parquet.iter_batches(batch_size=self.BATCH_ROWS):
                yield from batch.to_pylist()
        finally:
            parquet.close()

    def count(self) -> int:
        parquet = self._open()
        try:
            return int(parquet.metadata.num_rows)
        finally:
            parquet.close()


# ------------------------------------------------------------------------------------------------- folder


class FolderReader:
    """Every media file under a folder (recursively, in sorted order) is one item.

    id: the path relative to the folder; reference: the text of a sidecar ``<stem>.txt`` next to the file.
    """

    takes_sheet: ClassVar[bool] = False
    fixed_mapping: ClassVar[ColumnMapping | None] = ColumnMapping(
        id="id",
        media="media",
        reference="reference",
        metadata={"filename": "filename"},
        keep_other_columns=False,
    )

    def __init__(self, path: Path, *, sheet: str | None = None) -> None:
        self.root = path.resolve()

    def columns(self) -> list[str]:
        return ["id", "media", "reference", "filename"]

    def rows(self) -> Iterator[Row]:
        for path in self._media_files(self.root, set()):
            yield {
                "id": path.relative_to(self.root).as_posix(),
                "media": [{"kind": kind_from_suffix(path) or "image", "url": str(path)}],
                "reference": _read_sidecar(path.with_suffix(".txt")),
                "filename": path.name,
            }

    def count(self) -> int:
        return sum(1 for _ in self._media_files(self.root, set()))

    def _media_files(self, folder: Path, visited: set[tuple[int, int]]) -> Iterator[Path]:
        """Depth-first in name order, so the order is that of the sorted relative paths' components."""
        stat = folder.stat()
        if (stat.st_dev, stat.st_ino) in visited:  # a symlink loop
            return
        visited.add((stat.st_dev, stat.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return  # an unreadable subfolder is skipped rather than aborting the whole listing
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir():
                yield from self._media_files(path, visited)
            elif is_media_file(path):
                yield path


def _read_sidecar(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    text = raw.decode(detect_encoding(raw[:SAMPLE_BYTES]), errors="replace").lstrip("\ufeff").strip()
    return text or None


# ----------------------------------------------------------------------------------------------- registry

READERS: dict[str, type[Reader]] = {
    ".csv": CsvReader,
    ".tsv": CsvReader,
    ".txt": CsvReader,
    ".xlsx": XlsxReader,
    ".xlsm": XlsxReader,
    ".jsonl": JsonlReader,
    ".ndjson": JsonlReader,
    ".json": JsonReader,
    ".parquet": ParquetReader,
    ".pq": ParquetReader,
}
