"""Shared fixtures: small real media files and datasets made in the test's tmp dir."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from captionkit.media.generate import write_animated_gif, write_image, write_video

# Keep downloads made by tests out of the user's cache, and the tests off the model hub: every model a test
# uses is built by the test, and "the default model cannot be fetched" is what the offline tests expect.
os.environ.setdefault("CAPTIONKIT_CACHE_DIR", str(Path(__file__).parent / ".cache"))
os.environ["HF_HOME"] = str(Path(__file__).parent / ".cache" / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"

CLI = [sys.executable, "-m", "captionkit"]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny test models run faster on one thread: two threads on a 2-core machine mostly wait on each other."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the real ``captionkit`` CLI in a subprocess (no in-process shortcuts)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """One of each media kind, made once per test session."""
    d = tmp_path_factory.mktemp("media")
    write_image(d / "red.jpg", size=(96, 64), seed=1)
    write_image(d / "blue.png", size=(64, 96), seed=2)
    write_animated_gif(d / "loop.gif", n_frames=6)
    write_video(d / "clip.mp4", seconds=1.5, fps=10, size=(96, 64), with_audio=True)
    (d / "broken.jpg").write_bytes((d / "red.jpg").read_bytes()[:300])
    (d / "empty.png").write_bytes(b"")
    return d


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def posts_csv(tmp_path, media_dir) -> Path:
    """An Adobe-style dataset: good photo, GIF, video (snscrape repr), a broken file and a missing one."""
    video = (
        f"[Video(thumbnailUrl=None, variants=[VideoVariant(contentType='video/mp4', url='{media_dir / 'clip.mp4'}', "
        f"bitrate=832000)], duration=1.5, views=10)]"
    )
    rows = [
        {"id": "a", "date": "2026-01-01", "likes": 10, "content": "hello", "username": "brand", "media": str(media_dir / "red.jpg"), "inferred company": "acme"},
        {"id": "b", "date": "2026-01-02", "likes": 20, "content": "gif", "username": "brand", "media": str(media_dir / "loop.gif"), "inferred company": "acme"},
        {"id": "c", "date": "2026-01-03", "likes": 30, "content": "video", "username": "brand", "media": video, "inferred company": "acme"},
        {"id": "d", "date": "2026-01-04", "likes": 0, "content": "broken", "username": "brand", "media": str(media_dir / "broken.jpg"), "inferred company": "acme"},
        {"id": "e", "date": "2026-01-05", "likes": 0, "content": "missing", "username": "brand", "media": str(tmp_path / "nope.jpg"), "inferred company": "acme"},
    ]
    return write_csv(tmp_path / "posts.csv", rows)
