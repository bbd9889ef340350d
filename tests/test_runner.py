"""The batch runner: per-item errors, resume, retries, exactly-once output, including after kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from captionkit import api
from captionkit.config import RunConfig
from captionkit.errors import ConfigError
from captionkit.media.fetch import FetchPolicy
from captionkit.pipeline.runner import group_failures, normalise_reason
from conftest import CLI, write_csv

# These tests are about the runner: the model-free stages keep them fast and focused.
BASE = ["media", "facts"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_run_records_each_item_and_its_error(posts_csv, tmp_path):
    out = tmp_path / "out"
    summary = api.run(posts_csv, out, RunConfig(stages=BASE, formats=["csv", "parquet", "xlsx"]))
    rows = {r["id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert list(rows) == ["a", "b", "c", "d", "e"]  # dataset order
    assert summary.done == 3 and summary.failed == 2
    assert rows["a"]["outputs"]["facts"][0]["width"] == 96
    assert rows["b"]["outputs"]["facts"][0]["kind"] == "gif"
    video = rows["c"]["outputs"]["facts"][0]
    assert video["kind"] == "video" and video["has_audio"] is True and video["duration"] == pytest.approx(1.5, abs=0.3)
    assert rows["c"]["item"]["metadata"]["company"] == "acme"
    assert rows["d"]["error"]["stage"] == "media" and "broken.jpg" in rows["d"]["error"]["reason"]
    assert rows["e"]["error"]["stage"] == "media" and "not found" in rows["e"]["error"]["reason"]
    assert set(rows["a"]["timings"]) == {"media", "facts"}
    for fmt in ("csv", "parquet", "xlsx"):
        assert (out / f"results.{fmt}").stat().st_size > 0
    assert "2 failed" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["done"] == 3


def test_rerun_skips_done_and_retries_failed_until_the_limit(posts_csv, tmp_path, media_dir):
    out = tmp_path / "out"
    cfg = RunConfig(stages=BASE, max_attempts=3)
    first = api.run(posts_csv, out, cfg)
    assert (first.processed, first.skipped) == (5, 0)
    second = api.run(posts_csv, out, cfg)
    assert (second.processed, second.skipped) == (2, 3)  # only the failed two again
    # The missing file appears: the third attempt succeeds.
    (tmp_path / "nope.jpg").write_bytes((media_dir / "red.jpg").read_bytes())
    third = api.run(posts_csv, out, cfg)
    assert third.processed == 2 and third.done == 4
    rows = {r["id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert rows["e"]["error"] is None and rows["e"]["attempts"] == 3
    assert rows["d"]["attempts"] == 3
    fourth = api.run(posts_csv, out, cfg)  # d has used its 3 attempts: final
    assert fourth.processed == 0 and fourth.skipped == 5
    assert len(read_jsonl(out / "results.jsonl")) == 5


def test_a_half_written_line_is_repaired_on_resume(posts_csv, tmp_path):
    out = tmp_path / "out"
    api.run(posts_csv, out, RunConfig(stages=BASE, max_attempts=1))
    with (out / "results.jsonl").open("a") as f:
        f.write('{"id": "a", "ok": tr')  # what a kill in the middle of a write leaves
    api.run(posts_csv, out, RunConfig(stages=BASE, max_attempts=1))
    ids = [r["id"] for r in read_jsonl(out / "results.jsonl")]
    assert ids == ["a", "b", "c", "d", "e"]


def test_resuming_with_other_settings_is_refused(posts_csv, tmp_path):
    out = tmp_path / "out"
    api.run(posts_csv, out, RunConfig(stages=BASE))
    other = RunConfig.from_dict({"frames": {"n": 3}, "stages": BASE})
    with pytest.raises(ConfigError, match="--restart"):
        api.run(posts_csv, out, other)
    summary = api.run(posts_csv, out, other, restart=True)
    assert summary.processed == 5


def test_failures_group_by_reason_pattern():
    results = [
        {"id": str(i), "error": {"stage": "media", "reason": f"file not found: /data/x{i}.jpg", "type": "MediaError"}}
        for i in range(5)
    ] + [{"id": "z", "error": {"stage": "media", "reason": "HTTP 404 Not Found: https://a.b/c.jpg", "type": "FetchError"}}]
    groups = group_failures(results)
    assert [g["count"] for g in groups] == [5, 1]
    assert groups[0]["examples"] == ["0", "1", "2"]
    assert normalise_reason("file not found: /a/b.jpg") == "file not found: <path>"


def test_kill_9_mid_run_then_resume_gives_each_item_exactly_once(tmp_path, media_dir):
    """Kill a real `captionkit run` process with SIGKILL while it works, rerun it, count the output."""
    n = 1500
    rows = [{"id": f"i{k:05d}", "media": str(media_dir / ("red.jpg" if k % 2 else "blue.png")), "content": "x"} for k in range(n)]
    data = write_csv(tmp_path / "many.csv", rows)
    out = tmp_path / "out"
    args = [*CLI, "run", str(data), "--out", str(out), "--no-progress", "--stages", "media,facts"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = out / "state.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as con:
                    done = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 100:
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_jsonl_lenient(out / "results.jsonl")
    assert 0 < len(partial) < n
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    final = read_jsonl(out / "results.jsonl")
    ids = [r["id"] for r in final]
    assert len(ids) == n and len(set(ids)) == n
    assert ids == sorted(ids)  # dataset order
    assert all(r["ok"] for r in final)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] >= 100 and summary["processed"] + summary["skipped"] == n


def read_jsonl_lenient(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by the kill
    return out


def test_a_broken_jsonl_line_or_media_cell_fails_that_row_only(tmp_path, media_dir):
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"id": "ok", "media": str(media_dir / "red.jpg")}) + "\n"
        + '{"id": "cut", "media": "x.jpg"\n'
        + json.dumps({"id": "bad-cell", "media": "[Photo(fullUrl='a.jpg'"}) + "\n"
        + json.dumps({"id": "ok2", "media": str(media_dir / "blue.png")}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    summary = api.run(path, out, RunConfig(stages=BASE))
    rows = {r["id"]: r for r in read_jsonl(out / "results.jsonl")}
    assert summary.done == 2 and summary.failed == 2
    assert list(rows) == ["ok", "row-2", "bad-cell", "ok2"]
    assert rows["row-2"]["error"]["stage"] == "read" and "line 2" in rows["row-2"]["error"]["reason"]
    assert rows["bad-cell"]["error"]["stage"] == "read" and "media column" in rows["bad-cell"]["error"]["reason"]


@pytest.fixture
def media_server(media_dir):
    """A real HTTP server on 127.0.0.1 serving the test media (404 for anything else)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(media_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_rows_download_once_and_a_404_fails_only_its_row(tmp_path, media_server, monkeypatch):
    monkeypatch.setenv("CAPTIONKIT_CACHE_DIR", str(tmp_path / "cache"))
    photo = f"[Photo(previewUrl='{media_server}/red.jpg', fullUrl='{media_server}/red.jpg')]"
    video = (f"[Video(thumbnailUrl=None, variants=[VideoVariant(contentType='video/mp4', "
             f"url='{media_server}/clip.mp4', bitrate=1)], duration=1.5)]")
    rows = [{"id": "p", "media": photo}, {"id": "v", "media": video}, {"id": "gone", "media": f"{media_server}/nope.jpg"}]
    data = write_csv(tmp_path / "urls.csv", rows)
    summary = api.run(data, tmp_path / "out", RunConfig(stages=BASE, fetch=FetchPolicy(retries=0)))
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "results.jsonl")}
    assert (summary.done, summary.failed) == (2, 1)
    assert out["v"]["outputs"]["facts"][0]["has_audio"] is True
    assert "HTTP 404" in out["gone"]["error"]["reason"] and "nope.jpg" in out["gone"]["error"]["reason"]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2  # both downloads cached by URL
