"""Writers: every format round-trips heterogeneous nested records, atomically."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from captionkit.errors import ConfigError
from captionkit.io.readers import read_dataset
from captionkit.io.writers import (
    EXCEL_CELL_LIMIT,
    FORMATS,
    TRUNCATION_MARKER,
    flatten_record,
    resolve_format,
    write_records,
)
from captionkit.records import Item, ItemResult, MediaRef, StageError

# Heterogeneous on purpose: columns appear late, types change between records, values nest and repeat.
RECORDS = [
    {
        "id": "a",
        "ok": True,
        "outputs": {"facts": {"width": 640, "height": 480}, "caption": "a red square"},
        "tags": ["x", "y"],
    },
    {
        "id": "b",
        "ok": False,
        "outputs": {"facts": {"width": "unknown"}},
        "error": {"stage": "decode", "reason": "bad file"},
    },
    {
        "id": "c",
        "ok": True,
        "outputs": {"facts": {"width": 1.5}, "caption": "ünïcödé “quotes”, commas\nand lines"},
        "score": None,
    },
    {"id": 4, "when": dt.datetime(2024, 5, 6, 7, 8, 9), "nan": float("nan"), "big": 2**70, "empty": {}},
]
COLUMNS = [
    "id", "ok", "outputs.facts.width", "outputs.facts.height", "outputs.caption", "tags",
    "error.stage", "error.reason", "score", "when", "nan", "big",
]  # fmt: skip


def flat_rows() -> list[dict]:
    return [flatten_record(r) for r in RECORDS]


def test_flatten_record():
    assert flatten_record(RECORDS[0]) == {
        "id": "a",
        "ok": True,
        "outputs.facts.width": 640,
        "outputs.facts.height": 480,
        "outputs.caption": "a red square",
        "tags": '["x", "y"]',
    }
    assert flatten_record(RECORDS[3]) == {"id": 4, "when": "2024-05-06T07:08:09", "nan": None, "big": 2**70}


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "out.jsonl"
    assert write_records(iter(RECORDS), path) == 4
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines][:3] == RECORDS[:3]
    assert json.loads(lines[3]) == {
        "id": 4,
        "when": "2024-05-06T07:08:09",
        "nan": None,
        "big": 2**70,
        "empty": {},
    }
    assert "ünïcödé" in lines[2]  # ensure_ascii=False: readable, not \u escapes


def test_csv_round_trip(tmp_path):
    path = tmp_path / "out.csv"
    write_records(RECORDS, path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS  # union of columns, first-seen order
    expected = [{k: "" if v is None else str(v) for k, v in r.items()} for r in flat_rows()]
    for row, want in zip(rows, expected):
        want = {k: {"True": "true", "False": "false"}.get(v, v) for k, v in want.items()}
        assert {k: v for k, v in row.items() if v != ""} == {k: v for k, v in want.items() if v != ""}


def test_parquet_round_trip_with_mixed_types(tmp_path):
    path = tmp_path / "out.parquet"
    write_records(RECORDS, path)
    table = pq.read_table(path)
    assert table.column_names == COLUMNS
    types = {f.name: str(f.type) for f in table.schema}
    assert types["ok"] == "bool"
    assert types["outputs.facts.height"] == "int64"
    assert types["outputs.facts.width"] == "string"  # int, str and float mixed: kept as text
    assert types["id"] == "string"
    assert types["big"] == "string"  # beyond int64
    rows = table.to_pylist()
    assert [r["outputs.facts.width"] for r in rows] == ["640", "unknown", "1.5", None]
    assert [r["id"] for r in rows] == ["a", "b", "c", "4"]
    assert rows[0]["tags"] == '["x", "y"]' and rows[3]["big"] == str(2**70)
    assert rows[2]["outputs.caption"] == RECORDS[2]["outputs"]["caption"]


def test_parquet_int_and_float_column_becomes_float(tmp_path):
    path = tmp_path / "out.parquet"
    write_records([{"x": 1}, {"x": 2.5}, {"x": None}], path)
    assert pq.read_table(path).column("x").to_pylist() == [1.0, 2.5, None]


def test_xlsx_round_trip(tmp_path):
    path = tmp_path / "out.xlsx"
    write_records(RECORDS, path)
    rows = list(load_workbook(path, read_only=True).worksheets[0].iter_rows(values_only=True))
    assert list(rows[0]) == COLUMNS
    for values, want in zip(rows[1:], flat_rows()):
        got = {k: v for k, v in zip(COLUMNS, values) if v is not None}
        want = {k: v for k, v in want.items() if v is not None}
        want["big"] = str(2**70) if "big" in want else None  # too big for Excel's numbers: text
        assert got == {k: v for k, v in want.items() if v is not None}


def test_xlsx_long_cells_are_truncated_and_formulas_stay_text(tmp_path):
    path = tmp_path / "out.xlsx"
    write_records([{"long": "x" * 40_000, "formula": '=HYPERLINK("http://evil")', "ctrl": "a\x01b"}], path)
    [_header, row] = list(load_workbook(path).worksheets[0].iter_rows())
    long, formula, ctrl = row
    assert len(long.value) == EXCEL_CELL_LIMIT and long.value.endswith(TRUNCATION_MARKER)
    assert (formula.value, formula.data_type) == ('=HYPERLINK("http://evil")', "s")
    assert ctrl.value == "ab"


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_input_writes_a_valid_empty_file(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    assert write_records([], path) == 0
    assert path.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_item_results_are_accepted(tmp_path, fmt):
    item = Item(id="a", metadata={"likes": 3}, media=[MediaRef(kind="photo", url="https://x.test/a.jpg")])
    results = [
        ItemResult(id="a", item=item, outputs={"caption": {"text": "hi"}}, timings={"caption": 0.5}),
        ItemResult(id="b", item=Item(id="b"), error=StageError("fetch", "404 Not Found", "FetchError")),
    ]
    path = tmp_path / f"out.{fmt}"
    assert write_records(results, path, fmt=fmt) == 2


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out.csv"
    write_records([{"a": 1}], path)

    def failing():
        yield {"a": 2}
        raise RuntimeError("crash mid-way")

    for fmt in FORMATS:
        target = tmp_path / f"keep.{fmt}"
        write_records([{"a": 1}], target)
        before = target.read_bytes()
        with pytest.raises(RuntimeError):
            write_records(failing(), target)
        assert target.read_bytes() == before  # the old output survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.csv", *(f"keep.{f}" for f in FORMATS)])


def test_parent_folders_are_created(tmp_path):
    path = tmp_path / "new" / "deeper" / "out.jsonl"
    write_records([{"a": 1}], path)
    assert path.read_text() == '{"a": 1}\n'


def test_unknown_formats_are_config_errors(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown output format 'xml'; formats are: jsonl, csv, parquet, xlsx"
    ):
        write_records([{"a": 1}], tmp_path / "out.xml", fmt="xml")
    with pytest.raises(
        ConfigError, match=r"cannot tell the output format of .*out\.txt.*jsonl, csv, parquet, xlsx"
    ):
        write_records([{"a": 1}], tmp_path / "out.txt")
    assert not list(tmp_path.iterdir())
    assert resolve_format("x.ndjson") == "jsonl" and resolve_format("x", ".PQ") == "parquet"


def test_written_items_read_back_as_a_dataset(tmp_path):
    items = [
        Item(id=str(n), metadata={"n": n}, media=[MediaRef(kind="image", url=f"/data/{n}.png")])
        for n in range(3)
    ]
    path = tmp_path / "items.jsonl"
    write_records(items, path)
    assert list(read_dataset(Path(path))) == items


# ------------------------------------------------------------------------------------------- property-based

keys = st.text(min_size=1, max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=30)  # any unicode, control characters, "=formulas", lone surrogates
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
records = st.lists(st.dictionaries(keys, values, max_size=5), max_size=6)


def csv_text(value) -> str:
    if value is None:
        return ""
    return {True: "true", False: "false"}[value] if isinstance(value, bool) else str(value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records)
def test_any_records_write_in_every_format(tmp_path, recs):
    flat = [flatten_record(r) for r in recs]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    for fmt in FORMATS:
        assert write_records(recs, tmp_path / f"out.{fmt}") == len(recs)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == columns
    if columns:  # records with no fields at all have no table to be rows of
        assert table.num_rows == len(recs)
        with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == columns
        assert rows[1:] == [[csv_text(row.get(c)) for c in columns] for row in flat]
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(recs)
