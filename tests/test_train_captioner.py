"""captionkit.training.captioner on a tiny random ViT+GPT-2 and 24 synthetic 32 px images (CPU, one thread)."""

from __future__ import annotations

import json

import pytest
import torch

from captionkit.errors import ConfigError, DatasetError
from captionkit.training.captioner import (
    CaptionerTrainConfig,
    CaptionModel,
    Reward,
    advantages,
    ce_loss,
    read_pairs,
    scst_loss,
    train_captioner,
)
from captionkit.training.synth import make_synthetic
from tiny_captioners import save_vision_encoder_decoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth"), n=24, size=32)


@pytest.fixture(scope="module")
def ved(tmp_path_factory):
    return save_vision_encoder_decoder(tmp_path_factory.mktemp("ved"))


def _cfg(synth, ved, out, **kw):
    base = dict(data=str(synth.captions), model=str(ved), output_dir=str(out), batch_size=8, lr=5e-3,
                scheduler="constant", device="cpu", progress=False, eval_metrics=["BLEU", "CIDEr"],
                eval_max_new_tokens=8, scst_max_new_tokens=8)
    base.update(kw)
    return CaptionerTrainConfig(**base)


def test_ce_loss_goes_down_and_final_loads(synth, ved, tmp_path):
    from PIL import Image

    from captionkit.captioners.base import load_captioner

    result = train_captioner(_cfg(synth, ved, tmp_path / "run", epochs=4))
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    assert result.evals and "CIDEr" in result.evals[-1] and (tmp_path / "run" / "eval.jsonl").exists()
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == len(losses) + 1
    assert result.best is not None and (result.best / "best.json").exists()
    captioner = load_captioner(str(result.final))
    texts = captioner.caption([Image.open(synth.out_dir / "images" / p.name).convert("RGB")
                               for p in sorted((synth.out_dir / "images").glob("*.png"))[:2]])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("freeze,last_n", [("encoder", None), ("decoder", None), ("none", 1), ("encoder", 0)])
def test_freezing_freezes_exactly_the_intended_parameters(ved, freeze, last_n):
    cm = CaptionModel(str(ved), "cpu")
    cm.apply_freeze(freeze, last_n) if (freeze, last_n) != ("encoder", 0) else None
    if (freeze, last_n) == ("encoder", 0):
        with pytest.raises(Exception, match="nothing is left"):
            cm.apply_freeze("encoder", 0)
        return
    for name, p in cm.model.named_parameters():
        in_encoder = name.startswith("encoder.")
        in_last_block = name.startswith("decoder.transformer.h.0.")  # the tiny GPT-2 has one block
        if last_n:
            expected = in_encoder or in_last_block
        else:
            expected = not in_encoder if freeze == "encoder" else in_encoder
        assert p.requires_grad == expected, name


def test_scheduled_sampling_runs(synth, ved):
    from PIL import Image

    cm = CaptionModel(str(ved), "cpu")
    pairs = read_pairs(synth.captions)[:4]
    pv = cm.pixel_values([Image.open(synth.out_dir / p.image).convert("RGB") for p in pairs])
    ids, mask = cm.encode([p.caption for p in pairs], 20)
    loss = ce_loss(cm, pv, ids, mask, ss_ratio=0.5, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in cm.model.parameters())


def test_scst_reward_baseline_mechanics(synth, ved):
    """Not a convergence test: the greedy caption is the baseline, rewards are CIDEr-D against the references,
    and the loss pushes up samples that beat the baseline (negative advantage -> positive loss contribution)."""
    from PIL import Image

    pairs = read_pairs(synth.captions)
    reward = Reward("CIDEr", [p.references for p in pairs])
    good = reward([pairs[0].references[0]], [pairs[0].references])
    bad = reward(["zzz qqq"], [pairs[0].references])
    assert good[0] > bad[0] == 0.0
    cm = CaptionModel(str(ved), "cpu")
    pv = cm.pixel_values([Image.open(synth.out_dir / p.image).convert("RGB") for p in pairs[:2]])
    torch.manual_seed(0)
    loss, stats = scst_loss(cm, pv, [p.references for p in pairs[:2]], reward, samples=3, top_p=0.9,
                            max_new_tokens=6)
    loss.backward()
    assert torch.isfinite(loss) and {"reward_greedy", "reward_sample"} <= set(stats)
    loss_mean, stats_mean = scst_loss(cm, pv, [p.references for p in pairs[:2]], reward, samples=3, top_p=0.9,
                                      max_new_tokens=6, baseline="mean")
    assert torch.isfinite(loss_mean) and "reward_greedy" not in stats_mean


def test_scst_advantages():
    import numpy as np

    r_sample = np.array([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])  # two images, three samples each
    assert advantages(r_sample, np.array([2.0, 4.0]), 3).tolist() == [-1.0, 0.0, 1.0, 6.0, 6.0, 6.0]
    # mean of the other samples: 1 - 2.5, 2 - 2, 3 - 1.5; identical samples have no advantage
    assert advantages(r_sample, None, 3).tolist() == [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]


def test_scst_training_run(synth, ved, tmp_path):
    result = train_captioner(_cfg(synth, ved, tmp_path / "scst", max_steps=2, scst=True, scst_samples=2,
                                  scst_weight_start=0.5, scst_weight_end=1.0, eval_every_epoch=False,
                                  augment=True))
    assert result.steps == 2 and "reward_greedy" in result.history[0] and "ce_loss" in result.history[0]
    assert result.history[-1]["scst_weight"] == 1.0


def test_resume_continues_the_same_trajectory(synth, ved, tmp_path):
    from safetensors.torch import load_file

    straight = train_captioner(_cfg(synth, ved, tmp_path / "a", epochs=2, eval_every_epoch=False,
                                    scheduled_sampling=0.3, augment=True))
    train_captioner(_cfg(synth, ved, tmp_path / "b", epochs=1, eval_every_epoch=False, scheduled_sampling=0.3,
                         augment=True))
    resumed = train_captioner(_cfg(synth, ved, tmp_path / "b", epochs=2, eval_every_epoch=False,
                                   scheduled_sampling=0.3, augment=True, resume=True))
    assert resumed.steps == straight.steps
    a, b = load_file(straight.final / "model.safetensors"), load_file(resumed.final / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_bad_images_are_skipped_and_counted(synth, ved, tmp_path):
    rows = [json.loads(line) for line in synth.captions.read_text().splitlines()]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows[0]["image"] = str(tmp_path / "broken.png")
    rows[1]["image"] = str(tmp_path / "missing.png")
    data = tmp_path / "captions.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = train_captioner(_cfg(synth, ved, tmp_path / "run", data=str(data), images_dir=str(synth.out_dir),
                                  max_steps=1, eval_every_epoch=False))
    assert result.skipped_images == 2 and result.steps == 1


def test_missing_column_is_a_dataset_error(tmp_path):
    data = tmp_path / "c.csv"
    data.write_text("file,label\na.png,cat\n")
    with pytest.raises(DatasetError, match=r"caption \(or text\)"):
        read_pairs(data)


def test_coco_captions_file(synth):
    pairs = read_pairs(synth.coco)
    assert len(pairs) == 24 and all(p.references and p.caption == p.references[0] for p in pairs)


def test_cli_train_captioner(synth, ved, tmp_path):
    import typer
    from typer.testing import CliRunner

    from captionkit.cli.train import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["train", "captioner", "--data", str(synth.captions), "--model", str(ved),
                                      "--out", str(tmp_path / "cli"), "--max-steps", "1", "--no-eval",
                                      "--freeze", "encoder", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "final" / "config.json").exists()


@pytest.mark.parametrize("builder", ["save_blip", "save_git"])
def test_blip_and_git_train_one_step_with_scst_and_load(synth, tmp_path, builder):
    import tiny_captioners
    from captionkit.captioners.base import load_captioner

    folder = getattr(tiny_captioners, builder)(tmp_path / "m")
    result = train_captioner(_cfg(synth, folder, tmp_path / "run", max_steps=1, scst=True, scst_samples=2,
                                  scst_weight_start=0.5, scheduled_sampling=0.3, freeze="encoder",
                                  eval_every_epoch=False))
    assert result.steps == 1 and "reward_sample" in result.history[0]
    from PIL import Image

    image = Image.open(next((synth.out_dir / "images").glob("*.png"))).convert("RGB")
    assert len(load_captioner(str(result.final)).caption([image])) == 1


def test_reference_targets_are_drawn_per_epoch_and_reproducible():
    from captionkit.training.captioner import Pair, target

    pair = Pair("a", "a.png", "one", ["one", "two", "three", "four"])
    refs = CaptionerTrainConfig(targets="references", seed=3)
    drawn = [target(pair, 7, epoch, refs) for epoch in range(12)]
    assert set(drawn) <= set(pair.references) and len(set(drawn)) > 1
    assert drawn == [target(pair, 7, epoch, refs) for epoch in range(12)]  # same seed, same draws (resume)
    assert target(pair, 7, 0, CaptionerTrainConfig()) == "one"
    with pytest.raises(ConfigError, match="--targets"):
        CaptionerTrainConfig(data="d", model="m", output_dir="o", targets="all").validate()
