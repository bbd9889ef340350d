"""What every trainer shares: YAML presets with CLI overrides (unknown keys refused), the run outputs
(metrics.csv/jsonl, eval.jsonl, checkpoint-<step>/, best/, final/) and :class:`TrainLoop`, the one training loop
the writer, captioner and projector trainers drive with their own data, model, loss and evaluation."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from captionkit.errors import ConfigError

log = logging.getLogger("captionkit")

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.pt"
CONFIG_FILE = "train_config.json"
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

    def check_at_least(self, minimum: int, *names: str) -> None:
        """Each named field (unset = None is fine) is >= ``minimum``, else a ConfigError naming its flag."""
        for name in names:
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {minimum} (got {value})")


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


# ------------------------------------------------------------------------------------------------ run outputs


@dataclass
class TrainResult:
    output_dir: Path
    final: Path
    best: Path | None
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per optimizer step
    evals: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch evaluation


class MetricsLog:
    """Per-step rows to metrics.csv + metrics.jsonl (+ TensorBoard); eval rows to eval.jsonl."""

    COLUMNS = ("step", "epoch", "loss", "lr", "grad_norm")

    def __init__(self, out: Path, resume_step: int) -> None:
        self.out = out
        self.jsonl, self.csv, self.evals = out / "metrics.jsonl", out / "metrics.csv", out / "eval.jsonl"
        for path in (self.jsonl, self.evals):  # drop rows past the checkpoint we resume from
            self._truncate(path, resume_step)
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines()] if self.jsonl.exists() else []
        with self.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.COLUMNS)
            writer.writeheader()
            writer.writerows({k: r.get(k) for k in self.COLUMNS} for r in rows)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:
            pass

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        if not path.exists():
            return
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))

    def step(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        with self.csv.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.COLUMNS).writerow({k: row.get(k) for k in self.COLUMNS})
        if self.tb:
            for key in ("loss", "lr", "grad_norm"):
                self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def eval(self, row: dict[str, Any]) -> None:
        with self.evals.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"val/{key}", value, row["step"])

    def close(self) -> None:
        if self.tb:
            self.tb.close()


# ------------------------------------------------------------------------------------------------ loop parts


def make_scheduler(cfg: Any, optimizer: Any, total_steps: int) -> Any:
    """Linear warmup over ``cfg.warmup_ratio`` of the steps, then ``cfg.scheduler`` (cosine, linear or constant)."""
    import torch

    warmup = math.ceil(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled row order of one epoch: a function of (seed, epoch) only, so resume replays it."""
    import torch

    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=gen).tolist()


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out: Path) -> Path | None:
    found = [(int(p.name[len(CHECKPOINT_PREFIX):]), p) for p in out.glob(f"{CHECKPOINT_PREFIX}*")
             if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_FILE).is_file()]
    return max(found)[1] if found else None


def _prune(out: Path, limit: int | None) -> None:
    if not limit:
        return
    found = sorted((int(p.name[len(CHECKPOINT_PREFIX):]), p) for p in out.glob(f"{CHECKPOINT_PREFIX}*")
                   if p.name[len(CHECKPOINT_PREFIX):].isdigit())
    for _, path in found[:-limit]:
        shutil.rmtree(path, ignore_errors=True)


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def trainable_params(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def prepare_output(cfg: Any) -> Path | None:
    """Check ``cfg.output_dir`` (one holding checkpoints is refused unless ``cfg.resume``), write train_config.json
    and seed python and torch: the checkpoint to resume from, or None."""
    import torch

    out = Path(cfg.output_dir or "").expanduser()
    resume_from = latest_checkpoint(out) if cfg.resume else None
    if cfg.resume and resume_from is None:
        log.warning("--resume: no checkpoint in %s; starting from scratch", out)
    if not cfg.resume and out.exists() and any(out.glob(f"{CHECKPOINT_PREFIX}*")):
        raise ConfigError(f"--out {out}: already holds checkpoints; pass --resume to continue that run, or "
                          "choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    return resume_from


# ------------------------------------------------------------------------------------------------ the loop


@dataclass
class RunState:
    """Where a run stands; the SAVED fields go into every checkpoint's training_state.pt."""

    total_steps: int
    step: int = 0
    epoch: int = 0
    unit_in_epoch: int = 0  # optimizer steps already taken in ``epoch`` (resume skips those units)
    best_value: float | None = None
    bad_epochs: int = 0  # evaluations since best_metric last improved (early stopping)
    stopped_early: bool = False
    evals: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # this process's steps only


SAVED = ("step", "epoch", "unit_in_epoch", "best_value", "bad_epochs", "stopped_early", "evals")


Unit = list[list[int]]  # one optimizer step's data: grad_accum batches of row indices


@dataclass
class TrainLoop:
    """The training loop every trainer runs; the trainer supplies what is its own as callables.

    Each epoch shuffles the ``n_rows`` rows (:func:`epoch_order`), cuts them into batches of ``cfg.batch_size``
    and those into units of ``cfg.grad_accum`` batches (1 without that setting). ``train_unit(unit, state)``
    runs forward and backward over a unit and returns (loss, extra log fields); the loop clips ``params`` to
    ``cfg.max_grad_norm``, steps the optimizer and the :func:`make_scheduler` schedule, and logs the row. After
    each epoch it runs ``evaluate`` (when given), keeps ``best/`` by ``metric`` and stops once
    ``cfg.early_stopping_patience`` evaluations in a row did not improve; it checkpoints then, every
    ``cfg.save_steps`` and at the last step, and finally writes ``final/``. ``save_model`` writes best/ and
    final/, ``save_checkpoint``/``load_checkpoint`` the model part of a checkpoint-<step>/ folder. An
    out-of-memory error in a unit becomes ``oom_error("training")`` when that is given.
    """

    cfg: Any  # the trainer's config (TrainConfig)
    desc: str  # progress bar label
    n_rows: int
    params: list[Any]
    optimizer: Any
    train_unit: Callable[[Unit, RunState], tuple[float, dict[str, Any]]]
    save_model: Callable[[Path], Any]
    save_checkpoint: Callable[[Path], Any]
    load_checkpoint: Callable[[Path], Any]
    evaluate: Callable[[], dict[str, Any]] | None = None
    metric: str = "CIDEr"
    oom_error: Callable[[str], Exception] | None = None
    resume_from: Path | None = None  # prepare_output's answer

    def __post_init__(self) -> None:
        self.out = Path(self.cfg.output_dir or "").expanduser()
        self.accum = getattr(self.cfg, "grad_accum", 1)
        per_epoch = math.ceil(math.ceil(self.n_rows / self.cfg.batch_size) / self.accum)
        self.state = RunState(self.cfg.max_steps or per_epoch * self.cfg.epochs)
        self.scheduler = make_scheduler(self.cfg, self.optimizer, self.state.total_steps)
        self.metrics: Any = None
        self.bar: Any = None

    def run(self) -> TrainResult:
        """Train (from ``resume_from`` when given) to ``total_steps`` or early stopping, then write final/."""
        s = self.state
        if self.resume_from is not None:
            self._resume(self.resume_from)
        self.metrics = MetricsLog(self.out, s.step)
        if self.cfg.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=s.total_steps, initial=s.step, desc=self.desc, unit="step", disable=None)
        try:
            while s.step < s.total_steps and not s.stopped_early:
                self._epoch()
        finally:
            if self.bar is not None:
                self.bar.close()
            self.metrics.close()
        self.save_model(self.out / "final")
        best = self.out / "best"
        return TrainResult(output_dir=self.out, final=self.out / "final", best=best if best.is_dir() else None,
                           steps=s.step, history=s.history, evals=s.evals)

    def _epoch(self) -> None:
        s, size = self.state, self.cfg.batch_size
        order = epoch_order(self.n_rows, self.cfg.seed, s.epoch)
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        units = [batches[i:i + self.accum] for i in range(0, len(batches), self.accum)]
        save_steps = getattr(self.cfg, "save_steps", None)
        for unit in units[s.unit_in_epoch:]:
            if s.step >= s.total_steps:
                return
            self._step(unit, len(units))
            if s.unit_in_epoch >= len(units):  # end of the epoch
                s.epoch, s.unit_in_epoch = s.epoch + 1, 0
                if self.evaluate is not None:
                    self._record(self.evaluate())
                self.checkpoint()
                return
            if (save_steps and s.step % save_steps == 0) or s.step >= s.total_steps:
                self.checkpoint()

    def _step(self, unit: Unit, n_units: int) -> None:
        import torch

        s = self.state
        try:
            loss, extra = self.train_unit(unit, s)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        except (RuntimeError, MemoryError) as exc:
            if self.oom_error is not None and is_oom(exc):
                raise self.oom_error("training") from None
            raise
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        s.step, s.unit_in_epoch = s.step + 1, s.unit_in_epoch + 1
        row = {"step": s.step, "epoch": round(s.epoch + s.unit_in_epoch / n_units, 4), "loss": loss, "lr": lr,
               "grad_norm": float(grad_norm), **extra}
        log_step(row, s.history, self.metrics, self.bar)

    def _record(self, scores: dict[str, Any]) -> None:
        s = self.state
        s.best_value, improved = record_eval(scores, step=s.step, epoch=s.epoch, metric=self.metric,
                                             best_value=s.best_value, evals=s.evals, metrics=self.metrics,
                                             save_best=self.save_model, out=self.out)
        s.bad_epochs = 0 if improved else s.bad_epochs + 1
        patience = getattr(self.cfg, "early_stopping_patience", None)
        if patience and s.bad_epochs >= patience:
            s.stopped_early = True
            log.info("early stopping: %s did not improve for %d epoch(s)", self.metric, s.bad_epochs)

    def checkpoint(self) -> Path:
        """checkpoint-<step>/: the model (``save_checkpoint``) and training_state.pt; older ones pruned."""
        import torch

        folder = self.out / f"{CHECKPOINT_PREFIX}{self.state.step}"
        folder.mkdir(parents=True, exist_ok=True)
        self.save_checkpoint(folder)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "rng": _rng_state(), **{k: getattr(self.state, k) for k in SAVED}, "config": self.cfg.to_dict()},
                   folder / STATE_FILE)
        _prune(self.out, self.cfg.save_total_limit)
        return folder

    def _resume(self, folder: Path) -> None:
        import torch

        saved = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
        self.load_checkpoint(folder)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if "unit_in_epoch" not in saved:  # written before the loop was shared: the trainer's own name
            saved["unit_in_epoch"] = saved.get("window_in_epoch", saved.get("batch_in_epoch"))
        for key in SAVED:
            if saved.get(key) is not None:
                setattr(self.state, key, saved[key])
        _set_rng_state(saved["rng"])
        log.info("resuming from %s (step %d)", folder, self.state.step)
