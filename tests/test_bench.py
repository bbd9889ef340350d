"""``captionkit bench`` on its tiny scale: the cases, the JSON, the report, and the real configurations."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from captionkit.bench import configs, report
from captionkit.bench.pipeline_cases import frames_case
from captionkit.bench.suite import plan_for, run_plan
from captionkit.errors import ConfigError
from conftest import run_cli

FIELDS = {"name", "ours_items_per_s", "baseline_items_per_s", "ratio", "ratio_min", "ratio_max", "identical",
          "agreement", "peak_rss_mb", "new_tokens", "ours_tokens_per_s", "baseline_tokens_per_s"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


def test_tiny_cases_report_fields_and_batched_outputs_equal_the_plain_loop(cache):
    plan = plan_for("tiny", settings=["batched", "int8"], items=2, frames=False)
    results = run_plan(plan, "tiny", root=cache)
    assert [r.name for r in results] == ["blip-base/batched", "blip-base/int8", "qwen2.5-0.5b-instruct/batched",
                                         "qwen2.5-0.5b-instruct/int8"]
    for r in results:
        assert FIELDS <= set(r.to_dict())
        assert r.ours_items_per_s > 0 and r.baseline_items_per_s > 0 and r.ratio_min <= r.ratio <= r.ratio_max
    assert all(r.identical for r in results if r.setting == "batched")
    # saved once: a second plan reuses the folders
    folders = sorted(p.name for p in (cache / "tiny").iterdir())
    run_plan(plan_for("tiny", models=["blip-base"], settings=["batched"], items=1, frames=False), "tiny", root=cache)
    assert sorted(p.name for p in (cache / "tiny").iterdir()) == folders


def test_cli_prints_json_and_writes_docs(cache, tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nintro kept\n", encoding="utf-8")
    proc = run_cli("bench", "--scale", "tiny", "--models", "git-base", "--settings", "batched", "--items", "2",
                   "--json", "--no-frames", "--cache-dir", str(cache), "--write-docs", str(docs))
    assert proc.returncode == 0, proc.stderr
    cases = json.loads(proc.stdout)
    assert [c["name"] for c in cases] == ["git-base/batched"]
    assert FIELDS <= set(cases[0]) and cases[0]["identical"] is True
    text = docs.read_text(encoding="utf-8")
    assert "intro kept" in text and "git-base/batched" in text and "<!-- bench:tiny -->" in text


def test_cli_refuses_unknown_models():
    with pytest.raises(ConfigError, match="--models: unknown nope"):
        plan_for("quick", models=["nope"])


def test_frame_sampling_case_picks_the_same_frames(cache):
    result = frames_case(6.0, rounds=1, root=cache)
    assert result.identical is True and result.ratio > 0 and result.kind == "frames"


def test_run_case_prefetch_gives_the_same_results(cache):
    from captionkit.bench.pipeline_cases import run_case

    captioner = configs.saved_model(configs.spec("blip-base"), "tiny", 4, cache)
    (result,) = run_case(12, captioner=captioner, root=cache)
    assert result.name == "run/local-prefetch" and result.identical is True and result.items == 12


def test_write_section_replaces_its_own_block(tmp_path):
    path = tmp_path / "b.md"
    report.write_section(path, "AAA\n", "quick")
    report.write_section(path, "BBB\n", "full")
    report.write_section(path, "CCC\n", "quick")  # replaced where it stood
    text = path.read_text(encoding="utf-8")
    assert "AAA" not in text and text.index("CCC") < text.index("BBB") and text.count("<!-- bench:quick -->") == 1


@pytest.mark.parametrize("size", [300, 5000])
def test_synthetic_tokenizers_have_exactly_the_asked_vocabulary(size):
    bpe = configs.synthetic_bpe(size, ["<s>", "</s>"], eos_token="</s>")
    assert len(bpe) == size and bpe.decode(bpe("a red shoe")["input_ids"]) == "a red shoe"
    wp = configs.synthetic_wordpiece(size, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    assert len(wp) == size


@pytest.mark.parametrize(("name", "params"), [("qwen2.5-0.5b-instruct", 494e6), ("llama-3.2-1b", 1236e6)])
def test_real_writer_configs_have_the_published_size(name, params):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = configs.spec(name).at("full")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg))
    assert abs(sum(p.numel() for p in model.parameters()) - params) / params < 0.01


def test_compile_is_a_writer_setting_run_only_when_named():
    from captionkit.bench.cases import settings_for

    assert [s.name for s in settings_for("writer", 8, True)] == ["batched", "bf16", "int8"]
    named = settings_for("writer", 8, False, ["batched", "compile"])
    assert [s.name for s in named] == ["batched", "compile"] and named[1].options["compile"] is True
    assert settings_for("captioner", 4, True, ["compile"]) == []
    assert plan_for("quick", settings=["compile"]).settings == ("compile",)
    with pytest.raises(ConfigError, match="known: batched, bf16, int8, compile"):
        plan_for("quick", settings=["fp8"])
