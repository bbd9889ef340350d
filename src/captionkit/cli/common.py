"""Options shared by several commands, declared once, and turning them into a :class:`RunConfig`.

Commands take groups of options with ``@options(FRAMES, FETCH, ...)``: the decorator adds the group's
parameters to the command's signature (typer reads signatures) and hands their values to the command
as one ``opts`` dict, so ``describe``, ``run`` and later commands share flags without repeating them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from captionkit.config import RunConfig
from captionkit.errors import ConfigError

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML file whose keys mirror these flags (flags win).")
MapOpt = typer.Option(
    None, "--map", "-m", metavar="FIELD=COLUMN",
    help="Map a dataset column to an item field: id, media, reference or metadata.NAME. Repeatable.",
)
SheetOpt = typer.Option(None, "--sheet", help="Sheet of an .xlsx file (default: the first).")


def _opt(*flags: str, help: str, **kw: Any) -> Any:
    return typer.Option(None, *flags, help=help, **kw)


# name -> (annotation, typer option). Defaults live in the config records, so every option defaults to None
# ("not given") and only given flags override the YAML config.
FRAMES = {
    "frames": (Optional[int], _opt("--frames", min=1, help="Frames to sample from a video or GIF (uniform policy). [default: 8]")),
    "frame_policy": (Optional[str], _opt("--frame-policy", help="uniform (N frames by seeking), interval (every --every s) or scene (keyframes at scene changes). [default: uniform]")),
    "every": (Optional[float], _opt("--every", min=0.01, help="Seconds between frames for --frame-policy interval. [default: 2]")),
    "scene_threshold": (Optional[float], _opt("--scene-threshold", min=0.0, max=2.0, help="Histogram distance that counts as a scene change. [default: 0.35]")),
}
FETCH = {
    "timeout": (Optional[float], _opt("--timeout", min=0.1, help="Seconds per download attempt. [default: 20]")),
    "retries": (Optional[int], _opt("--retries", min=0, help="Extra download attempts after timeouts and 5xx. [default: 3]")),
    "max_download_mb": (Optional[float], _opt("--max-download-mb", min=0.001, help="Refuse downloads larger than this. [default: 200]")),
}
# Fast paths (docs/benchmarks.md for what each gains and costs); they apply to the captioner and a local writer.
FAST_PATHS = {
    "quantize": (Optional[str], _opt("--quantize", help="none or int8: dynamic int8 Linear layers, CPU only; ~1.5-3x faster, outputs close to float32 but not equal. [default: none]")),
    "attn": (Optional[str], _opt("--attn", help="Attention kernel: sdpa or eager (equal outputs). [default: the model's, sdpa where supported]")),
    "compile": (Optional[bool], _opt("--compile/--no-compile", help="Static KV cache + torch.compile: slow first call per input shape, then faster; for long runs. [default: off]")),
}
CAPTION = {
    "captioner": (Optional[str], _opt("--captioner", help="Catalogue name (see `captionkit models list`), backend name, hub id or model folder. [default: florence-2-base, or `basic` when it cannot be fetched]")),
    "prompt": (Optional[str], _opt("--prompt", help="Conditional caption prefix (BLIP, GIT) or instruction (Florence-2, chat VLMs).")),
    "task": (Optional[str], _opt("--task", help="Florence-2 task: caption, detailed_caption, more_detailed_caption or ocr.")),
    "batch_size": (Optional[int], _opt("--batch-size", min=1, help="Images (or posts, for `write`) per model call. [default: 4; write: 8]")),
    "device": (Optional[str], _opt("--device", help="auto, cpu, cuda, cuda:N or mps. [default: auto]")),
    "dtype": (Optional[str], _opt("--dtype", help="auto, fast, float32, bfloat16 or float16. fast: bfloat16 on CPUs with bf16 units (avx512_bf16/amx), ~2-3x faster, outputs close to float32 but not equal. [default: auto: float32 on CPU, outputs exact]")),
    **FAST_PATHS,  # the captioner's and (via _SHARED) a local writer's model options
}
# Decoding flags apply to the command's main model: the captioner for describe/run/ask, the writer for write.
DECODING = {
    "max_new_tokens": (Optional[int], _opt("--max-new-tokens", min=1, help="Longest output in tokens. [default: 40 for captions, 120 for posts]")),
    "num_beams": (Optional[int], _opt("--num-beams", min=1, help="Beam search width; 1 is greedy. [default: 1]")),
    "do_sample": (Optional[bool], _opt("--do-sample/--greedy", help="Sample instead of greedy/beam decoding. [default: greedy]")),
    "top_p": (Optional[float], _opt("--top-p", help="Nucleus sampling mass (with --do-sample).")),
    "temperature": (Optional[float], _opt("--temperature", help="Sampling temperature (with --do-sample).")),
    "repetition_penalty": (Optional[float], _opt("--repetition-penalty", help="> 1 discourages repeated tokens.")),
    "no_repeat_ngram_size": (Optional[int], _opt("--no-repeat-ngram-size", min=0, help="Never repeat an n-gram of this size.")),
    "seed": (Optional[int], _opt("--seed", help="Seed for sampling, for reproducible outputs.")),
}
WRITE = {
    "writer": (Optional[str], _opt("--writer", help="Catalogue name, hub id, model folder, http(s) URL of an OpenAI-compatible server, or template. [default: qwen2.5-0.5b-instruct, or `template` when it cannot be fetched]")),
    "platform": (Optional[str], _opt("--platform", help="x, instagram, linkedin, facebook, alt-text or adobe. [default: x]")),
    "template": (Optional[str], _opt("--template", help="Your own Jinja2 prompt template file (blocks `system` and `user`).")),
    "tone": (Optional[str], _opt("--tone", help="Voice of the post, e.g. friendly, playful, professional. [default: friendly]")),
    "language": (Optional[str], _opt("--language", help="Language of the post. [default: en]")),
    "hashtags": (Optional[int], _opt("--hashtags", min=0, help="Hashtags per post. [default: the platform's]")),
    "emoji": (Optional[bool], _opt("--emoji/--no-emoji", help="Allow emoji. [default: the platform's]")),
    "call_to_action": (Optional[str], _opt("--cta", help="Call to action to include, e.g. 'Shop now at the link in bio'.")),
    "brand": (Optional[str], _opt("--brand", help="Brand name. [default: the item's metadata.company]")),
    "handle": (Optional[str], _opt("--handle", help="Brand handle. [default: the item's metadata.username]")),
    "num_candidates": (Optional[int], _opt("--num-candidates", "-n", min=1, help="Posts per item. [default: 1]")),
    "examples": (Optional[str], _opt("--examples", help="File of past posts; the --k nearest go into each prompt (never the item itself).")),
    "k": (Optional[int], _opt("--k", min=0, help="Examples per prompt. [default: 3]")),
    "embedder": (Optional[str], _opt("--embedder", help="sentence-transformers model (id or folder) for --examples, or bm25. [default: all-MiniLM-L6-v2, BM25 if unavailable]")),
    "adapter": (Optional[str], _opt("--adapter", help="LoRA/PEFT adapter folder to load on top of a local writer.")),
    "api_model": (Optional[str], _opt("--api-model", help="Model name for an OpenAI-compatible --writer URL. [default: the server's first]")),
    "api_key_env": (Optional[str], _opt("--api-key-env", help="Env var holding the API key for --writer URL. [default: OPENAI_API_KEY]")),
    "concurrency": (Optional[int], _opt("--concurrency", min=1, help="Requests in flight to a --writer URL. [default: 4]")),
}
# On `run`, the writer's decoding flags carry a prefix (the plain ones are the captioner's).
WRITER_DECODING = {
    f"writer_{name}": (ann, _opt(*[f.replace("--", "--writer-") for f in opt.param_decls if f.startswith("--")],
                                 help=f"Writer: {opt.help}"))
    for name, (ann, opt) in DECODING.items()
}
OCR = {
    "ocr": (Optional[str], _opt("--ocr", help="OCR engine: rapidocr, tesseract or none. [default: rapidocr]")),
    "ocr_lang": (Optional[str], _opt("--ocr-lang", help="Tesseract languages, e.g. eng or eng+deu. [default: eng]")),
    "ocr_min_confidence": (Optional[float], _opt("--ocr-min-confidence", min=0.0, max=1.0, help="Drop OCR lines below this confidence. [default: 0.5]")),
}
SPEECH = {
    "speech_model": (Optional[str], _opt("--speech-model", help="Whisper model: catalogue name, hub id, folder, or none. [default: whisper-base, skipped when it cannot be fetched]")),
    "speech_language": (Optional[str], _opt("--speech-language", help="Spoken language code (e.g. en); default: detected.")),
}


def options(*groups: dict[str, tuple[Any, Any]]):
    """Add the options of ``groups`` to a command; the command receives their values as ``opts``."""
    names = [name for group in groups for name in group]

    def deco(fn):
        sig = inspect.signature(fn)
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
            for group in groups for name, (ann, opt) in group.items()
        ]
        params = [p for p in sig.parameters.values() if p.name != "opts"] + extra

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            opts = {name: kwargs.pop(name, None) for name in names}
            return fn(*args, opts=opts, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return deco


# flag name -> (config section, field)
_SECTIONS = {
    "frames": ("frames", "n"), "frame_policy": ("frames", "mode"), "every": ("frames", "every"),
    "scene_threshold": ("frames", "threshold"),
    "timeout": ("fetch", "timeout"), "retries": ("fetch", "retries"), "max_download_mb": ("fetch", "max_bytes"),
    "captioner": ("caption", "model"), "prompt": ("caption", "prompt"), "task": ("caption", "task"),
    **{name: ("write", name) for name in WRITE},
    **{name: ("write", name.removeprefix("writer_")) for name in WRITER_DECODING},
    "ocr": ("ocr", "engine"), "ocr_lang": ("ocr", "languages"), "ocr_min_confidence": ("ocr", "min_confidence"),
    "speech_model": ("speech", "model"), "speech_language": ("speech", "language"),
}
_SHARED = {"device": ("caption", "speech", "write"), "dtype": ("caption", "speech", "write"),  # one flag, several sections
           **{name: ("caption", "write") for name in FAST_PATHS}}



def build_config(config: Optional[Path | RunConfig] = None, *, maps: Optional[list[str]] = None,
                 opts: Optional[dict[str, Any]] = None, decoding: str = "caption", **top: Any) -> RunConfig:
    """The YAML config (or defaults, or a config already read) with the given command-line flags laid over it.

    ``decoding`` names the section the plain decoding flags (--max-new-tokens, ...) belong to.
    """
    if isinstance(config, RunConfig):
        cfg = config
    else:
        cfg = RunConfig.from_yaml(config) if config else RunConfig()
    changes: dict[str, dict[str, Any]] = {}
    for flag, value in (opts or {}).items():
        if value is None:
            continue
        if flag == "max_download_mb":
            value = int(value * 2**20)
        if flag == "batch_size" and decoding == "write":
            targets = [("write", "batch_size")]
        elif flag in DECODING:
            targets = [(decoding, flag)]
        elif flag in _SECTIONS:
            targets = [_SECTIONS[flag]]
        else:
            targets = [(s, flag) for s in _SHARED[flag]]
        for section, field in targets:
            changes.setdefault(section, {})[field] = value
    replaced: dict[str, Any] = {k: v for k, v in top.items() if v is not None}
    for section, fields in changes.items():
        replaced[section] = _replace(getattr(cfg, section), fields, section)
    if maps:
        replaced["mapping"] = cfg.mapping.with_overrides(maps)
    return dataclasses.replace(cfg, **replaced) if replaced else cfg


def _replace(obj: Any, changes: dict[str, Any], section: str) -> Any:
    try:
        return dataclasses.replace(obj, **changes)
    except (TypeError, ValueError) as exc:
        flags = ", ".join(f"--{f.replace('_', '-')}" for f, (s, _) in _SECTIONS.items() if s == section)
        raise ConfigError(f"{flags}: {exc}") from None


def split_csv(values: Optional[list[str]]) -> Optional[list[str]]:
    """Accept both ``--x a --x b`` and ``--x a,b``."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def emit(records: list[dict[str, Any]] | dict[str, Any], fmt: str) -> None:
    """Print JSON lines (one object per line) or one pretty JSON document."""
    if fmt == "jsonl":
        for rec in records if isinstance(records, list) else [records]:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    elif fmt == "json":
        sys.stdout.write(json.dumps(records, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        raise ConfigError(f"--format: unknown format {fmt!r}; use jsonl or json")
    sys.stdout.flush()
