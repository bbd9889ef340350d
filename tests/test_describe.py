"""Describe: the basic captioner, video merging, the offline fallback, `ask`, `models`, and bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageDraw

import captionkit
from captionkit.captioners.base import load_captioner
from captionkit.captioners.basic import BasicCaptioner
from captionkit.captioners.video import dedupe_captions, describe_length, merge_frame_captions
from captionkit.config import RunConfig
from captionkit.errors import ConfigError
from captionkit.models.settings import CaptionSettings
from conftest import run_cli

FAST = ["media", "facts", "caption"]


def test_merge_keeps_time_order_and_drops_near_repeats():
    timed = [(2.0, "A dog running on the beach."), (0.0, "a man surfing a wave"), (1.0, "A man surfing a big wave"),
             (3.0, "a dog running on a beach")]
    assert [t for t, _ in dedupe_captions(timed)] == [0.0, 2.0]
    text = merge_frame_captions(timed, "video", 12.4)
    assert text == "A 12-second video: at 0:00 a man surfing a wave; at 0:02 a dog running on the beach."
    assert merge_frame_captions([(0.0, "A cat.")], "gif", 2.0) == "A 2-second GIF: a cat."
    assert describe_length("video", 125) == "A 2-minute 5-second video"
    assert merge_frame_captions([], "video", None) == "A video."
    # one key word apart is not a repeat
    assert len(dedupe_captions([(0, "mostly red and white"), (1, "mostly blue and white")])) == 2


def test_basic_captioner_names_shape_colours_and_text():
    im = Image.new("RGB", (400, 200), (220, 30, 30))
    ImageDraw.Draw(im).rectangle((200, 0, 400, 200), fill=(20, 40, 200))
    text = BasicCaptioner().describe_image(im)
    assert text.startswith("A landscape image, mostly ") and "red" in text and "blue" in text


def test_basic_captioner_counts_a_real_face():
    data = pytest.importorskip("skimage.data")
    caption = BasicCaptioner().describe_image(Image.fromarray(data.astronaut()))
    assert "1 face" in caption


def test_basic_captioner_refuses_a_prompt():
    with pytest.raises(ConfigError, match="--prompt"):
        load_captioner("basic").caption([Image.new("RGB", (8, 8))], prompt="describe")


def test_default_captioner_falls_back_to_basic_offline_with_a_notice(media_dir, tmp_path, posts_csv):
    cfg = RunConfig(stages=FAST)
    [rec] = captionkit.describe(media_dir / "clip.mp4", cfg)
    assert rec["error"] is None and rec["models"] == {"caption": "basic"}
    assert rec["caption"].startswith("A 2-second video")
    assert rec["details"]["caption"]["fallback_from"] == "florence-2-base"
    summary = captionkit.run(posts_csv, tmp_path / "o", cfg)
    assert summary.done == 3 and any("florence-2-base" in n and "basic" in n for n in summary.notices)
    assert "Notices" in (tmp_path / "o" / "summary.md").read_text()


def test_a_named_model_that_cannot_be_had_is_an_error_not_a_fallback(media_dir):
    cfg = RunConfig(stages=FAST, caption=CaptionSettings(model="Salesforce/blip-image-captioning-base"))
    with pytest.raises(ConfigError, match="not in the local model cache"):
        captionkit.describe(media_dir / "red.jpg", cfg)
    for bad, why in [("no-such-backend", "not a hub id"), ("a/b/c", "not a hub id")]:
        with pytest.raises(ConfigError, match=why):
            load_captioner(bad)


def test_describe_cli_default_pipeline_offline(media_dir):
    res = run_cli("describe", str(media_dir / "red.jpg"), str(media_dir / "clip.mp4"), "--stages", ",".join(FAST))
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert {"input", "kind", "caption", "ocr_text", "transcript", "facts", "models", "error"} <= set(recs[0])
    assert recs[1]["kind"] == "video" and recs[1]["caption"].startswith("A 2-second video")
    assert "florence-2-base" in res.stderr  # the notice


def test_models_list_and_pull_errors():
    res = run_cli("models", "list")
    assert res.returncode == 0 and "florence-2-base" in res.stdout and "whisper-base" in res.stdout
    res = run_cli("models", "pull", "not-a-model")
    assert res.returncode == 2 and "not-a-model" in res.stderr and "blip-base" in res.stderr


def test_models_pull_offline_says_why():
    res = run_cli("models", "pull", "blip-base")
    assert res.returncode == 2 and "not reachable" in res.stderr
