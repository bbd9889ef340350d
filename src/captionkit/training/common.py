"""What every trainer's config shares: YAML presets with CLI overrides, and refusal of unknown keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from captionkit.errors import ConfigError

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
C = TypeVar("C", bound="TrainConfig")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def read_yaml_preset(preset: str | Path, known: list[str]) -> dict[str, Any]:
    """A preset's keys: ``preset`` is a name in ``training/presets`` or a YAML file. Unknown keys raise."""
    import yaml

    path = Path(preset).expanduser()
    if not path.is_file():
        named = PRESETS_DIR / f"{preset}.yaml"
        if not named.is_file():
            raise ConfigError(f"--preset {preset}: no such file, and not a preset name; presets: "
                              f"{', '.join(preset_names())}")
        path = named
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--preset {path}: cannot read it as YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--preset {path}: must hold a mapping of settings, not {type(values).__name__}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"--preset {path}: unknown key(s) {', '.join(map(str, unknown))}; known keys: "
                          f"{', '.join(known)}")
    return values


class TrainConfig:
    """Mixin for the trainers' config dataclasses."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: "
                              f"{', '.join(cls.field_names())}")
        return cls(**values)

    @classmethod
    def from_preset(cls: type[C], preset: str | Path | None = None, **overrides: Any) -> C:
        """A preset (a name in ``training/presets`` or a YAML file) with ``overrides`` (None values ignored)."""
        values = read_yaml_preset(preset, cls.field_names()) if preset else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, source=f"--preset {preset}" if preset else "config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


LOWER_IS_BETTER = {"loss", "val_loss"}


def better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def log_step(row: dict[str, Any], history: list[dict[str, Any]], metrics: Any, bar: Any) -> None:
    """Record one optimizer step: the in-memory history, metrics.csv/jsonl, and the progress bar."""
    history.append(row)
    metrics.step(row)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}")


def record_eval(scores: dict[str, Any], *, step: int, epoch: int, metric: str, best_value: float | None,
                evals: list[dict[str, Any]], metrics: Any, save_best: Any, out: Path) -> tuple[float | None, bool]:
    """Log an epoch's evaluation and keep ``out/best`` when ``metric`` improved: (best value, improved?)."""
    import json

    scores.update(step=step, epoch=epoch)
    evals.append({k: v for k, v in scores.items() if k != "samples"})
    metrics.eval(scores)
    key = "val_loss" if metric in LOWER_IS_BETTER else metric
    value = scores.get(key)
    if value is None:
        raise ConfigError(f"--best-metric {metric!r}: evaluation has no such metric; it has "
                          f"{', '.join(k for k in scores if k != 'samples')}")
    if not better(metric, value, best_value):
        return best_value, False
    save_best(out / "best")
    (out / "best" / "best.json").write_text(json.dumps(
        {"step": step, "epoch": epoch, "metric": metric, "value": value}) + "\n")
    return value, True
