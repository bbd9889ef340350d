"""Describe end to end with real (tiny, random) models: CLI flags reach the backend, videos go to a chat
VLM as one multi-image prompt, `ask` answers, and models load once per process."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import captionkit
from captionkit.captioners.base import load_captioner
from captionkit.config import RunConfig
from captionkit.media.loader import load_media
from captionkit.models.options import GenerationOptions
from captionkit.models.settings import CaptionSettings
from conftest import run_cli
from tiny_captioners import save_blip
from tiny_vlms import build_qwen2_vl

STAGES = ["media", "facts", "caption"]


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    return save_blip(tmp_path_factory.mktemp("blip") / "m")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return build_qwen2_vl(tmp_path_factory.mktemp("qwen") / "m")


def test_cli_decoding_flags_reach_the_model(blip, media_dir):
    args = ["describe", str(media_dir / "red.jpg"), "--stages", ",".join(STAGES), "--captioner", str(blip),
            "--max-new-tokens", "4", "--num-beams", "2", "--prompt", "a photo of"]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert rec["models"] == {"caption": str(blip)}
    image = load_media(media_dir / "red.jpg").frames[0].image
    expected = load_captioner(str(blip)).caption([image], "a photo of", GenerationOptions(max_new_tokens=4, num_beams=2))
    assert rec["caption"] == expected[0]


def test_video_frames_go_to_a_chat_vlm_in_one_prompt(qwen, media_dir):
    cfg = captionkit.RunConfig.from_dict({"stages": STAGES, "frames": {"n": 3},
                                          "caption": {"model": str(qwen), "max_new_tokens": 5}})
    [rec] = captionkit.describe(media_dir / "clip.mp4", cfg)
    assert rec["error"] is None
    detail = rec["details"]["caption"]
    assert detail["frames_in_prompt"] == 3 and detail["backend"] == "chat_vlm"
    assert rec["caption"].startswith("A 2-second video: ")
    frames = [f.image for f in load_media(media_dir / "clip.mp4", cfg.frames).frames]
    body = load_captioner(str(qwen)).caption_frames(frames, None, cfg.caption.generation)
    assert body.rstrip(".!? ").lower()[:10] in rec["caption"].lower()


def test_ask_answers_about_an_image_and_a_video(qwen, media_dir):
    res = run_cli("ask", str(media_dir / "red.jpg"), "What colour is it?", "--captioner", str(qwen),
                  "--max-new-tokens", "4")
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    image = load_media(media_dir / "red.jpg").frames[0].image
    assert rec["answer"] == load_captioner(str(qwen)).ask([image], "What colour is it?", GenerationOptions(max_new_tokens=4))[0]
    cfg = RunConfig.from_dict({"frames": {"n": 2}, "caption": {"model": str(qwen), "max_new_tokens": 4}})
    video = captionkit.api.ask(media_dir / "clip.mp4", "What happens?", cfg)
    assert video["error"] is None and isinstance(video["answer"], str)
    bad = captionkit.api.ask(media_dir / "broken.jpg", "What?", cfg)
    assert "broken.jpg" in bad["error"]


def test_ask_with_a_model_that_cannot_answer_questions_says_so(blip, media_dir):
    res = run_cli("ask", str(media_dir / "red.jpg"), "What is it?", "--captioner", str(blip))
    assert res.returncode == 2 and "cannot answer questions" in res.stderr


def test_models_load_once_per_process(blip):
    cfg = RunConfig(stages=STAGES, caption=CaptionSettings(model=str(blip), max_new_tokens=3))
    first = load_captioner(str(blip), cfg.caption.model_options)
    again = load_captioner(str(blip), cfg.caption.model_options)
    assert first is again
    bigger = load_captioner(str(blip), CaptionSettings(model=str(blip), batch_size=8).model_options)
    assert bigger.model is first.model and bigger.options.batch_size == 8
