"""Which cases a ``captionkit bench`` run holds, per scale, and running them in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from captionkit.bench.cases import CaseResult, model_cases, settings_for
from captionkit.bench.configs import SPECS, saved_model, spec
from captionkit.bench.pipeline_cases import frames_case, run_case
from captionkit.errors import ConfigError

SETTINGS = ("batched", "bf16", "int8", "compile")  # compile: writers only, and only when asked for by name


@dataclass(frozen=True)
class Plan:
    models: tuple[str, ...]
    caption_items: int  # images per timed run (one batch of our side per caption_batch images)
    caption_batch: int
    write_items: int
    write_batch: int
    new_tokens: int
    rounds: int
    video_seconds: float | None  # None: no frames case
    settings: tuple[str, ...] | None = None  # None: every setting the machine supports
    run_items: int | None = None  # end-to-end `captionkit run` over this many images (None: not run)
    run_engines: tuple[str, ...] = ("local",)


PLANS = {
    # ~15 minutes on 2 cores (plus building the models once): a vision tower at full size takes seconds per image.
    "full": Plan(models=tuple(s.name for s in SPECS), caption_items=4, caption_batch=4, write_items=8, write_batch=8,
                 new_tokens=20, rounds=2, video_seconds=600.0, run_items=2000, run_engines=("local", "ray")),
    "quick": Plan(models=("florence-2-base", "blip-base", "git-base", "vit-gpt2", "qwen2.5-0.5b-instruct"),
                  caption_items=4, caption_batch=4, write_items=8, write_batch=8, new_tokens=12, rounds=2,
                  video_seconds=120.0, run_items=200),
    "tiny": Plan(models=("blip-base", "qwen2.5-0.5b-instruct"), caption_items=2, caption_batch=2, write_items=2,
                 write_batch=2, new_tokens=4, rounds=1, video_seconds=None),
}


def plan_for(scale: str, *, models: Sequence[str] | None = None, settings: Sequence[str] | None = None,
             items: int | None = None, rounds: int | None = None, new_tokens: int | None = None,
             frames: bool = True, run_items: int | None = None, ray: bool | None = None) -> Plan:
    if scale not in PLANS:
        raise ConfigError(f"--scale must be one of {', '.join(PLANS)} (got {scale!r})")
    plan = PLANS[scale]
    if models:
        known = {s.name for s in SPECS}
        if unknown := [m for m in models if m not in known]:
            raise ConfigError(f"--models: unknown {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        plan = replace(plan, models=tuple(models))
    if settings:
        if unknown := [s for s in settings if s not in SETTINGS]:
            raise ConfigError(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
        plan = replace(plan, settings=tuple(settings))
    if items:
        plan = replace(plan, caption_items=items, write_items=items, caption_batch=min(plan.caption_batch, items),
                       write_batch=min(plan.write_batch, items))
    if rounds:
        plan = replace(plan, rounds=rounds)
    if new_tokens:
        plan = replace(plan, new_tokens=new_tokens)
    if not frames:
        plan = replace(plan, video_seconds=None)
    if run_items is not None:
        plan = replace(plan, run_items=run_items or None)
    if ray is not None:
        plan = replace(plan, run_engines=("local", "ray") if ray else ("local",))
    return plan


def run_plan(plan: Plan, scale: str, *, root: Path | None = None, device: str = "cpu",
             log: Callable[[str], None] = lambda _: None) -> list[CaseResult]:
    from captionkit.models.hf import cpu_has_fast_bf16

    results: list[CaseResult] = []
    for name in plan.models:
        model = spec(name)
        writer = model.role == "writer"
        batch = plan.write_batch if writer else plan.caption_batch
        items = plan.write_items if writer else plan.caption_items
        gpu = device.startswith("cuda")
        names = plan.settings or model.settings
        chosen = settings_for(model.role, batch, cpu_has_fast_bf16(), names, gpu=gpu)
        if not chosen:  # e.g. --settings compile for a captioner
            continue
        results += model_cases(model, scale, items=items, rounds=plan.rounds, new_tokens=plan.new_tokens,
                               settings=chosen, root=root, device=device, log=log)
    if plan.video_seconds:
        results.append(frames_case(plan.video_seconds, rounds=max(2, plan.rounds), root=root, log=log))
    if plan.run_items:
        # The pipeline's own cost (decoding, resizing, batching, the runner) with a tiny captioner: a real one
        # would take hours for thousands of items on a small CPU; its speed is what the model cases measure.
        captioner = saved_model(spec("blip-base"), "tiny", 8, root)
        results += run_case(plan.run_items, captioner=captioner, engines=plan.run_engines, root=root, log=log)
    return results
