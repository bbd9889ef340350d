"""Benchmark cases: captionkit's path against the plain Hugging Face loop on the same saved weights.

The baseline is what a user writes from the model card: processor -> ``model.generate`` -> decode, one item at
a time, float32, greedy, a fixed number of new tokens. Ours is captionkit's backend (or writer) with batching and
one fast-path setting. The baseline runs in a process of its own, as a user's script would (nothing captionkit
sets for its own process, such as malloc's thresholds, reaches it), with the same torch threads; the two take
turns, so only one computes at a time, after a warm-up:
round r runs the baseline then every setting (the order reversed on odd rounds, so slow drifts cancel), and
the ratio of each round is baseline seconds / ours seconds. The reported ratio is the median over rounds,
with its min and max.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from captionkit.bench.configs import ModelSpec, saved_model
from captionkit.models.allocator import release_free_memory
from captionkit.models.options import GenerationOptions, ModelOptions


@dataclass
class CaseResult:
    name: str  # model/setting, e.g. "blip-base/int8"
    kind: str  # describe | write | frames | run
    setting: str
    items: int  # items per timed run
    rounds: int
    ours_items_per_s: float
    baseline_items_per_s: float
    ratio: float  # median over rounds of baseline seconds / ours seconds
    ratio_min: float
    ratio_max: float
    identical: bool | None  # every output equal to the baseline's (None: not comparable)
    agreement: float | None = None  # share of items whose output equals the baseline's
    new_tokens: int | None = None
    ours_tokens_per_s: float | None = None
    baseline_tokens_per_s: float | None = None
    peak_rss_mb: float | None = None  # highest resident memory of our side's process during the case
    baseline_peak_rss_mb: float | None = None  # the baseline's process (model cases: it runs in its own)
    promise: str = ""  # what the setting promises about outputs
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 4)
        return out


# ------------------------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    """One configuration of our side: batch size plus fast paths. ``exact`` settings promise equal outputs."""

    name: str
    options: dict[str, Any]
    exact: bool
    promise: str


def settings_for(role: str, batch_size: int, bf16: bool, names: Sequence[str] | None = None,
                 gpu: bool = False) -> list[Setting]:
    """``batched`` (float32: outputs equal), ``bf16`` (where the CPU has bf16 units, or on GPU), ``int8`` (dynamic,
    CPU only); ``compile`` (writers: static KV cache + torch.compile) only when named, as its first call compiles
    for a minute or more."""
    all_settings = [
        Setting("batched", {"batch_size": batch_size, "dtype": "float32"}, True,
                "equal to the plain loop (float32, batched)"),
        Setting("bf16", {"batch_size": batch_size, "dtype": "bfloat16"}, False,
                "bfloat16 weights: close to float32, not equal"),
        Setting("int8", {"batch_size": batch_size, "dtype": "float32", "quantize": "int8"}, False,
                "dynamic int8 Linear layers: close to float32, not equal"),
        Setting("compile", {"batch_size": batch_size, "dtype": "float32", "compile": True}, False,
                "static KV cache + torch.compile: equal up to the rounding of fused kernels"),
    ]
    return [s for s in all_settings if (s.name in names if names is not None else s.name != "compile")
            and (bf16 or gpu or s.name != "bf16") and not (gpu and s.name == "int8")
            and (role == "writer" or s.name != "compile")]


# ------------------------------------------------------------------------------------------- memory


class PeakRSS:
    """Samples this process's resident memory every 20 ms while entered; ``peak_mb`` is the highest seen."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def now() -> int:
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRSS:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self.peak, self.now())

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


# ------------------------------------------------------------------------------------------- inputs


def bench_images(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` photo-sized RGB images (landscape and portrait), smooth gradients plus noise."""
    rng = np.random.default_rng(seed)
    sizes = [(640, 480), (480, 640), (800, 600), (512, 512)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * (i + 1)) % 256, (y * 2) % 256, ((x + y) // 3) % 256], axis=-1)
        noise = rng.integers(0, 40, (h, w, 3))
        out.append(Image.fromarray(((base + noise) % 256).astype(np.uint8)))
    return out


DESCRIPTIONS = [
    "A red sneaker on a wooden table next to a cup of coffee.",
    "A dog running on a sandy beach at sunset, with waves behind it and two people walking far away.",
    "Text on the image: SUMMER SALE, fifty percent off everything this weekend only.",
    "A plate of pasta with basil and tomatoes on a white table in a small restaurant with warm light.",
    "A woman in a yellow raincoat holding an umbrella on a busy street at night, neon signs on the shops.",
    "Two bottles of the brand's new sparkling water on ice.",
    "A mountain lake in the morning with fog over the water, pine trees and a wooden pier; a canoe is tied to it.",
    "A laptop showing a chart, a notebook and a pen on a desk by a window.",
]


def bench_prompts(n: int):
    """``n`` writer prompts of varied length, like the ``write`` stage's (a system text + the item's context)."""
    from captionkit.writers.base import Prompt

    system = "You write social media posts for a brand. Keep them friendly, short, and within the platform's rules."
    return [Prompt(system, f"Platform: x. Brand: Acme. Description: {DESCRIPTIONS[i % len(DESCRIPTIONS)]} "
                           f"Write one post.") for i in range(n)]


# ------------------------------------------------------------------------------------------- the two sides


class Baseline:
    """The plain Hugging Face loop: one item at a time, float32, greedy, ``new_tokens`` new tokens."""

    def __init__(self, model: ModelSpec, folder: Path, new_tokens: int, device: str = "cpu") -> None:
        import transformers

        self.spec, self.new_tokens, self.device = model, new_tokens, device
        cls = {"florence2": "Florence2ForConditionalGeneration", "blip": "BlipForConditionalGeneration",
               "git": "GitForCausalLM", "vision_encoder_decoder": "VisionEncoderDecoderModel",
               "local": "AutoModelForCausalLM"}[model.backend]
        self.model = getattr(transformers, cls).from_pretrained(folder, dtype="float32").to(device).eval()
        if model.backend == "vision_encoder_decoder":
            self.image_processor = transformers.AutoImageProcessor.from_pretrained(folder)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        elif model.backend == "local":
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        else:
            self.processor = transformers.AutoProcessor.from_pretrained(folder)
        self.kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "num_beams": 1}

    def run(self, items: Sequence[Any]) -> list[str]:
        import torch

        with torch.inference_mode():
            return [self._one(item) for item in items]

    def _one(self, item: Any) -> str:
        backend = self.spec.backend
        if backend == "local":
            text = self.tokenizer.apply_chat_template(item.messages(), add_generation_prompt=True, tokenize=False)
            inputs = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.device)
            ids = self.model.generate(**inputs, **self.kw)[0, inputs["input_ids"].shape[1]:]
            return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if backend == "vision_encoder_decoder":
            inputs = self.image_processor(images=item, return_tensors="pt").to(self.device)
            return self.tokenizer.decode(self.model.generate(**inputs, **self.kw)[0], skip_special_tokens=True).strip()
        if backend == "florence2":
            inputs = self.processor(images=item, text="<DETAILED_CAPTION>", return_tensors="pt").to(self.device)
            text = self.processor.batch_decode(self.model.generate(**inputs, **self.kw), skip_special_tokens=True)[0]
            try:
                text = self.processor.post_process_generation(text, task="<DETAILED_CAPTION>",
                                                              image_size=item.size)["<DETAILED_CAPTION>"]
            except (ValueError, KeyError):
                pass
            return str(text).strip()
        inputs = self.processor(images=item, return_tensors="pt").to(self.device)  # blip, git: unconditional
        return self.processor.batch_decode(self.model.generate(**inputs, **self.kw), skip_special_tokens=True)[0].strip()


class BaselineProcess:
    """``Baseline`` in a child process (spawned: a fresh interpreter, not a copy of this one). ``run`` returns the
    seconds the child measured and its outputs; ``peak_rss_mb`` is the child's highest resident memory."""

    def __init__(self, model: ModelSpec, folder: Path, new_tokens: int, device: str = "cpu") -> None:
        import torch

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_baseline_main, name="captionkit-bench-baseline", daemon=True,
                                 args=(child, model, folder, new_tokens, device, torch.get_num_threads()))
        self._proc.start()
        child.close()
        self.peak_rss_mb = 0.0
        self._call("ready")

    def run(self, items: Sequence[Any]) -> tuple[float, list[str]]:
        self._conn.send(("run", list(items)))
        seconds, outputs, self.peak_rss_mb = self._call("done")
        return seconds, outputs

    def _call(self, expected: str) -> Any:
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the baseline process died (exit code {self._proc.exitcode})") from None
        if kind != expected:
            raise RuntimeError(f"the baseline process failed:\n{payload}")
        return payload

    def close(self) -> None:
        try:
            self._conn.send(("stop", None))
        except (OSError, EOFError):
            pass
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()


def own_peak_mb() -> float:
    """This process's highest resident memory: VmHWM, which starts afresh at exec (ru_maxrss would carry the
    parent's peak over from the fork)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baseline_main(conn: Any, model: ModelSpec, folder: Path, new_tokens: int, device: str, threads: int) -> None:
    import traceback

    try:
        import torch
        import transformers

        torch.set_num_threads(threads)
        transformers.utils.logging.disable_progress_bar()  # as the bench's own process: its lines stay readable
        baseline = Baseline(model, folder, new_tokens, device)
        conn.send(("ready", None))
        while (message := conn.recv())[0] == "run":
            seconds, outputs = timed(lambda items=message[1]: baseline.run(items))
            conn.send(("done", (seconds, outputs, own_peak_mb())))
    except Exception:  # reported to the parent, which raises it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


@dataclass
class _WriterSettings:
    """What LocalWriter reads from WriteSettings, with every ModelOptions field reachable."""

    model_options: ModelOptions
    batch_size: int
    adapter: str | None = None


class Ours:
    """captionkit's backend or local writer, loaded once with ``setting``'s options."""

    def __init__(self, model: ModelSpec, folder: Path, new_tokens: int, setting: Setting, device: str = "cpu") -> None:
        options = ModelOptions(device=device, **setting.options)
        self.spec, self.gen = model, GenerationOptions(max_new_tokens=new_tokens)
        if model.role == "writer":
            from captionkit.writers.local import LocalWriter

            self.impl: Any = LocalWriter(str(folder), _WriterSettings(options, options.batch_size))
        else:
            from captionkit.captioners.base import load_captioner

            self.impl = load_captioner(str(folder), options, backend=model.backend)

    def run(self, items: Sequence[Any]) -> list[str]:
        if self.spec.role == "writer":
            return [c[0] for c in self.impl.write(list(items), self.gen)]
        return self.impl.caption(list(items), None, self.gen)


# ------------------------------------------------------------------------------------------- running


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()  # outputs are decoded strings: the GPU has finished when they exist
    return time.perf_counter() - start, out


def model_cases(model: ModelSpec, scale: str, *, items: int, rounds: int, new_tokens: int,
                settings: Sequence[Setting], root: Path | None = None, device: str = "cpu",
                log: Callable[[str], None] = lambda _: None) -> list[CaseResult]:
    """Every setting of ``model`` against the baseline, alternating over ``rounds`` after a warm-up."""
    folder = saved_model(model, scale, new_tokens, root)
    inputs = bench_prompts(items) if model.role == "writer" else bench_images(items)
    kind = "write" if model.role == "writer" else "describe"
    log(f"{model.name}: loading the baseline (own process) and {len(settings)} setting(s) from {folder}")
    baseline = BaselineProcess(model, folder, new_tokens, device)
    try:
        with PeakRSS() as rss:
            ours = {s.name: Ours(model, folder, new_tokens, s, device) for s in settings}
            baseline.run(inputs[:1])  # warm-up: one item for the loop, the whole batch shape for ours
            warm = {name: timed(lambda side=side: side.run(inputs))[0] for name, side in ours.items()}
            log(f"{model.name} warm-up (first call: load-time work such as torch.compile): "
                + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in warm.items()))
            times: dict[str, list[float]] = {"baseline": [], **{name: [] for name in ours}}
            outputs: dict[str, list[str]] = {}
            for r in range(rounds):
                order = ["baseline", *ours]
                for name in order if r % 2 == 0 else order[::-1]:
                    if name == "baseline":
                        seconds, outputs[name] = baseline.run(inputs)
                    else:
                        seconds, outputs[name] = timed(lambda side=ours[name]: side.run(inputs))
                    times[name].append(seconds)
                log(f"{model.name} round {r + 1}/{rounds}: "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    finally:
        baseline.close()
    results = []
    for s in settings:
        ratios = [b / o for b, o in zip(times["baseline"], times[s.name])]
        same = [a == b for a, b in zip(outputs[s.name], outputs["baseline"])]
        ours_s, base_s = statistics.median(times[s.name]), statistics.median(times["baseline"])
        results.append(CaseResult(
            name=f"{model.name}/{s.name}", kind=kind, setting=s.name, items=items, rounds=rounds,
            ours_items_per_s=items / ours_s, baseline_items_per_s=items / base_s,
            ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
            identical=all(same), agreement=sum(same) / len(same), new_tokens=new_tokens,
            ours_tokens_per_s=items * new_tokens / ours_s, baseline_tokens_per_s=items * new_tokens / base_s,
            peak_rss_mb=rss.peak_mb, baseline_peak_rss_mb=baseline.peak_rss_mb, promise=s.promise,
            note=f"batch {s.options['batch_size']}" + ("" if all(same) or not s.exact else
                                                       "; outputs differ although the setting promises equality"),
        ))
    del ours
    _forget_loaded()
    return results


def _forget_loaded() -> None:
    """Drop the models captionkit keeps per process, so that the next case starts from the same memory."""
    from captionkit.captioners import base as captioners
    from captionkit.writers import base as writers

    captioners._LOADED.clear()
    writers._LOADED.clear()
    gc.collect()
    release_free_memory()  # what models/allocator.py kept in the heap, so that memory figures start from here
