"""Fine-tuning data from described items: Alpaca and chat records, a stable split, skipped rows, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from captionkit.errors import ConfigError, DatasetError
from captionkit.io.writers import write_records
from captionkit.prepare import (
    DEFAULT_INSTRUCTIONS,
    build_input,
    is_validation,
    load_records,
    prepare,
    val_path,
)
from captionkit.records import Item, ItemResult, StageError
from conftest import run_cli, write_csv

SEED_INSTRUCTION = "Generate the tweet content given the expected likes and the other information about the post."


def record(item_id, reference="A post.", captions=("a photo",), ocr=None, transcript=None, metadata=None, error=None):
    outputs = {
        "caption": [{"caption": c, "model": "m"} for c in captions] if captions is not None else None,
        "ocr": [{"text": ocr, "lines": [], "engine": "rapidocr"}] if ocr else None,
        "transcribe": [{"text": transcript, "language": "en"}] if transcript else None,
    }
    meta = {"date": "2020-12-12 00:47:00", "likes": 1.0, "username": "BGISD", "company": "independent"}
    if metadata is not None:
        meta = metadata
    return ItemResult(
        id=str(item_id), item=Item(id=str(item_id), metadata=meta, reference=reference), outputs=outputs,
        error=StageError("caption", error) if error else None,
    ).to_dict()


@pytest.fixture
def results_file(tmp_path):
    rows = [
        record("1", "Join us at the board meeting <hyperlink>", captions=("a poster for a meeting",), ocr="BOARD MEETING"),
        record("2", "New video!", captions=("a man talks to the camera", "a logo"), transcript="hello everyone",
               metadata={"likes": 250, "username": "acme"}),
        record("3", None),  # no reference
        record("4", "No picture words", captions=None),  # no description
        record("5", "Failed", error="cannot decode"),
        record("6", "   ", captions=("x",)),  # blank reference
        record("7", "Only caption", metadata={}),
    ]
    out = tmp_path / "run"
    out.mkdir()
    write_records(rows, out / "results.jsonl")
    return out / "results.jsonl"


def rows_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -------------------------------------------------------------------------------------------- records


def test_alpaca_records_follow_the_seed_format(results_file):
    train, val = prepare(load_records(results_file), val_fraction=0.0)
    assert val == []
    by_id = {r["id"]: r for r in train}
    assert list(by_id) == ["1", "2", "7"]
    first = by_id["1"]
    assert set(first) == {"instruction", "input", "output", "id"}
    assert first["instruction"] == SEED_INSTRUCTION == DEFAULT_INSTRUCTIONS["adobe"]
    assert first["input"] == (
        "Caption: a poster for a meeting\nText in media: BOARD MEETING\nExpected Likes: 1\nUsername: BGISD\n"
        "Company Name: independent\nDate Time: 2020-12-12 00:47:00"
    )
    assert first["output"] == "Join us at the board meeting <hyperlink>"
    assert by_id["2"]["input"] == (
        "Caption: Media 1: a man talks to the camera Media 2: a logo\nTranscript: hello everyone\nExpected Likes: 250\nUsername: acme"
    )
    assert by_id["7"]["input"] == "Caption: a photo"  # fields appear only when present


def test_chat_records(results_file):
    train, _ = prepare(load_records(results_file), fmt="chat", val_fraction=0.0, instruction="Write the post.")
    first = train[0]
    assert set(first) == {"id", "messages"} and first["id"] == "1"
    roles = [m["role"] for m in first["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert first["messages"][1]["content"].startswith("Write the post.\n\nCaption: a poster for a meeting\n")
    assert first["messages"][2]["content"] == "Join us at the board meeting <hyperlink>"


def test_skipped_rows_are_counted_by_reason(results_file):
    result = prepare(load_records(results_file))
    assert result.skipped == {"no reference text": 2, "no description": 1, "item failed in the pipeline": 1}
    assert result.total_skipped == 4 and len(result.train) + len(result.val) == 3


def test_item_results_and_dicts_give_the_same_records():
    objects = [ItemResult.from_dict(record(i)) for i in range(5)]
    assert prepare(objects) == prepare([o.to_dict() for o in objects])
    assert build_input(objects[0]).startswith("Caption: a photo\n")


def test_duplicates_and_unreadable_rows_are_skipped():
    result = prepare([record("a"), record("a"), {"_row_error": "line 3 is not JSON"}])
    assert len(result.train) + len(result.val) == 1
    assert result.skipped == {"duplicate id": 1, "unreadable row": 1}


def test_bad_arguments():
    with pytest.raises(ConfigError, match="--format"):
        prepare([], fmt="sharegpt")
    with pytest.raises(ConfigError, match="--val-fraction"):
        prepare([], val_fraction=1.5)


def test_platform_picks_the_default_instruction():
    train, _ = prepare([record("a")], platform="linkedin", val_fraction=0)
    assert "LinkedIn" in train[0]["instruction"]
    assert "mastodon" in prepare([record("a")], platform="mastodon", val_fraction=0).train[0]["instruction"]


# -------------------------------------------------------------------------------------------- split


def test_split_is_stable_across_runs_formats_and_order():
    records = [record(f"tweet-{n}") for n in range(200)]
    train, val = prepare(records, val_fraction=0.1, seed=0)
    val_ids = {r["id"] for r in val}
    assert 8 <= len(val_ids) <= 35  # ~20 expected
    assert len(train) + len(val) == 200
    again = prepare(records, val_fraction=0.1, seed=0)
    assert {r["id"] for r in again.val} == val_ids
    chat = prepare(records, fmt="chat", val_fraction=0.1, seed=0)
    assert {r["id"] for r in chat.val} == val_ids
    backwards = prepare(list(reversed(records)), val_fraction=0.1, seed=0)
    assert {r["id"] for r in backwards.val} == val_ids
    fewer = prepare(records[:50], val_fraction=0.1, seed=0)  # adding/removing items moves no one else
    assert {r["id"] for r in fewer.val} == {i for i in val_ids if int(i.split("-")[1]) < 50}
    other_seed = prepare(records, val_fraction=0.1, seed=1)
    assert {r["id"] for r in other_seed.val} != val_ids
    assert [r["id"] for r in train] == sorted((r["id"] for r in train), key=lambda i: int(i.split("-")[1]))


def test_fraction_is_roughly_respected():
    ids = [str(n) for n in range(2000)]
    share = sum(is_validation(i, 0.25) for i in ids) / len(ids)
    assert 0.21 < share < 0.29
    assert not any(is_validation(i, 0.0) for i in ids) and all(is_validation(i, 1.0) for i in ids)


# -------------------------------------------------------------------------------------------- inputs


def test_load_records_from_a_run_folder_or_its_file(results_file):
    assert [r["id"] for r in load_records(results_file.parent)] == [r["id"] for r in load_records(results_file)]


def test_load_records_refuses_what_is_not_a_run_output(tmp_path):
    with pytest.raises(DatasetError, match=r"no results\.jsonl"):
        load_records(tmp_path)
    other = tmp_path / "posts.jsonl"
    other.write_text('{"id": 1, "content": "hi"}\n')
    with pytest.raises(DatasetError, match="--description-column"):
        load_records(other)
    with pytest.raises(DatasetError, match="--description-column"):
        load_records(write_csv(tmp_path / "p.csv", [{"id": 1, "content": "x"}]))


def test_a_dataset_with_a_description_column(tmp_path):
    path = write_csv(tmp_path / "described.csv", [
        {"id": "1", "content": "Coffee time!", "desc": "a cup of coffee", "likes": "12", "username": "cafe",
         "inferred company": "beans inc", "media": "[Photo(previewUrl='x', fullUrl='y')]"},
        {"id": "2", "content": "No description", "desc": "", "likes": "3", "username": "cafe",
         "inferred company": "", "media": ""},
    ])
    result = prepare(load_records(path, description_column="desc"), val_fraction=0)
    assert result.train == [{
        "instruction": SEED_INSTRUCTION,
        "input": "Caption: a cup of coffee\nExpected Likes: 12\nUsername: cafe\nCompany Name: beans inc",
        "output": "Coffee time!", "id": "1",
    }]
    assert result.skipped == {"no description": 1}
    with pytest.raises(DatasetError, match="desc_typo"):
        load_records(path, description_column="desc_typo")


def test_a_dataset_without_its_text_column_is_named(tmp_path):
    path = write_csv(tmp_path / "d.csv", [{"id": "1", "body": "x", "desc": "y"}])
    with pytest.raises(DatasetError, match="--map reference=COLUMN"):
        load_records(path, description_column="desc")


def test_val_path():
    assert val_path("out/finetune.jsonl").as_posix() == "out/finetune.val.jsonl"
    assert val_path("data.v2.parquet").name == "data.v2.val.parquet"


# -------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> typer.Typer:
    """The prepare command on its own app (works before and after cli/__init__.py imports the module)."""
    from captionkit.cli import app as captionkit_app
    from captionkit.cli import prepare as prepare_cli  # registers the command on captionkit's app

    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)  # keep `prepare` a sub-command
    command = next(c for c in captionkit_app.registered_commands if c.callback is prepare_cli.prepare)
    app.registered_commands.append(command)
    return app


def test_cli_writes_both_files_and_prints_counts(cli, results_file, tmp_path):
    out = tmp_path / "ft" / "finetune.jsonl"
    res = CliRunner().invoke(cli, ["prepare", str(results_file.parent), "--out", str(out), "--val-fraction", "0.5",
                                   "--seed", "3"])
    assert res.exit_code == 0, res.output
    train, val = rows_of(out), rows_of(tmp_path / "ft" / "finetune.val.jsonl")
    assert len(train) + len(val) == 3
    expected = prepare(load_records(results_file), val_fraction=0.5, seed=3)
    assert (train, val) == (expected.train, expected.val)
    assert f"{len(train)} train" in res.stderr and f"{len(val)} val" in res.stderr
    assert "skipped: 4" in res.stderr and "2 no reference text" in res.stderr and "1 no description" in res.stderr


def test_cli_chat_format_and_options(cli, results_file, tmp_path):
    out = tmp_path / "chat.jsonl"
    res = CliRunner().invoke(cli, ["prepare", str(results_file), "-o", str(out), "--format", "chat",
                                   "--val-fraction", "0", "--instruction", "Write it."])
    assert res.exit_code == 0, res.output
    rows = rows_of(out)
    assert [r["id"] for r in rows] == ["1", "2", "7"] and rows_of(tmp_path / "chat.val.jsonl") == []
    assert rows[0]["messages"][1]["content"].startswith("Write it.\n\n")


def test_cli_errors(cli, results_file, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["prepare", str(results_file), "--out", str(tmp_path / "x.csv"), "--format", "chat"])
    assert isinstance(res.exception, ConfigError) and ".jsonl" in str(res.exception)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_records([record("a", None)], empty / "results.jsonl")
    res = runner.invoke(cli, ["prepare", str(empty), "--out", str(tmp_path / "y.jsonl")])
    assert isinstance(res.exception, DatasetError) and "1 no reference text" in str(res.exception)
    assert not (tmp_path / "y.jsonl").exists()


def test_cli_help_has_examples(cli):
    res = CliRunner().invoke(cli, ["prepare", "--help"])
    assert res.exit_code == 0 and "Examples" in res.output and "--description-column" in res.output


def _registered_in_the_real_cli() -> bool:
    code = "import captionkit.cli as c; print(any(x.callback and x.callback.__name__ == 'prepare' " \
           "and x.callback.__module__ == 'captionkit.cli.prepare' for x in c.app.registered_commands))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


@pytest.mark.skipif(not _registered_in_the_real_cli(), reason="cli/__init__.py does not import cli.prepare yet")
def test_real_cli_subprocess(results_file, tmp_path):
    out = tmp_path / "finetune.jsonl"
    res = run_cli("prepare", str(results_file.parent), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.exists() and (tmp_path / "finetune.val.jsonl").exists()
    assert "train" in res.stderr and "skipped: 4" in res.stderr
    bad = run_cli("prepare", str(tmp_path), "--out", str(out))
    assert bad.returncode == 2 and "no results.jsonl" in bad.stderr
