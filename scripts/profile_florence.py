#!/usr/bin/env python3
"""Reproduce the Florence-2 profile in docs/benchmarks.md ("Why Florence-2 stays under 1.3x ...").

    python scripts/profile_florence.py            # full configuration (random weights, saved once by the bench)
    python scripts/profile_florence.py --quick    # the bench's 2-layer variant: seconds, for checking the script

Prints, per image at the model's input size, in float32 with this process's torch threads and captionkit's malloc
thresholds (as `captionkit describe` runs it):
- the vision tower's time and its operators by self CPU time (torch.profiler), with the matmuls' GFLOP and rate;
- the rate of one large plain float32 matmul (4096x1024x4096) on this CPU, for comparison;
- the vision tower for 4 images in one batch against one at a time;
- the text side (encoder + 20 decoder steps) for 1 image and per image in a batch of 4;
- minor page faults and kernel time of one vision call with glibc's malloc defaults and with captionkit's
  thresholds (models/allocator.py), each in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time


def best_of(fn, n: int = 2) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load(scale: str):
    import transformers

    from captionkit.bench.configs import saved_model, spec

    transformers.utils.logging.disable_progress_bar()
    folder = saved_model(spec("florence-2-base"), scale, 20)
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(folder, dtype="float32").eval()
    return model, transformers.AutoProcessor.from_pretrained(folder)


def faults(scale: str) -> None:
    """One vision call after a warm-up, in this (fresh) process: minor page faults, kernel and wall seconds."""
    import torch

    model, processor = load(scale)
    size = processor.image_processor.size
    pixels = torch.randn(1, 3, size["height"], size["width"])
    with torch.inference_mode():
        for _ in range(3):  # glibc's heap settles over the first calls
            model.get_image_features(pixels)
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        model.get_image_features(pixels)
        after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{after.ru_minflt - before.ru_minflt} {after.ru_stime - before.ru_stime:.2f} "
          f"{time.perf_counter() - start:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bench's 2-layer variant")
    parser.add_argument("--faults", choices=["default", "captionkit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale = "quick" if args.quick else "full"
    if args.faults:
        if args.faults == "captionkit":
            from captionkit.models.allocator import keep_freed_memory

            assert keep_freed_memory() == "applied"
        faults(scale)
        return

    import torch
    from torch.profiler import ProfilerActivity, profile

    from captionkit.bench.cases import bench_images
    from captionkit.models.allocator import keep_freed_memory

    keep_freed_memory()  # as captionkit's own model loading does: the profile is of captionkit's path

    model, processor = load(scale)
    images = bench_images(4)
    task = "<DETAILED_CAPTION>"
    one = processor(images=images[:1], text=[task], return_tensors="pt")
    four = processor(images=images, text=[task] * 4, return_tensors="pt")
    kw = {"max_new_tokens": 20, "min_new_tokens": 20, "do_sample": False, "num_beams": 1}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {tuple(one['pixel_values'].shape)}")

    with torch.inference_mode():
        model.get_image_features(one["pixel_values"])
        vision_one = best_of(lambda: model.get_image_features(one["pixel_values"]))
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            model.get_image_features(one["pixel_values"])
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\nvision tower, 1 image: {vision_one:.2f} s; operators by self CPU time:")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]:
            rate = f", {e.flops / 1e9:.0f} GFLOP at {e.flops / e.self_cpu_time_total / 1e3:.0f} GFLOP/s" if e.flops >= 1e9 else ""
            print(f"  {e.key:48s} {100 * e.self_cpu_time_total / total:5.1f}%{rate}")

        a, b = torch.randn(4096, 1024), torch.randn(1024, 4096)
        a @ b
        seconds = best_of(lambda: a @ b, 5)
        print(f"\nplain float32 matmul 4096x1024x4096: {2 * 4096 * 1024 * 4096 / seconds / 1e9:.0f} GFLOP/s")

        vision_four = best_of(lambda: model.get_image_features(four["pixel_values"]))
        print(f"\nvision tower, 4 images: {vision_four:.2f} s in one batch, {4 * vision_one:.2f} s one at a time")

        def text_side(inputs, features):
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            embeds = model.get_input_embeddings()(ids)
            placeholder = model.model.get_placeholder_mask(ids, inputs_embeds=embeds, image_features=features)
            encoded = model.get_encoder()(inputs_embeds=embeds.masked_scatter(placeholder, features), attention_mask=mask)
            return model.generate(input_ids=ids, attention_mask=mask, encoder_outputs=encoded, **kw)

        features = model.get_image_features(one["pixel_values"]).pooler_output
        text_one = best_of(lambda: text_side(one, features))
        text_four = best_of(lambda: text_side(four, torch.cat([features] * 4)))
        plain = best_of(lambda: model.generate(**one, **kw))
        print(f"text side (encoder + 20 decoder steps): {text_one:.2f} s for 1 image, {text_four / 4:.2f} s per image "
              f"in a batch of 4; the plain loop's whole generate: {plain:.2f} s per image")

    print("\none vision call, fresh process each: minor page faults, kernel s, wall s")
    env = {k: v for k, v in os.environ.items() if k not in ("CAPTIONKIT_MALLOC", "GLIBC_TUNABLES", "LD_PRELOAD")}
    for mode in ("default", "captionkit"):
        cmd = [sys.executable, __file__, "--faults", mode] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout.split()[-3:]
        print(f"  glibc {mode:10s} {out[0]:>8s} faults, {out[1]} s kernel, {out[2]} s")


if __name__ == "__main__":
    main()
