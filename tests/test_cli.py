"""The CLI through a real subprocess: --help everywhere, output shapes, exit codes, error messages."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli, write_csv

COMMANDS = ["inspect", "describe", "run", "clean"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help_with_examples(command):
    res = run_cli(*([command] if command else []), "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout
    if command:
        assert "Examples" in res.stdout


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("captionkit ")


def test_inspect_prints_one_item_per_line(posts_csv):
    res = run_cli("inspect", str(posts_csv), "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    items = [json.loads(line) for line in res.stdout.splitlines()]
    assert [i["id"] for i in items] == ["a", "b", "c", "d", "e"]
    video = items[2]["media"][0]
    assert video["kind"] == "video" and video["url"].endswith("clip.mp4") and video["duration"] == 1.5
    assert {"thumbnail_url", "duration", "kind", "url"} <= set(video)
    assert items[0]["metadata"]["company"] == "acme" and items[0]["reference"] == "hello"


def test_inspect_names_a_missing_column_and_lists_the_others(posts_csv):
    res = run_cli("inspect", str(posts_csv), "--map", "media=image_url")
    assert res.returncode == 2
    assert "image_url" in res.stderr and "inferred company" in res.stderr
    assert "Traceback" not in res.stderr


def test_describe_reports_each_input_and_fails_only_the_bad_one(media_dir):
    res = run_cli("describe", str(media_dir / "red.jpg"), str(media_dir / "broken.jpg"), str(media_dir / "clip.mp4"),
                  "--stages", "media,facts")
    assert res.returncode == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [line["input"].rsplit("/", 1)[-1] for line in lines] == ["red.jpg", "broken.jpg", "clip.mp4"]
    assert lines[0]["error"] is None and lines[0]["facts"]["orientation"] == "landscape"
    assert "broken.jpg" in lines[1]["error"]
    assert lines[2]["facts"]["kind"] == "video" and lines[2]["error"] is None


def test_describe_all_good_exits_zero(media_dir):
    res = run_cli("describe", str(media_dir / "loop.gif"), "--frames", "3", "--format", "json", "--stages", "media,facts")
    assert res.returncode == 0, res.stderr
    [rec] = json.loads(res.stdout)
    assert len(rec["details"]["media"]["frame_times"]) == 3


def test_run_writes_results_and_summary(posts_csv, tmp_path):
    out = tmp_path / "out"
    res = run_cli("run", str(posts_csv), "--out", str(out), "--formats", "csv,parquet", "--no-progress", "--stages", "media,facts")
    assert res.returncode == 0, res.stderr
    assert "3 done, 2 failed" in res.stderr
    assert (out / "results.csv").exists() and (out / "results.parquet").exists()
    again = run_cli("run", str(posts_csv), "--out", str(out), "--formats", "csv,parquet", "--no-progress", "--stages", "media,facts")
    assert "3 already finished" in again.stderr


def test_run_with_yaml_config_and_mapping(tmp_path, media_dir):
    data = write_csv(tmp_path / "d.csv", [{"tweet_id": "t1", "image": str(media_dir / "red.jpg"), "text": "hi"}])
    cfg = tmp_path / "run.yaml"
    cfg.write_text("map:\n  id: tweet_id\n  media: image\n  reference: text\nframes:\n  n: 2\nformats: [csv]\n")
    out = tmp_path / "out"
    res = run_cli("run", str(data), "--out", str(out), "--config", str(cfg), "--no-progress", "--stages", "media,facts")
    assert res.returncode == 0, res.stderr
    [row] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["id"] == "t1" and row["item"]["reference"] == "hi" and row["ok"]
    assert (out / "results.csv").exists()


def test_config_typos_are_named(tmp_path, posts_csv):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("frames:\n  nn: 3\n")
    res = run_cli("run", str(posts_csv), "--out", str(tmp_path / "o"), "--config", str(cfg))
    assert res.returncode == 2 and "nn" in res.stderr and "frames" in res.stderr


def test_unknown_stage_is_named(tmp_path, posts_csv):
    res = run_cli("run", str(posts_csv), "--out", str(tmp_path / "o"), "--stages", "media,captions")
    assert res.returncode == 2 and "captions" in res.stderr and "facts" in res.stderr


def test_clean_reports_and_writes_kept_rows(tmp_path, media_dir):
    rows = [
        {"id": "1", "media": str(media_dir / "red.jpg"), "content": "ok"},
        {"id": "2", "media": str(media_dir / "red.jpg"), "content": "same file"},
        {"id": "3", "media": str(media_dir / "broken.jpg"), "content": "corrupt"},
        {"id": "4", "media": "", "content": "no media"},
        {"id": "5", "media": str(media_dir / "blue.png"), "content": ""},
    ]
    data = write_csv(tmp_path / "d.csv", rows)
    report = tmp_path / "report.json"
    kept = tmp_path / "kept.jsonl"
    res = run_cli("clean", str(data), "--out", str(kept), "--report", str(report), "--no-progress")
    assert res.returncode == 0, res.stderr
    rep = json.loads(report.read_text())
    by_id = {f["id"]: f["check"] for f in rep["flagged"]}
    assert by_id == {"2": "duplicate", "3": "unreadable", "4": "no_media", "5": "no_reference"}
    assert [json.loads(line)["id"] for line in kept.read_text().splitlines()] == ["1"]
    res = run_cli("inspect", str(kept))  # the cleaned file reads back as a dataset
    assert res.returncode == 0 and json.loads(res.stdout)["id"] == "1"


def test_errors_keep_square_brackets():
    """Error text with square brackets (a column named [x], pip install 'captionkit[heif]') prints as written,
    not as rich markup."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "captionkit", "run", "examples/posts.csv", "--out", "unused",
                           "--map", "media=[x]"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "column '[x]' for media not found" in proc.stderr
