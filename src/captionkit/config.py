"""Run configuration: one typed record, loadable from YAML, whose keys mirror the CLI flags.

``captionkit run --config run.yaml`` reads it; flags given on the command line override it.
Unknown keys and bad values raise :class:`ConfigError` naming the key, so typos never pass silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from captionkit.errors import ConfigError
from captionkit.io.mapping import ColumnMapping
from captionkit.media.fetch import FetchPolicy
from captionkit.media.types import FramePolicy, ImageLimits
from captionkit.models.settings import CaptionSettings, OCRSettings, SpeechSettings, WriteSettings

DESCRIBE_STAGES = ("media", "facts", "caption", "ocr", "transcribe")
ENGINES = ("local", "ray")
DEFAULT_STAGES = (*DESCRIBE_STAGES, "write")


RAY_FLAGS = {"address": "--address", "actors": "--ray-actors", "batch_size": "--ray-batch-size", "num_gpus": "--ray-gpus"}


@dataclass
class RaySettings:
    """Where ``--engine ray`` runs and how it spreads the work. Not in the fingerprint: like ``engine``, these
    change how items are processed, never what comes out, so a run may resume with other values."""

    address: str | None = None  # --address: ray://host:10001, host:6379, auto, local; None: $RAY_ADDRESS, else a running local cluster, else a new one
    actors: int | None = None  # --ray-actors: pipelines (model copies) at work; default: one per GPU, else one per num_cpus CPUs
    batch_size: int | None = None  # --ray-batch-size: items per actor call; default: the pipeline's batch size
    num_cpus: float = 1.0  # CPUs reserved per actor
    num_gpus: float | None = None  # --ray-gpus: GPUs per actor (0.5 = two actors share one); default: 1 when the cluster has GPUs
    connect_timeout: float = 10.0  # seconds an --address may take to answer; a cluster silent this long mid-run is lost

    def __post_init__(self) -> None:
        for name, flag in (("actors", "--ray-actors"), ("batch_size", "--ray-batch-size")):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"ray: {name} ({flag}) must be >= 1 (got {value})")
        if self.num_cpus < 0 or (self.num_gpus is not None and self.num_gpus < 0):
            raise ConfigError("ray: num_cpus and num_gpus (--ray-gpus) must be >= 0")
        if not self.connect_timeout > 0:
            raise ConfigError(f"ray: connect_timeout must be > 0 (got {self.connect_timeout})")


# YAML sections that map onto a settings record each.
SECTIONS: dict[str, type] = {
    "frames": FramePolicy, "fetch": FetchPolicy, "limits": ImageLimits,
    "caption": CaptionSettings, "ocr": OCRSettings, "speech": SpeechSettings, "write": WriteSettings,
    "ray": RaySettings,
}


@dataclass
class RunConfig:
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    frames: FramePolicy = field(default_factory=FramePolicy)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    limits: ImageLimits = field(default_factory=ImageLimits)
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    caption: CaptionSettings = field(default_factory=CaptionSettings)
    ocr: OCRSettings = field(default_factory=OCRSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    write: WriteSettings = field(default_factory=WriteSettings)
    formats: list[str] = field(default_factory=lambda: ["jsonl"])
    max_attempts: int = 3  # an item that failed this many times is final and not retried on rerun
    engine: str = "local"  # --engine: local (this process) or ray (a Ray cluster); a run may resume on either
    ray: RaySettings = field(default_factory=RaySettings)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine (--engine) must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts (--max-attempts) must be >= 1")
        if not self.stages:
            raise ConfigError("stages (--stages) must name at least one stage")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        data = dict(data or {})
        _reject_unknown(data, {f.name for f in dataclasses.fields(cls)} | {"map"}, source)
        kwargs: dict[str, Any] = {}
        for key, sub in SECTIONS.items():
            if key in data:
                kwargs[key] = _build(sub, data.pop(key), f"{source}: {key}")
        mapping = data.pop("map", None) or data.pop("mapping", None)
        if mapping is not None:
            kwargs["mapping"] = ColumnMapping.from_dict(mapping)
        for key in ("stages", "formats"):
            if key in data:
                kwargs[key] = _as_list(data.pop(key), f"{source}: {key}")
        kwargs.update(data)
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(read_yaml_mapping(path), source=str(path))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with top-level fields replaced; nested policies are replaced via ``frames=...`` etc."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def with_engine(self, engine: str | None = None, **ray: Any) -> RunConfig:
        """A copy with ``engine`` and the given Ray settings (``address``, ``actors``, ``batch_size``,
        ``num_gpus``; None: unchanged) laid over it; Ray settings without the Ray engine are a mistake."""
        cfg = self if engine is None else dataclasses.replace(self, engine=engine.strip().lower())
        given = {k: v for k, v in ray.items() if v is not None}
        if not given:
            return cfg
        if cfg.engine != "ray":
            flags = ", ".join(RAY_FLAGS.get(k, k) for k in given)
            raise ConfigError(f"{flags}: only used by --engine ray; add --engine ray")
        return dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, **given))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def fingerprint(self) -> str:
        """Hash of what changes the outputs: a resumed run must use the same stages, frames and mapping.

        ``engine``, ``ray``, ``fetch``, ``formats`` and ``max_attempts`` are left out on purpose: they change how
        the items are processed or saved, not what each result holds."""
        d = self.to_dict()
        relevant = {k: d[k] for k in ("stages", "frames", "limits", "mapping", "caption", "ocr", "speech", "write")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _reject_unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    _reject_unknown(data, {f.name for f in dataclasses.fields(cls)}, where)
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _as_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise ConfigError(f"{where} must be a list or a comma-separated string")


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping a ``--config`` YAML file holds; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of keys to values, not {type(data).__name__}")
    return data
