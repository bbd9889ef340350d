"""``captionkit train projector``: assembling a Llava model from a tiny CLIP vision tower + a tiny Qwen2 LM, stage 1
(projector only) and stage 2 (LoRA + projector, merged), the train/inference prompt identity, saved folders that
chat_vlm loads, and resume."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch
from PIL import Image

from captionkit.captioners.base import load_captioner
from captionkit.captioners.chat_vlm import DEFAULT_CAPTION_PROMPT
from captionkit.errors import ConfigError
from captionkit.models.options import GenerationOptions
from captionkit.training.projector import (
    ProjectorTrainConfig,
    Turn,
    assemble_llava,
    load_llava,
    render_turns,
    save_llava,
    train_projector,
)
from captionkit.training.synth import make_synthetic
from tiny_lm import build_tiny_lm

GREEDY = GenerationOptions(max_new_tokens=4)


def build_clip_vision(folder):
    from transformers import CLIPVisionConfig, CLIPVisionModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    torch.manual_seed(0)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_projector")
    info = make_synthetic(root / "synth", n=24, size=32)
    return {"root": root, "vision": str(build_clip_vision(root / "clip")), "lm": str(build_tiny_lm(root / "lm")),
            "captions": str(info.captions), "vqa": str(info.vqa), "image": str(info.images_dir / "synth-000000.png")
            if (info.images_dir / "synth-000000.png").exists() else str(sorted(info.images_dir.iterdir())[0])}


def _cfg(env, name, **kw) -> ProjectorTrainConfig:
    base = dict(data=env["captions"], output_dir=str(env["root"] / name), vision=env["vision"], lm=env["lm"],
                batch_size=8, lr=5e-3, warmup_ratio=0.0, scheduler="constant", max_length=128, eval_every_epoch=False,
                eval_max_new_tokens=4, progress=False, device="cpu", lora_r=4, lora_alpha=8, lora_dropout=0.0)
    return ProjectorTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def stage1(env):
    cfg = _cfg(env, "stage1", epochs=3, eval_every_epoch=True, eval_metrics=["BLEU", "ROUGE-L", "CIDEr"])
    before, _ = assemble_llava(env["vision"], env["lm"], projector="mlp", seed=cfg.seed)
    return cfg, train_projector(cfg), before


def test_assembled_model_saves_and_loads(env, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    for projector in ("mlp", "linear"):
        model, processor = assemble_llava(env["vision"], env["lm"], projector=projector)
        folder = save_llava(model, processor, tmp_path / projector)
        loaded = AutoModelForImageTextToText.from_pretrained(folder)
        proc = AutoProcessor.from_pretrained(folder)
        assert type(loaded).__name__ == "LlavaForConditionalGeneration"
        assert loaded.config.image_token_id == proc.tokenizer.convert_tokens_to_ids("<image>")
        image = Image.open(env["image"]).convert("RGB")
        text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": "hi"}]}],
                                        add_generation_prompt=True, tokenize=False)
        enc = proc(images=[image], text=[text], return_tensors="pt")
        assert int((enc["input_ids"] == loaded.config.image_token_id).sum()) == 16  # 4x4 patches, CLS dropped
        with torch.no_grad():
            ref = model.eval()(**enc).logits
            assert torch.allclose(loaded.eval()(**enc).logits, ref, atol=1e-5)
        cap = load_captioner(str(folder))
        assert cap.backend == "chat_vlm" and isinstance(cap.caption([image], None, GREEDY)[0], str)


def test_residual_projector_trains_saves_and_loads(env, tmp_path):
    """Linear -> SimpleResBlock (seed 002): trained, saved as captionkit_residual_llava, loaded by the describe
    backend and by plain transformers (trust_remote_code), with the same weights and outputs."""
    from transformers import AutoModelForImageTextToText

    result = train_projector(_cfg(env, "residual", projector="residual", max_steps=2))
    folder = result.final
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "captionkit_residual_llava" and (folder / "residual_llava.py").is_file()
    model, _ = load_llava(str(folder))
    names = {n for n, _ in model.named_parameters() if "multi_modal_projector" in n}
    assert {"model.multi_modal_projector.pre_norm.weight", "model.multi_modal_projector.linear_3.weight"} <= names
    remote = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)
    assert type(remote).__name__ == "ResidualLlavaForConditionalGeneration"
    for (name, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(remote.state_dict().items())):
        assert torch.equal(a, b), name
    image = Image.open(env["image"]).convert("RGB")
    cap = load_captioner(str(folder))
    assert cap.backend == "chat_vlm" and type(cap.model).__name__ == "ResidualLlavaForConditionalGeneration"
    assert isinstance(cap.caption([image], None, GREEDY)[0], str)
    with pytest.raises(ConfigError, match="--projector 'conv'"):
        _cfg(env, "x", projector="conv").validate()


def test_training_prompt_is_the_inference_prompt(env, stage1):
    _, result, _ = stage1
    cap = load_captioner(str(result.final))
    processor = cap.processor
    pieces = render_turns(processor, [Turn(DEFAULT_CAPTION_PROMPT, "a red circle")])
    assert pieces[0] == (cap.prompt_text(DEFAULT_CAPTION_PROMPT), False)
    assert pieces[1][1] and pieces[1][0].startswith("a red circle")
    question = "what colour is the background?"
    pieces = render_turns(processor, [Turn(question, "red"), Turn("how many shapes are there?", "two")])
    assert pieces[0][0] == cap.prompt_text(question)


def test_stage1_trains_only_the_projector(stage1):
    _, result, before = stage1
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    after, _ = load_llava(str(result.final))
    old, new = before.state_dict(), after.state_dict()
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed and all("multi_modal_projector" in k for k in changed)
    assert result.evals and "CIDEr" in result.evals[-1] and "val_loss" in result.evals[-1]
    assert (result.output_dir / "metrics.csv").is_file() and (result.output_dir / "eval.jsonl").is_file()


def test_stage2_lora_merged_and_ask(env, stage1):
    _, result1, _ = stage1
    rows = [json.loads(line) for line in open(env["vqa"])]
    subset = [r for r in rows if r["split"] != "val"][:48] + [r for r in rows if r["split"] == "val"][:8]
    assert len(subset) == 56
    data = env["root"] / "synth" / "vqa_small.jsonl"  # beside vqa.jsonl: image paths stay relative to it
    data.write_text("".join(json.dumps(r) + "\n" for r in subset))
    cfg = _cfg(env, "stage2", data=str(data), stage=2, init=str(result1.final), vision=None, lm=None, epochs=2,
               batch_size=8, lr=5e-3, eval_every_epoch=True)
    result = train_projector(cfg)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert "exact_match" in result.evals[-1]
    folder = result.final
    assert not (folder / "adapter_config.json").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llava"
    base, _ = load_llava(str(result1.final))
    tuned, _ = load_llava(str(folder))
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base.state_dict()[key], tuned.state_dict()[key])  # the LoRA was merged in
    cap = load_captioner(str(folder))
    answer = cap.ask([Image.open(env["image"]).convert("RGB")], "what colour is the background?", GREEDY)
    assert isinstance(answer[0], str)


def test_resume_round_trips(env):
    full = train_projector(_cfg(env, "full", max_steps=4, batch_size=4, save_steps=2, save_total_limit=None))
    part = _cfg(env, "part", max_steps=2, batch_size=4)
    train_projector(part)
    resumed = train_projector(_cfg(env, "part", max_steps=4, batch_size=4, resume=True))
    assert resumed.steps == 4 and [r["step"] for r in resumed.history] == [3, 4]
    assert abs(resumed.history[-1]["loss"] - full.history[-1]["loss"]) < 1e-4
    a = torch.load(full.output_dir / "checkpoint-4" / "trainable.pt")
    b = torch.load(resumed.output_dir / "checkpoint-4" / "trainable.pt")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    with pytest.raises(ConfigError, match="--resume"):
        train_projector(_cfg(env, "part", max_steps=4, batch_size=4))


def test_cli_trains_then_ask_and_describe(env):
    from typer.testing import CliRunner

    from captionkit.cli import app

    runner = CliRunner()
    out = env["root"] / "cli"
    args = ["train", "projector", "--stage", "1", "--data", env["captions"], "--vision", env["vision"], "--lm",
            env["lm"], "--out", str(out), "--max-steps", "2", "--batch-size", "4", "--no-eval", "--device", "cpu",
            "--max-length", "128"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = str(out / "final")
    asked = runner.invoke(app, ["ask", env["image"], "what colour is the background?", "--captioner", folder,
                                "--max-new-tokens", "4"])
    assert asked.exit_code == 0, asked.output
    assert "answer" in asked.output or "{" in asked.output
    described = runner.invoke(app, ["describe", env["image"], "--captioner", folder, "--max-new-tokens", "4"])
    assert described.exit_code == 0, described.output
    refused = runner.invoke(app, [*args[:-2], "--projector", "conv", "--out", str(env["root"] / "cli-r")])
    assert refused.exit_code != 0 and "--projector 'conv'" in str(refused.exception or refused.output)
