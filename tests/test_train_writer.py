"""``captionkit train writer`` on a tiny random Qwen2 (tests/tiny_lm.py): data, loop, checkpoints, resume,
evaluation, saved adapters/merged models that the local writer loads, and the refusals."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch
from safetensors.torch import load_file

from captionkit.errors import ConfigError, DatasetError
from captionkit.models.options import GenerationOptions
from captionkit.models.settings import WriteSettings
from captionkit.prepare import SYSTEM_PROMPT
from captionkit.training.writer import (
    WriterTrainConfig,
    collate,
    encode_example,
    load_preset,
    read_examples,
    render_prompt,
    train_writer,
)
from captionkit.writers.base import Prompt, load_writer
from tiny_lm import build_tiny_lm

WORDS = ["red", "blue", "dog", "summer", "pasta", "shoe", "beach", "sale"]
INSTRUCTION = "write a short post"
GREEDY = GenerationOptions(max_new_tokens=8)


def _rows() -> list[dict]:
    """16 Alpaca rows whose output is a deterministic function of the input."""
    return [{"id": f"i{i}", "instruction": INSTRUCTION, "input": f"description: a {w} on the table {i // 8}",
             "output": f"new from acme: the {w} {w} #running"} for i, w in enumerate(WORDS * 2)]


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_writer")
    lm = build_tiny_lm(root / "lm")
    data = _write(root / "data.jsonl", _rows())
    _write(root / "data.val.jsonl", _rows()[:4])  # picked up as the validation split
    return {"root": root, "lm": str(lm), "data": data}


def _cfg(env, name: str, **kw) -> WriterTrainConfig:
    base = dict(data=env["data"], model=env["lm"], output_dir=str(env["root"] / name), batch_size=4, lr=1e-2,
                warmup_ratio=0.0, scheduler="constant", max_grad_norm=1.0, max_length=256, lora_r=4, lora_alpha=8,
                lora_dropout=0.0, eval_every_epoch=False, eval_max_new_tokens=8, progress=False, device="cpu")
    return WriterTrainConfig(**{**base, **kw})


def _post(folder) -> str:
    writer = load_writer(str(folder), WriteSettings(writer=str(folder)))
    return writer.write([Prompt(SYSTEM_PROMPT, f"{INSTRUCTION}\n\ndescription: a red on the table 0")], GREEDY)[0][0]


def _mean(xs) -> float:
    return sum(xs) / len(xs)


@pytest.fixture(scope="module")
def lora_run(env):
    """24 LoRA steps (6 epochs of 4 batches), evaluated after every epoch (BLEU + CIDEr, no METEOR)."""
    cfg = _cfg(env, "lora", epochs=6, eval_every_epoch=True, eval_metrics=["BLEU", "CIDEr"], eval_max_items=4)
    return train_writer(cfg)


# ------------------------------------------------------------------------------------------------ config


def test_presets_reproduce_the_seed_recipes_and_refuse_unknown_keys(tmp_path):
    adobe = WriterTrainConfig.from_preset("adobe-lora", lr=1e-4)
    assert (adobe.method, adobe.lora_r, adobe.lora_alpha, adobe.lora_dropout) == ("lora", 8, 16, 0.05)
    assert adobe.target_modules == ["q_proj", "v_proj"] and adobe.batch_size == 8 and adobe.max_grad_norm == 0.3
    assert adobe.warmup_ratio == 0.03 and adobe.epochs == 1 and adobe.lr == 1e-4  # the override wins
    cs = WriterTrainConfig.from_preset("caption-studio-qlora")
    assert (cs.method, cs.quant_type, cs.double_quant, cs.lora_r, cs.lora_alpha) == ("qlora", "nf4", True, 16, 32)
    assert (cs.target_modules, cs.lr, cs.batch_size, cs.grad_accum) == (["query_key_value"], 2e-4, 16, 4)
    assert (cs.scheduler, cs.optimizer, cs.max_steps) == ("cosine", "paged_adamw_8bit", 80)
    assert load_preset("tiny-proof")["max_steps"] == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 1.0e-3\nlearning_rate: 2\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key.*batchsize, learning_rate"):
        WriterTrainConfig.from_preset(str(bad))
    with pytest.raises(ConfigError, match="presets: adobe-lora, caption-studio-qlora, tiny-proof"):
        load_preset("nope")
    with pytest.raises(ConfigError, match=r"unknown key.*epoch"):
        WriterTrainConfig.from_dict({"epoch": 2})


def test_labels_mask_the_prompt_and_padding(env):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(env["lm"])
    examples = read_examples(env["data"])
    assert examples[0].system == SYSTEM_PROMPT and examples[0].user.startswith(INSTRUCTION + "\n\n")
    full = encode_example(tok, examples[0], 256)
    small = encode_example(tok, examples[0].__class__("x", None, "u", "a dog"), 256)
    batch = collate([full, small], tok.pad_token_id)
    prompt = tok(render_prompt(tok, examples[0].system, examples[0].user), add_special_tokens=False)["input_ids"]
    response = tok(examples[0].response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n = len(prompt)
    assert batch["input_ids"][0].tolist() == prompt + response  # the same prompt the local writer generates from
    assert (batch["labels"][0, :n] == -100).all()
    assert batch["labels"][0, n:].tolist() == response  # only the response and EOS carry the loss
    pad = batch["input_ids"].shape[1] - len(small["input_ids"])
    assert pad > 0
    assert (batch["labels"][1, -pad:] == -100).all() and (batch["attention_mask"][1, -pad:] == 0).all()
    assert (batch["input_ids"][1, -pad:] == tok.pad_token_id).all() and batch["attention_mask"][0].all()
    assert batch["labels"][1, -pad - 1] == tok.eos_token_id
    assert encode_example(tok, examples[0], 8) is None  # the prompt alone is too long: skipped and counted


def test_bad_rows_name_the_file_line_and_fields(tmp_path):
    path = tmp_path / "bad.jsonl"
    _write(path, [_rows()[0], {"id": "x", "instruction": "write", "input": "a dog"}])
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: missing or empty field\(s\) output"):
        read_examples(path)
    _write(path, [{"id": "c", "messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DatasetError, match=r"bad.jsonl:1: field messages .*assistant"):
        read_examples(path)
    chat = read_examples(_write(path, [{"id": "c", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}]))
    assert (chat[0].system, chat[0].user, chat[0].response) == ("s", "u", "a")


# ------------------------------------------------------------------------------------------------ lora run


def test_lora_loss_goes_down_and_metrics_are_logged(lora_run):
    losses = [row["loss"] for row in lora_run.history]
    assert lora_run.steps == 24 and len(losses) == 24
    assert _mean(losses[-4:]) < 0.8 * _mean(losses[:4]), losses
    out = lora_run.output_dir
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 25)) and {"epoch", "loss", "lr"} <= set(lines[0])
    assert (out / "metrics.csv").read_text().splitlines()[0] == "step,epoch,loss,lr,grad_norm"
    assert len((out / "metrics.csv").read_text().splitlines()) == 25


def test_every_epoch_is_evaluated_and_the_best_is_kept(lora_run):
    out = lora_run.output_dir
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in evals] == [1, 2, 3, 4, 5, 6]
    assert all({"CIDEr", "BLEU-4", "val_loss"} <= set(e) for e in evals)
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["metric"] == "CIDEr" and best["value"] == max(e["CIDEr"] for e in evals)
    assert (out / "best" / "adapter_config.json").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-24"]  # limit 2
    assert {"model", "training_state.pt"} <= {p.name for p in (out / "checkpoint-24").iterdir()}


def test_the_adapter_loads_in_the_local_writer_and_changes_its_posts(env, lora_run):
    final = lora_run.final
    cfg = json.loads((final / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == env["lm"]
    trained, base = _post(final), _post(env["lm"])
    assert trained != base, (trained, base)


# ------------------------------------------------------------------------------------------------ other runs


def test_full_finetune_loss_goes_down_and_saves_a_full_model(env):
    result = train_writer(_cfg(env, "full", method="full", lr=2e-3, max_steps=16, epochs=4))
    losses = [row["loss"] for row in result.history]
    assert _mean(losses[-4:]) < 0.8 * _mean(losses[:4]), losses
    assert (result.final / "config.json").is_file() and not (result.final / "adapter_config.json").exists()
    assert _post(result.final) != _post(env["lm"])


def test_merge_saves_a_full_model_that_writes_like_the_adapter(env):
    result = train_writer(_cfg(env, "merged", merge=True, max_steps=4))
    assert (result.final / "config.json").is_file() and not (result.final / "adapter_config.json").exists()
    adapter = result.output_dir / "checkpoint-4" / "model"
    assert (adapter / "adapter_config.json").is_file()
    assert _post(result.final) == _post(adapter)


def test_resume_continues_on_the_same_trajectory(env):
    """An uninterrupted 8-step run vs the same run restarted from its mid-epoch checkpoint at step 3."""
    kw = dict(max_steps=8, lora_dropout=0.2, save_steps=3, save_total_limit=10, eval_every_epoch=True,
              eval_metrics=["CIDEr"], eval_max_items=2, scheduler="cosine", warmup_ratio=0.2)
    whole = train_writer(_cfg(env, "whole", **kw))
    resumed_dir = env["root"] / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(whole.output_dir / "checkpoint-3", resumed_dir / "checkpoint-3")
    resumed = train_writer(_cfg(env, "resumed", resume=True, **kw))
    assert resumed.steps == 8
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history[3:]]
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in whole.history[3:]]
    a = load_file(whole.final / "adapter_model.safetensors")
    b = load_file(resumed.final / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        train_writer(_cfg(env, "whole", **kw))


# ------------------------------------------------------------------------------------------------ refusals


def test_qlora_on_cpu_says_what_is_missing(env):
    with pytest.raises(ConfigError, match=r"--method qlora needs a CUDA GPU and bitsandbytes.*use --method lora"):
        train_writer(_cfg(env, "qlora", method="qlora"))


def test_llama_adapter_names_the_supported_model_types(env):
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    if "qwen2" in TRANSFORMERS_MODEL_CONFIG:  # a later peft: it must train
        result = train_writer(_cfg(env, "adapter", method="llama-adapter", max_steps=2))
        assert (result.final / "adapter_config.json").is_file()
        return
    with pytest.raises(ConfigError, match=r"supports the model types gpt2, llama, mistral, not 'qwen2'"):
        train_writer(_cfg(env, "adapter", method="llama-adapter", max_steps=2))
    with pytest.raises(ConfigError, match="cannot be merged"):
        train_writer(_cfg(env, "adapter", method="llama-adapter", merge=True))


def test_llama_adapter_trains_on_a_llama(env):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(env["lm"])
    folder = env["root"] / "llama"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    result = train_writer(_cfg(env, "llama-adapter", model=str(folder), method="llama-adapter", adapter_len=4,
                               max_steps=16, lr=5e-2))
    losses = [row["loss"] for row in result.history]
    assert _mean(losses[-4:]) < _mean(losses[:4]), losses
    assert json.loads((result.final / "adapter_config.json").read_text())["peft_type"] == "ADAPTION_PROMPT"
    assert isinstance(_post(result.final), str)


def test_unknown_target_module_lists_the_models_linear_layers(env):
    with pytest.raises(ConfigError, match=r"no module named query_key_value.*q_proj, k_proj, v_proj, o_proj"):
        train_writer(_cfg(env, "targets", target_modules=["query_key_value"]))


def test_out_of_memory_becomes_advice(env, monkeypatch):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", oom)
    with pytest.raises(ConfigError, match=r"out of memory.*--batch-size.*--grad-accum.*--gradient-checkpointing"):
        train_writer(_cfg(env, "oom", max_steps=1))


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_trains_with_a_preset_and_shows_help(env):
    import typer
    from typer.testing import CliRunner

    from captionkit.cli.train import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    runner = CliRunner()
    shown = runner.invoke(app, ["train", "writer", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.exit_code == 0 and "--preset" in shown.output and "caption-studio-qlora" in shown.output
    out = env["root"] / "cli"
    args = ["train", "writer", "--data", env["data"], "--model", env["lm"], "--out", str(out), "--preset",
            "tiny-proof", "--max-steps", "4", "--epochs", "1", "--device", "cpu", "--eval-max-new-tokens", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "final" / "adapter_config.json").is_file()
    assert json.loads((out / "train_config.json").read_text())["lora_r"] == 4  # from the preset
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 1 and "CIDEr" in evals[0]
    refused = runner.invoke(app, [*args[:-6], "--method", "qlora", "--out", str(env["root"] / "cli-q")])
    assert isinstance(refused.exception, ConfigError) and "--method lora" in str(refused.exception)


def test_default_evaluation_goes_through_captionkit_evaluate(env, monkeypatch):
    import captionkit.eval.evaluate as ev

    calls = []
    real = ev.evaluate

    def spy(predictions, references, **kw):
        calls.append((predictions, references, kw))
        return real(predictions, references, **kw)

    monkeypatch.setattr(ev, "evaluate", spy)
    result = train_writer(_cfg(env, "coco", max_steps=4, eval_every_epoch=True, eval_max_items=2,
                               gradient_checkpointing=True, best_metric="loss"))
    assert len(calls) == 1 and calls[0][2]["metrics"] == ["coco"] and set(calls[0][1]) == {"i0", "i1"}
    assert {"CIDEr", "BLEU-4", "ROUGE-L", "val_loss"} <= set(result.evals[0])
    assert json.loads((result.best / "best.json").read_text())["metric"] == "loss"
