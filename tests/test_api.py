"""The Python API mirrors the CLI."""

from __future__ import annotations

import captionkit
from captionkit.config import RunConfig


def test_top_level_api(media_dir, posts_csv, tmp_path):
    base = RunConfig(stages=["media", "facts"])
    [good, bad] = captionkit.describe([media_dir / "clip.mp4", media_dir / "empty.png"], base)
    assert good["error"] is None and good["facts"]["has_audio"] is True
    assert "empty.png" in bad["error"] and bad["error_stage"] == "media"
    assert len(captionkit.read_dataset(posts_csv)) == 5
    summary = captionkit.run(posts_csv, out=tmp_path / "o", config=captionkit.RunConfig(stages=["media", "facts"], formats=["parquet"]))
    assert (summary.done, summary.failed) == (3, 2)
    assert captionkit.RunConfig is RunConfig


def test_config_round_trips_through_yaml_keys(tmp_path):
    cfg = RunConfig.from_dict({"frames": {"mode": "scene", "threshold": 0.5}, "map": {"media": "img"},
                               "formats": "csv,parquet", "max_attempts": 2})
    again = RunConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "mapping"} | {"map": cfg.to_dict()["mapping"]})
    assert again.fingerprint() == cfg.fingerprint()
    assert cfg.formats == ["csv", "parquet"] and cfg.frames.mode == "scene"
