"""Fast paths (--dtype fast, --quantize int8, --attn, --compile) and the local engine's prefetch.

Promises checked here: --attn sdpa and eager give equal greedy outputs; batched equals one at a time with every
backend; the static KV cache of --compile gives equal outputs (compile itself is replaced by the identity here, a
real compile takes minutes on CPU); int8 and bfloat16 stay within the documented tolerance of float32 (their
logits move by a small fraction of the logits' spread; they do not promise equal tokens).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np
import torch
from PIL import Image

from captionkit.captioners.base import load_captioner
from captionkit.errors import ConfigError
from captionkit.models import hf
from captionkit.models.options import GenerationOptions, ModelOptions
from captionkit.pipeline.core import Pipeline
from captionkit.pipeline.runner import LocalEngine, Pending
from captionkit.records import Item
from captionkit.writers.base import Prompt
from captionkit.writers.local import LocalWriter
from tiny_captioners import save_blip, save_git, save_vision_encoder_decoder
from tiny_lm import build_tiny_lm

PROMPTS = [
    Prompt("You are a social media writer.", "Write a post: a red sneaker on a wooden table."),
    Prompt(None, "dog on a beach"),
    Prompt("Keep it short.", "Description: a dog running on a sandy beach at sunset with waves."),
    Prompt("sys", "new from acme"),
]
GREEDY = GenerationOptions(max_new_tokens=8)


@dataclasses.dataclass
class _Settings:
    model_options: ModelOptions
    batch_size: int
    adapter: str | None = None


def _writer(folder, batch_size: int = 4, **options) -> LocalWriter:
    return LocalWriter(str(folder), _Settings(ModelOptions(device="cpu", batch_size=batch_size, **options), batch_size))


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("fast") / "lm")


# ------------------------------------------------------------------------------------------- options


def test_options_refuse_bad_fast_path_values():
    with pytest.raises(ConfigError, match="--quantize must be one of none, int8"):
        ModelOptions(quantize="int4")
    with pytest.raises(ConfigError, match="--attn must be one of sdpa, eager"):
        ModelOptions(attn="flash")
    with pytest.raises(ConfigError, match="--quantize int8 works on float32 weights"):
        ModelOptions(quantize="int8", dtype="bfloat16")
    assert ModelOptions(quantize="int8").cache_key() != ModelOptions().cache_key()


def test_dtype_fast_picks_bf16_only_on_cpus_with_bf16_units(monkeypatch):
    hf.cpu_flags.cache_clear()
    monkeypatch.setattr(hf, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert hf.resolve_dtype(ModelOptions(dtype="fast"), "cpu") == torch.bfloat16
    assert hf.resolve_dtype(ModelOptions(dtype="auto"), "cpu") == torch.float32  # auto keeps outputs exact
    assert hf.resolve_dtype(ModelOptions(dtype="fast", quantize="none"), "cpu") == torch.bfloat16
    monkeypatch.setattr(hf, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert hf.resolve_dtype(ModelOptions(dtype="fast"), "cpu") == torch.float32  # bf16 would be slower here
    assert hf.resolve_dtype(ModelOptions(dtype="bfloat16"), "cpu") == torch.bfloat16  # asked for: given


def test_int8_is_refused_on_gpu(monkeypatch, lm):
    monkeypatch.setattr(hf, "resolve_device", lambda options: "cuda")
    with pytest.raises(ConfigError, match="--quantize int8: dynamic int8 quantisation runs on CPU only"):
        hf.load_model(str(lm), "AutoModelForCausalLM", ModelOptions(quantize="int8"))


# ------------------------------------------------------------------------------------------- equality promises


def test_sdpa_and_eager_attention_write_the_same(lm):
    sdpa = _writer(lm, attn="sdpa")
    eager = _writer(lm, attn="eager")
    assert sdpa.model.config._attn_implementation == "sdpa"
    assert eager.model.config._attn_implementation == "eager"
    assert sdpa.write(PROMPTS, GREEDY) == eager.write(PROMPTS, GREEDY)


def test_writer_batched_equals_one_at_a_time(lm):
    assert _writer(lm, batch_size=4).write(PROMPTS, GREEDY) == _writer(lm, batch_size=1).write(PROMPTS, GREEDY)


def test_writer_batches_prompts_of_similar_length_and_keeps_their_order(lm):
    """More prompts than a batch: greedy decoding groups them by length (less padding); outputs, in the given
    order, equal one-at-a-time outputs."""
    writer = _writer(lm, batch_size=2)
    batches: list[list[int]] = []
    encode = writer._encode

    def spy(texts, **kw):
        out = encode(texts, **kw)
        if kw.get("padding"):
            batches.append([len(encode([t])["input_ids"][0]) for t in texts])
        return out

    writer._encode = spy
    prompts = PROMPTS * 2
    got = writer.write(prompts, GREEDY)
    assert got == _writer(lm, batch_size=1).write(prompts, GREEDY)
    flat = [length for batch in batches for length in batch]
    assert flat == sorted(flat) and len(batches) == 4


@pytest.mark.parametrize("save", [save_blip, save_git, save_vision_encoder_decoder], ids=["blip", "git", "vit-gpt2"])
def test_captioners_batched_equal_one_at_a_time_with_sdpa(tmp_path, save):
    folder = str(save(tmp_path / "m"))
    images = _images()
    one = load_captioner(folder, ModelOptions(device="cpu", batch_size=1, attn="eager")).caption(images, gen=GREEDY)
    batched = load_captioner(folder, ModelOptions(device="cpu", batch_size=3)).caption(images, gen=GREEDY)
    assert batched == one


def test_florence2_batch_encodes_images_one_at_a_time_with_the_same_output(tmp_path):
    """On CPU a Florence-2 batch runs the vision tower per image and the text side batched: same captions as one
    image per call and as transformers' own batched generate."""
    from tiny_vlms import build_florence2

    folder = str(build_florence2(tmp_path / "florence"))
    images = _images()
    one = load_captioner(folder, ModelOptions(device="cpu", batch_size=1)).caption(images, gen=GREEDY)
    batched_captioner = load_captioner(folder, ModelOptions(device="cpu", batch_size=3))
    assert batched_captioner.caption(images, gen=GREEDY) == one
    inputs = batched_captioner.processor(images=images, text=["<MORE_DETAILED_CAPTION>"] * 3, return_tensors="pt")
    with torch.inference_mode():
        stock = batched_captioner.model.generate(**inputs, **GREEDY.generate_kwargs())
        ours = batched_captioner._generate_vision_per_image(inputs, GREEDY)
    assert torch.equal(stock, ours)


def test_static_cache_of_compile_writes_the_same(monkeypatch, lm):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # a real compile takes minutes on CPU
    compiled = _writer(lm, batch_size=1, compile=True)
    assert compiled.model.generation_config.cache_implementation == "static"
    assert compiled.write(PROMPTS[:2], GREEDY) == _writer(lm, batch_size=1).write(PROMPTS[:2], GREEDY)


# ------------------------------------------------------------------------------------------- tolerances


def _logits(writer: LocalWriter) -> torch.Tensor:
    inputs = writer.tokenizer([writer.render(p) for p in PROMPTS[:1]], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        return writer.model(**inputs).logits.float()


def test_int8_and_bf16_stay_close_to_float32(lm):
    """Documented tolerance: the largest logit change is under 10% of the float32 logits' spread (max - min)."""
    exact = _logits(_writer(lm))
    spread = float(exact.max() - exact.min())
    int8 = _writer(lm, quantize="int8")
    assert "DynamicQuantizedLinear" in repr(int8.model)
    for other in (int8, _writer(lm, dtype="bfloat16")):
        assert float((_logits(other) - exact).abs().max()) < 0.1 * spread
        assert len(other.write(PROMPTS[:2], GREEDY)) == 2


# ------------------------------------------------------------------------------------------- malloc thresholds

FAULTS = """
import resource, sys, torch
from captionkit.models.allocator import keep_freed_memory
print(keep_freed_memory())
x = torch.ones(16_000_000)  # 64 MB: above glibc's largest dynamic mmap threshold (32 MiB)
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        y = x * 2  # a new 64 MB tensor, freed at the next assignment
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(), faults()  # the heap settles over the first few (glibc's own doing, the same with GLIBC_TUNABLES)
print(min(faults() for _ in range(3)), float((x * 2).sum()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.parametrize("env", [{}, {"CAPTIONKIT_MALLOC": "system"}, {"LD_PRELOAD": "/x/libjemalloc.so.2"}])
def test_keeping_freed_memory_removes_page_faults_and_can_be_turned_off(env):
    """Each new 64 MB tensor is fresh mmap'd memory (15,625 page faults) by glibc's defaults; with the thresholds
    raised the same computation reuses the heap once it has settled: no faults, same result."""
    run_env = {k: v for k, v in os.environ.items() if k not in ("CAPTIONKIT_MALLOC", "LD_PRELOAD", "GLIBC_TUNABLES")}
    proc = subprocess.run([sys.executable, "-c", FAULTS], env={**run_env, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result, numbers = proc.stdout.splitlines()
    faults, total = numbers.split()
    assert float(total) == 32_000_000
    if env:
        assert result != "applied" and int(faults) > 5 * 10_000
    else:
        assert result == "applied" and int(faults) < 15_000  # less than one tensor's pages in 5 tensors


def test_models_on_cpu_keep_freed_memory(lm):
    from captionkit.models import allocator

    _writer(lm)
    assert "result" in allocator._state  # decided once per process, at the first CPU model


# ------------------------------------------------------------------------------------------- prefetch


class _Media:
    """A stand-in media stage: slow, records how many batches were started and not yet finished."""

    name, batch_size = "media", 1

    def __init__(self, log: list, live: list) -> None:
        self.log, self.live, self.lock = log, live, threading.Lock()

    def setup(self) -> None:
        pass

    def process(self, works):
        time.sleep(0.01)
        with self.lock:
            self.live.extend(w.item.id for w in works)
        for w in works:
            w.scratch["media"] = w.item.id.upper()
        return [f"m-{w.item.id}" for w in works]


class _Model:
    name, batch_size = "caption", 2

    def __init__(self, live: list, peak: list, media: _Media) -> None:
        self.live, self.peak, self.media = live, peak, media

    def setup(self) -> None:
        pass

    def process(self, works):
        with self.media.lock:
            self.peak.append(len(self.live))
            for w in works:
                self.live.remove(w.item.id)
        time.sleep(0.02)
        return [ValueError("bad") if w.item.id == "i3" else w.scratch["media"] for w in works]


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_prefetch_keeps_results_and_order_and_bounds_batches_in_flight(prefetch):
    live: list = []
    peak: list = []
    media = _Media([], live)
    pipeline = Pipeline([media, _Model(live, peak, media)])
    assert pipeline.prefetch_stages == 1
    pending = (Pending(i, Item(id=f"i{i}", media=[]), 1) for i in range(9))
    groups = list(LocalEngine(pipeline, prefetch=prefetch).results(pending))
    flat = [(p.seq, r.outputs.get("caption"), r.error.stage if r.error else None) for g in groups for p, r in g]
    assert flat == [(i, None if i == 3 else f"I{i}", "caption" if i == 3 else None) for i in range(9)]
    assert [len(g) for g in groups] == [2, 2, 2, 2, 1]
    assert max(peak) <= 2 * (prefetch + 1)  # items of the current batch + the prefetched batches
