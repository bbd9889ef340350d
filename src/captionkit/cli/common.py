"""Options shared by several commands, and turning them into a :class:`RunConfig`."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from captionkit.config import RunConfig
from captionkit.errors import ConfigError

# Typer options are declared once here and reused, so the same flag means the same thing everywhere.
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML file whose keys mirror these flags (flags win).")
MapOpt = typer.Option(
    None, "--map", "-m", metavar="FIELD=COLUMN",
    help="Map a dataset column to an item field: id, media, reference or metadata.NAME. Repeatable.",
)
SheetOpt = typer.Option(None, "--sheet", help="Sheet of an .xlsx file (default: the first).")
FramesOpt = typer.Option(None, "--frames", min=1, help="Frames to sample from a video or GIF (uniform policy). [default: 8]")
PolicyOpt = typer.Option(None, "--frame-policy", help="uniform (N frames by seeking), interval (every --every s) or scene (keyframes at scene changes). [default: uniform]")
EveryOpt = typer.Option(None, "--every", min=0.01, help="Seconds between frames for --frame-policy interval. [default: 2]")
SceneOpt = typer.Option(None, "--scene-threshold", min=0.0, max=2.0, help="Histogram distance that counts as a scene change. [default: 0.35]")
TimeoutOpt = typer.Option(None, "--timeout", min=0.1, help="Seconds per download attempt. [default: 20]")
RetriesOpt = typer.Option(None, "--retries", min=0, help="Extra download attempts after timeouts and 5xx. [default: 3]")
MaxMbOpt = typer.Option(None, "--max-download-mb", min=0.001, help="Refuse downloads larger than this. [default: 200]")


def build_config(
    config: Optional[Path] = None,
    *,
    maps: Optional[list[str]] = None,
    frames: Optional[int] = None,
    frame_policy: Optional[str] = None,
    every: Optional[float] = None,
    scene_threshold: Optional[float] = None,
    timeout: Optional[float] = None,
    retries: Optional[int] = None,
    max_download_mb: Optional[float] = None,
    **top: Any,
) -> RunConfig:
    """The YAML config (or defaults) with the command-line flags laid over it."""
    cfg = RunConfig.from_yaml(config) if config else RunConfig()
    frame_changes = _given(mode=frame_policy, n=frames, every=every, threshold=scene_threshold)
    fetch_changes = _given(
        timeout=timeout, retries=retries, max_bytes=int(max_download_mb * 2**20) if max_download_mb else None
    )
    changes: dict[str, Any] = _given(**top)
    if frame_changes:
        changes["frames"] = _replace(cfg.frames, frame_changes, "--frame-policy/--frames/--every/--scene-threshold")
    if fetch_changes:
        changes["fetch"] = _replace(cfg.fetch, fetch_changes, "--timeout/--retries/--max-download-mb")
    if maps:
        changes["mapping"] = cfg.mapping.with_overrides(maps)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _replace(obj: Any, changes: dict[str, Any], flags: str) -> Any:
    try:
        return dataclasses.replace(obj, **changes)
    except (TypeError, ValueError) as exc:
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
