"""Dataset readers: every format, encodings, column mapping, folder datasets and the errors users see."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from captionkit.errors import ConfigError, DatasetError
from captionkit.io.mapping import ColumnMapping
from captionkit.io.readers import READERS, detect_encoding, read_dataset, sniff_delimiter
from captionkit.records import Item, MediaRef

ADOBE_COLUMNS = ["id", "date", "likes", "content", "username", "media", "inferred company"]
PHOTO = (
    "[Photo(previewUrl='https://pbs.twimg.com/media/A?format=jpg&name=small', "
    "fullUrl='https://pbs.twimg.com/media/A?format=jpg&name=large')]"
)
VIDEO = (
    "[Video(thumbnailUrl='https://pbs.twimg.com/t.jpg', variants=[VideoVariant(contentType='video/mp4', "
    "url='https://video.twimg.com/lo.mp4', bitrate=832000), VideoVariant(contentType='video/mp4', "
    "url='https://video.twimg.com/hi.mp4', bitrate=2176000)], duration=12.5, views=99)]"
)
ROWS = [
    [
        "101",
        "2020-12-12 00:47:00",
        "1",
        "Spend your weekend with us <hyperlink>",
        "TheBrand",
        PHOTO,
        "brand co",
    ],
    ["102", "2021-01-01 10:00:00", "25", "New video, watch it", "Other", VIDEO, "other inc"],
]


def write_delimited(
    path: Path, rows: list[list[str]], *, header=ADOBE_COLUMNS, delimiter=",", encoding="utf-8"
) -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def check_adobe_items(items: list[Item]) -> None:
    assert [i.id for i in items] == ["101", "102"]
    first, second = items
    assert first.reference == "Spend your weekend with us <hyperlink>"
    assert first.metadata == {
        "date": "2020-12-12 00:47:00",
        "likes": 1,
        "username": "TheBrand",
        "company": "brand co",
    }
    assert [(m.kind, m.url) for m in first.media] == [
        ("photo", "https://pbs.twimg.com/media/A?format=jpg&name=large")
    ]
    assert (second.media[0].kind, second.media[0].url, second.media[0].views) == (
        "video",
        "https://video.twimg.com/hi.mp4",
        99,
    )


# ---------------------------------------------------------------------------------------------- CSV & co


@pytest.mark.parametrize(
    ("delimiter", "suffix"), [(",", ".csv"), (";", ".csv"), ("\t", ".tsv"), ("\t", ".csv"), ("|", ".txt")]
)
def test_delimited_adobe_dataset(tmp_path, delimiter, suffix):
    path = write_delimited(tmp_path / f"tweets{suffix}", ROWS, delimiter=delimiter)
    dataset = read_dataset(path)
    assert dataset.columns == ADOBE_COLUMNS
    check_adobe_items(list(dataset))
    assert len(dataset) == dataset.count() == 2


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "utf-8-sig", "latin-1"])
def test_legacy_and_bom_encodings_decode(tmp_path, encoding):
    text = "Café “quoted” – naïve €5" if encoding != "latin-1" else "Café naïve Müller Straße"
    rows = [["1", "2020-01-01", "3", text, "Zoë", "a.jpg", "Société Générale"]]
    path = write_delimited(tmp_path / "t.csv", rows, encoding=encoding)
    [item] = list(read_dataset(path))
    assert item.reference == text
    assert item.metadata["username"] == "Zoë"
    assert item.metadata["company"] == "Société Générale"


def test_multiline_quoted_cells(tmp_path):
    rows = [
        ["1", "d", "1", 'line one\nline two, with comma\n"quoted"', "u", PHOTO, "c"],
        ["2", "d", "2", "x", "u", "b.png", "c"],
    ]
    path = write_delimited(tmp_path / "t.csv", rows)
    items = list(read_dataset(path))
    assert items[0].reference == 'line one\nline two, with comma\n"quoted"'
    assert [i.id for i in items] == ["1", "2"]
    assert read_dataset(path).count() == 2


def test_snscrape_cells_with_commas_do_not_fool_the_sniffer(tmp_path):
    rows = [[str(n), VIDEO] for n in range(30)]
    path = write_delimited(tmp_path / "t.csv", rows, header=["id", "media"], delimiter=";")
    assert read_dataset(path).columns == ["id", "media"]


def test_blank_lines_and_empty_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,media,content,likes\n\n1,a.jpg,,\n,,,\n2,b.jpg,hi,5\n", encoding="utf-8")
    items = list(read_dataset(path))
    assert [(i.id, i.reference, i.metadata["likes"]) for i in items] == [("1", None, None), ("2", "hi", 5)]
    assert read_dataset(path).count() == 2


def test_txt_list_of_urls_without_header(tmp_path):
    path = tmp_path / "urls.txt"
    path.write_text("https://x.test/a.jpg\nclips/b.mp4\n", encoding="utf-8")
    items = list(read_dataset(path))
    assert [(i.id, i.media[0].kind) for i in items] == [("row-1", "image"), ("row-2", "video")]
    assert items[1].media[0].url == str(tmp_path / "clips" / "b.mp4")
    assert len(read_dataset(path)) == 2


def test_detect_encoding_and_sniff_delimiter_units():
    assert detect_encoding("é".encode()) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbfid") == "utf-8-sig"
    assert detect_encoding("id".encode("utf-16")) == "utf-16"
    assert sniff_delimiter("a;b;c\n1;2;3\n") == ";"
    assert sniff_delimiter("single\nx\n", preferred="\t") == "\t"


# ---------------------------------------------------------------------------------------------- other formats


def test_xlsx_first_sheet_and_named_sheet(tmp_path):
    workbook = Workbook()
    first = workbook.active
    first.title = "tweets"
    first.append(ADOBE_COLUMNS)
    first.append(
        [
            101,
            dt.datetime(2020, 12, 12, 0, 47),
            1,
            "Spend your weekend with us <hyperlink>",
            "TheBrand",
            PHOTO,
            "brand co",
        ]
    )
    first.append([102, dt.datetime(2021, 1, 1, 10), 25, "New video, watch it", "Other", VIDEO, "other inc"])
    other = workbook.create_sheet("extra")
    other.append(["id", "media"])
    other.append([7.0, "z.gif"])
    path = tmp_path / "data.xlsx"
    workbook.save(path)

    items = list(read_dataset(path))
    assert [i.id for i in items] == ["101", "102"]  # Excel numbers, no ".0"
    assert items[0].metadata["date"] == "2020-12-12T00:47:00"
    assert items[0].metadata["likes"] == 1
    assert items[1].media[0].url == "https://video.twimg.com/hi.mp4"
    assert read_dataset(path).count() == 2

    [gif] = list(read_dataset(path, sheet="extra"))
    assert (gif.id, gif.media[0].kind) == ("7", "gif")
    with pytest.raises(DatasetError, match=r"no sheet 'nope'.*sheets are: tweets, extra"):
        read_dataset(path, sheet="nope")


def test_sheet_on_a_csv_is_a_config_error(tmp_path):
    path = write_delimited(tmp_path / "t.csv", ROWS)
    with pytest.raises(ConfigError, match="--sheet"):
        read_dataset(path, sheet="x")


def test_jsonl_rows(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [dict(zip(ADOBE_COLUMNS, row)) for row in ROWS]
    for line in lines:  # JSON has types: a number is written as one (text "1" would stay text)
        line["likes"] = int(line["likes"])
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    check_adobe_items(list(read_dataset(path)))
    assert read_dataset(path).count() == 2


def test_jsonl_in_captionkit_item_shape_round_trips(tmp_path):
    items = [
        Item(
            id="a",
            metadata={"likes": 3, "nested": {"x": 1}},
            media=[MediaRef(kind="photo", url="https://x.test/a.jpg")],
            reference="hi",
        ),
        Item(id="b", media=[MediaRef(kind="video", url="/abs/v.mp4", duration=2.0)]),
    ]
    path = tmp_path / "items.ndjson"
    path.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in items), encoding="utf-8")
    assert list(read_dataset(path)) == items


def test_jsonl_bad_line_becomes_a_failed_item_naming_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1, "media": "a.jpg"}\n{"id": 2, "media": \n{"id": 3, "media": "b.jpg"}\n', encoding="utf-8")
    first, broken, third = read_dataset(path)
    assert (first.id, third.id) == ("1", "3")
    assert broken.id == "row-2" and broken.media == []
    assert "line 2" in broken.read_error and "not valid JSON" in broken.read_error


def test_json_list_is_streamed_element_by_element(tmp_path, monkeypatch):
    monkeypatch.setattr("captionkit.io.readers._JsonArrayStream.CHUNK", 7)  # force elements across chunks
    rows = [dict(zip(ADOBE_COLUMNS, row)) for row in ROWS]
    rows[0]["likes"] = 123456789  # a number that straddles chunk boundaries
    path = tmp_path / "t.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    items = list(read_dataset(path))
    assert items[0].metadata["likes"] == 123456789
    assert [i.id for i in items] == ["101", "102"]
    assert read_dataset(path).count() == 2


def test_json_that_is_not_a_list(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"id": 1}', encoding="utf-8")
    with pytest.raises(DatasetError, match="JSON list of objects"):
        read_dataset(path)


def test_parquet(tmp_path):
    table = pa.table(
        {
            "id": pa.array([101, 102], pa.int64()),
            "date": pa.array([dt.datetime(2020, 12, 12, 0, 47), dt.datetime(2021, 1, 1)], pa.timestamp("us")),
            "likes": pa.array([1.0, float("nan")]),
            "content": ["a", None],
            "media": pa.array([["https://x.test/a.jpg", "b.mp4"], []], pa.list_(pa.string())),
            "inferred company": ["brand co", "other"],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=1)
    dataset = read_dataset(path)
    assert dataset.count() == 2
    first, second = list(dataset)
    assert (first.id, first.metadata["date"], first.metadata["company"]) == (
        "101",
        "2020-12-12T00:47:00",
        "brand co",
    )
    assert [m.url for m in first.media] == ["https://x.test/a.jpg", str(tmp_path / "b.mp4")]
    assert (second.metadata["likes"], second.reference, second.media) == (None, None, [])
    json.dumps([first.to_dict(), second.to_dict()])  # JSON-friendly throughout


def test_media_folder(tmp_path):
    root = tmp_path / "shots"
    (root / "b" / "deeper").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"x")
    (root / "a.txt").write_text("caption for a\n", encoding="utf-8")
    (root / "b" / "clip.MP4").write_bytes(b"x")
    (root / "b" / "deeper" / "loop.gif").write_bytes(b"x")
    (root / "notes.md").write_text("not media")
    (root / ".hidden.jpg").write_bytes(b"x")
    dataset = read_dataset(root, ColumnMapping(media="ignored_for_folders"))
    items = list(dataset)
    assert [i.id for i in items] == ["a.jpg", "b/clip.MP4", "b/deeper/loop.gif"]
    assert [i.media[0].kind for i in items] == ["image", "video", "gif"]
    assert items[0].media[0].url == str((root / "a.jpg").resolve())
    assert (items[0].reference, items[1].reference) == ("caption for a", None)
    assert items[2].metadata == {"filename": "loop.gif"}
    assert len(dataset) == 3


def test_unknown_suffix_lists_formats(tmp_path):
    path = tmp_path / "data.xml"
    path.write_text("<x/>")
    with pytest.raises(DatasetError, match=r"unknown format '\.xml'.*\.csv.*\.parquet"):
        read_dataset(path)
    with pytest.raises(DatasetError, match="no such dataset"):
        read_dataset(tmp_path / "missing.csv")


def test_every_registered_suffix_reads(tmp_path):
    """Each registry entry reads a minimal file (guards against a format being registered but broken)."""
    makers = {
        ".csv": lambda p: p.write_text("id,media\n1,a.jpg\n"),
        ".tsv": lambda p: p.write_text("id\tmedia\n1\ta.jpg\n"),
        ".txt": lambda p: p.write_text("id|media\n1|a.jpg\n"),
        ".jsonl": lambda p: p.write_text('{"id": 1, "media": "a.jpg"}\n'),
        ".ndjson": lambda p: p.write_text('{"id": 1, "media": "a.jpg"}\n'),
        ".json": lambda p: p.write_text('[{"id": 1, "media": "a.jpg"}]'),
        ".parquet": lambda p: pq.write_table(pa.table({"id": [1], "media": ["a.jpg"]}), p),
        ".pq": lambda p: pq.write_table(pa.table({"id": [1], "media": ["a.jpg"]}), p),
    }

    def xlsx(p):
        wb = Workbook()
        wb.active.append(["id", "media"])
        wb.active.append([1, "a.jpg"])
        wb.save(p)

    makers[".xlsx"] = makers[".xlsm"] = xlsx
    assert set(makers) == set(READERS)
    for suffix, make in makers.items():
        path = tmp_path / f"data{suffix}"
        make(path)
        [item] = list(read_dataset(path))
        assert (item.id, item.media[0].url) == ("1", str(tmp_path / "a.jpg")), suffix


# ------------------------------------------------------------------------------------------------- mapping


def test_mapping_from_yaml(tmp_path):
    path = write_delimited(
        tmp_path / "t.csv",
        [["9", "x.jpg", "hello", "acme", "extra!"]],
        header=["tweet_id", "media_urls", "text", "company", "other"],
    )
    config = tmp_path / "map.yaml"
    config.write_text(
        "id: tweet_id\nmedia: media_urls\nreference: text\nmetadata: {brand: company}\n", encoding="utf-8"
    )
    [item] = list(read_dataset(path, ColumnMapping.from_yaml(config)))
    assert (item.id, item.reference, item.media[0].url) == ("9", "hello", str(tmp_path / "x.jpg"))
    assert item.metadata == {"brand": "acme", "other": "extra!"}


def test_mapping_from_overrides(tmp_path):
    path = write_delimited(
        tmp_path / "t.csv", [["x.jpg", "acme", "1"]], header=["image_path", "company", "id"]
    )
    mapping = ColumnMapping().with_overrides(
        ["media=image_path", "metadata.brand=company", "id=", "metadata.date="]
    )
    [item] = list(read_dataset(path, mapping))
    assert item.id == "row-1"
    assert item.metadata == {"brand": "acme", "id": 1}
    no_others = ColumnMapping(keep_other_columns=False).with_overrides(["media=image_path"])
    assert next(iter(read_dataset(path, no_others))).metadata == {}


@pytest.mark.parametrize("flag", ["media", "mediaa=x", "metadata.=x", "=x", "metadata=x"])
def test_bad_override_syntax_names_the_flag(flag):
    with pytest.raises(ConfigError, match=f"--map {flag!r}"):
        ColumnMapping().with_overrides([flag])


def test_bad_yaml_keys(tmp_path):
    config = tmp_path / "map.yaml"
    config.write_text("medai: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown mapping key.*medai"):
        ColumnMapping.from_yaml(config)


def test_missing_explicit_column_is_named_with_suggestions(tmp_path):
    path = write_delimited(tmp_path / "t.csv", ROWS)
    mapping = ColumnMapping().with_overrides(["metadata.brand=inferred_compnay", "reference=contnt"])
    with pytest.raises(DatasetError) as info:
        read_dataset(path, mapping)
    message = str(info.value)
    assert "'inferred_compnay' for metadata.brand (did you mean 'inferred company'?)" in message
    assert "'contnt' for reference (did you mean 'content'?)" in message
    assert "columns are: id, date, likes, content, username, media, inferred company" in message


def test_missing_default_columns_are_skipped(tmp_path):
    path = write_delimited(tmp_path / "t.csv", [["a.jpg"]], header=["media"])
    [item] = list(read_dataset(path))
    assert (item.id, item.reference, item.metadata) == ("row-1", None, {})


def test_missing_media_column(tmp_path):
    path = write_delimited(tmp_path / "t.csv", [["1", "x"]], header=["id", "image"])
    with pytest.raises(DatasetError) as info:
        read_dataset(path)
    assert (
        str(info.value)
        == f"no media column 'media' in {path}; columns are: id, image; pick one with --map media=COLUMN"
    )


def test_columns_match_case_and_whitespace_insensitively(tmp_path):
    header = [" ID ", "Media", "CONTENT", "Inferred_Company", "likes"]
    path = write_delimited(tmp_path / "t.csv", [["5", "a.jpg", "hi", "acme", "3"]], header=header)
    [item] = list(read_dataset(path))
    assert (item.id, item.reference, item.metadata) == ("5", "hi", {"likes": 3, "company": "acme"})


# ------------------------------------------------------------------------------------------ rows and items


def test_duplicate_ids_name_both_rows_and_stream_until_then(tmp_path):
    rows = [["1", "a.jpg"], ["2", "b.jpg"], ["3", "c.jpg"], ["2", "d.jpg"]]
    path = write_delimited(tmp_path / "t.csv", rows, header=["id", "media"])
    iterator = iter(read_dataset(path))
    assert [next(iterator).id for _ in range(3)] == ["1", "2", "3"]
    with pytest.raises(DatasetError, match=r"duplicate id '2' in .*t\.csv: data rows 2 and 4"):
        next(iterator)


def test_malformed_media_cell_is_recorded_not_fatal(tmp_path):
    rows = [["1", PHOTO[:-5]], ["2", "[Evil(x=__import__('os'))]"], ["3", PHOTO]]
    path = write_delimited(tmp_path / "t.csv", rows, header=["id", "media"])
    items = list(read_dataset(path))
    assert [i.id for i in items] == ["1", "2", "3"]
    assert items[0].media == [] and items[0].metadata["_media_error"].startswith(
        "cannot parse media cell at column"
    )
    assert "unknown media class 'Evil'" in items[1].metadata["_media_error"]
    assert "_media_error" not in items[2].metadata and items[2].media


def test_relative_paths_resolve_against_the_dataset_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        ["1", "img/a.jpg"],
        ["2", "/abs/b.jpg"],
        ["3", "https://x.test/c.jpg"],
        ["4", "../up.png | s3://bucket/k.jpg"],
    ]
    write_delimited(data / "t.csv", rows, header=["id", "media"])
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    urls = [[m.url for m in i.media] for i in read_dataset(Path("data/t.csv"))]
    base = data.resolve()
    assert urls == [
        [str(base / "img/a.jpg")],
        ["/abs/b.jpg"],
        ["https://x.test/c.jpg"],
        [str(base / "../up.png"), "s3://bucket/k.jpg"],
    ]


def test_snscrape_variant_urls_stay_urls(tmp_path):
    path = write_delimited(tmp_path / "t.csv", [["1", VIDEO]], header=["id", "media"])
    [item] = list(read_dataset(path))
    assert all(v.url.startswith("https://") for v in item.media[0].variants)
    assert item.media[0].thumbnail_url == "https://pbs.twimg.com/t.jpg"


def test_dataset_can_be_iterated_twice(tmp_path):
    dataset = read_dataset(write_delimited(tmp_path / "t.csv", ROWS))
    assert [i.id for i in dataset] == [i.id for i in dataset] == ["101", "102"]


def test_json_columns_come_from_the_first_rows_not_just_the_first(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1, "content": "no media here"}\n{"id": 2, "media": "a.jpg", "likes": 3}\n')
    dataset = read_dataset(path)
    assert dataset.columns == ["id", "content", "media", "likes"]
    assert [len(i.media) for i in dataset] == [0, 1]


def test_csv_metadata_numbers_become_numbers_but_codes_stay_text(tmp_path):
    from captionkit.io.readers import read_dataset

    path = tmp_path / "n.csv"
    path.write_text("id,media,likes,ratio,zip,sku\n007,a.jpg,412,0.5,02134,1e5\n", encoding="utf-8")
    [item] = list(read_dataset(path))
    assert item.id == "007"
    assert item.metadata["likes"] == 412 and item.metadata["ratio"] == 0.5
    assert item.metadata["zip"] == "02134" and item.metadata["sku"] == "1e5"
