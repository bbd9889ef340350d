"""Cases that time captionkit's own pipeline rather than a model: video frame sampling against decoding every
frame, and ``captionkit run`` end to end (local engine with and without prefetch, Ray), each run in a process of
its own so that its memory is its own."""

from __future__ import annotations

import dataclasses
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from captionkit.bench.cases import CaseResult, PeakRSS, own_peak_mb, timed

# ------------------------------------------------------------------------------------------- video frames


def frames_case(seconds: float, *, rounds: int, n: int = 8, root: Path | None = None,
                log: Callable[[str], None] = lambda _: None) -> CaseResult:
    """Sampling ``n`` frames by seeking (captionkit) against decoding every frame and picking the same ones."""
    from captionkit.bench.configs import cache_dir
    from captionkit.media.generate import write_video
    from captionkit.media.types import FramePolicy, ImageLimits
    from captionkit.media.video import probe_video, sample_video_frames

    # 640x360 at 24 fps with a keyframe every 2 s: a common social-media rendition (their encoders put keyframes
    # 1-4 s apart; x264's default of 250 frames would make each seek decode ~5x more frames).
    size, fps, gop = (640, 360), 24, 48
    path = (root or cache_dir()) / "video" / f"synthetic-{int(seconds)}s-{size[0]}x{size[1]}-{fps}fps-gop{gop}.mp4"
    if not path.exists():
        log(f"frames: encoding a {seconds:.0f}-second synthetic video once ({path})")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name("partial-" + path.name)
        write_video(partial, seconds=seconds, fps=fps, size=size, with_audio=False, gop=gop,
                    scenes=max(1, int(seconds // 30)))
        partial.rename(path)
    policy = FramePolicy(n=n)
    limits = dataclasses.replace(ImageLimits(), max_frames_decoded=10**9)

    def ours() -> list[tuple[float, bytes]]:
        _, frames = sample_video_frames(path, policy, limits)
        return [(round(f.time, 3), f.image.tobytes()) for f in frames]

    duration = probe_video(path).duration or seconds

    def every_frame() -> list[tuple[float, bytes]]:
        return _decode_all_and_pick(path, duration, n)

    with PeakRSS() as rss:
        ours()
        every_frame()
        t_ours, t_base, out_o, out_b = [], [], [], []
        for r in range(rounds):
            pair = [(t_base, every_frame, out_b), (t_ours, ours, out_o)]
            for times, fn, sink in pair if r % 2 == 0 else pair[::-1]:
                seconds_taken, out = timed(fn)
                times.append(seconds_taken)
                sink[:] = out
            log(f"frames round {r + 1}/{rounds}: every frame {t_base[-1]:.2f}s, seeking {t_ours[-1]:.3f}s")
    ratios = [b / o for b, o in zip(t_base, t_ours)]
    same = [a == b for a, b in zip(out_o, out_b)]
    return CaseResult(
        name=f"frames/{n}-of-{seconds / 60:g}min", kind="frames", setting="seek", items=1, rounds=rounds,
        ours_items_per_s=1 / statistics.median(t_ours), baseline_items_per_s=1 / statistics.median(t_base),
        ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios),
        identical=bool(same) and all(same) and len(out_o) == len(out_b), agreement=sum(same) / max(1, len(same)),
        peak_rss_mb=rss.peak_mb, promise="the same frames as decoding everything and picking",
        note=f"{seconds:.0f} s H.264 video, {size[0]}x{size[1]} at {fps} fps, keyframe every {gop} frames; "
             f"items = videos",
    )


def _decode_all_and_pick(path: Path, duration: float, n: int) -> list[tuple[float, bytes]]:
    """Decode every frame; keep the first at or after each of the ``n`` uniform slice centres."""
    import av

    targets = [(i + 0.5) * duration / n for i in range(n)]
    picked: list[tuple[float, bytes]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) - start
            while len(picked) < n and t >= targets[len(picked)] - 1e-6:
                picked.append((round(t, 3), frame.to_image().tobytes()))
    return picked


# ------------------------------------------------------------------------------------------- end to end


def synthetic_dataset(n: int, root: Path | None = None) -> Path:
    """A CSV of ``n`` rows, each a JPEG at a social-media photo size (drawn landscapes), written once and reused."""
    import csv

    from captionkit.bench.configs import cache_dir
    from captionkit.media.generate import write_image

    folder = (root or cache_dir()) / "datasets" / f"photos-{n}"
    table = folder / "posts.csv"
    if table.exists():
        return table
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(1080, 1080), (1080, 1350), (1920, 1080), (1280, 720)]
    with (folder / "partial.csv").open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "media", "company"])
        for i in range(n):
            path = write_image(folder / f"{i:05d}.jpg", size=sizes[i % len(sizes)], seed=i)
            out.writerow([f"p{i}", str(path), "Acme"])
    (folder / "partial.csv").rename(table)
    return table


def run_case(n: int, *, captioner: Path, engines: Sequence[str] = ("local",), root: Path | None = None,
             log: Callable[[str], None] = lambda _: None) -> list[CaseResult]:
    """``captionkit run`` over ``n`` images (media, facts, caption with ``captioner``, template posts): the local
    engine with prefetch (ours) against the same engine without it, and the Ray engine when asked. Each run is a
    process of its own (models loaded before the clock starts), so its peak memory is that run's alone: peak
    memory at n/4 and n items shows whether memory stays flat as the dataset grows."""
    table = synthetic_dataset(n, root)
    for path in table.parent.glob("*.jpg"):  # every file read once: the first pass over new files is slower
        path.read_bytes()
    _, peak_quarter, _ = _run_in_own_process(table, str(captioner), "local", max(1, n // 4))
    t_base, t_ours = [], []
    for r in range(2):  # A B B A
        for name, times in [("local-no-prefetch", t_base), ("local", t_ours)][:: 1 if r == 0 else -1]:
            seconds, peak_n, out = _run_in_own_process(table, str(captioner), name, n)
            times.append(seconds)
            if name == "local":
                peak, out_ours = peak_n, out
            else:
                out_base = out
    log(f"run: {n} items, no prefetch {min(t_base):.1f}s, prefetch {min(t_ours):.1f}s; peak RSS {peak_quarter:.0f} MB "
        f"at {n // 4} items, {peak:.0f} MB at {n}")
    ratios = [b / o for b, o in zip(t_base, t_ours)]
    results = [_run_result("run/local-prefetch", n, statistics.median(t_base), statistics.median(t_ours), ratios,
                           out_base == out_ours, peak,
                           f"against the local engine without prefetch; each run a process of its own: peak RSS "
                           f"{peak_quarter:.0f} MB at {n // 4} items, {peak:.0f} MB at {n}")]
    if "ray" in engines:
        t_ray, _, out_ray = _run_in_own_process(table, str(captioner), "ray", n)
        log(f"run: ray engine {t_ray:.1f}s")
        base = statistics.median(t_base)
        results.append(_run_result("run/ray", n, base, t_ray, [base / t_ray], sorted(out_ray) == sorted(out_base), None,
                                   "against the local engine without prefetch; Ray workers' memory not counted; "
                                   "includes starting a local Ray cluster"))
    return results


def _run_in_own_process(table: Path, captioner: str, engine: str, limit: int) -> tuple[float, float, list[str]]:
    """(seconds, peak RSS MB, results lines without timings) of one run, in a fresh (spawned) process."""
    from concurrent.futures import ProcessPoolExecutor

    import torch

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_one_run, table, captioner, engine, limit, torch.get_num_threads()).result()


def _one_run(table: Path, captioner: str, engine_name: str, limit: int, threads: int) -> tuple[float, float, list[str]]:
    import shutil
    import tempfile

    import torch

    from captionkit.api import pipeline_for
    from captionkit.config import RunConfig
    from captionkit.io.readers import read_dataset
    from captionkit.models.settings import CaptionSettings, WriteSettings
    from captionkit.pipeline.runner import LocalEngine, Runner, make_engine

    torch.set_num_threads(threads)
    config = RunConfig(stages=["media", "facts", "caption", "write"], formats=["jsonl"],
                       caption=CaptionSettings(model=captioner, batch_size=8, max_new_tokens=8, device="cpu"),
                       write=WriteSettings(writer="template"))
    items = [item for _, item in zip(range(limit), read_dataset(table, config.mapping))]
    out = Path(tempfile.mkdtemp(prefix="captionkit-bench-run-"))
    try:
        if engine_name == "ray":
            engine: Any = make_engine(dataclasses.replace(config, engine="ray",
                                                          ray=dataclasses.replace(config.ray, address="local")))
        else:
            pipeline = pipeline_for(config)
            pipeline.setup()  # models load before the clock starts
            engine = LocalEngine(pipeline, prefetch=0 if engine_name == "local-no-prefetch" else 1)
        start = time.perf_counter()
        Runner(None, out, config, progress=False, engine=engine).run(items, total=len(items))
        seconds = time.perf_counter() - start
        lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
        return seconds, own_peak_mb(), [_strip_timings(line) for line in lines]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _strip_timings(line: str) -> str:
    import json

    record = json.loads(line)
    record.pop("timings", None)
    return json.dumps(record, sort_keys=True)


def _run_result(name: str, n: int, t_base: float, t_ours: float, ratios: list[float], same: bool, peak: float | None,
                note: str) -> CaseResult:
    return CaseResult(name=name, kind="run", setting=name.split("/")[1], items=n, rounds=len(ratios),
                      ours_items_per_s=n / t_ours, baseline_items_per_s=n / t_base, ratio=statistics.median(ratios),
                      ratio_min=min(ratios), ratio_max=max(ratios), identical=same,
                      agreement=1.0 if same else 0.0, peak_rss_mb=peak,
                      promise="the same results.jsonl (timings aside)", note=note)
