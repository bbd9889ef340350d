"""Plain records of an evaluation: what each system scored, overall and per item."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SystemScores:
    """One system's scores. ``corpus`` holds the reported figure per metric (for BLEU/CIDEr the corpus-level
    value pycocoevalcap reports); ``per_item`` the per-item values used for CIs, plots and the item table."""

    name: str
    corpus: dict[str, float] = field(default_factory=dict)
    per_item: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> id -> value
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (low, high), 95 % bootstrap
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. post checks summary

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metrics": self.corpus, "ci95": {k: list(v) for k, v in self.ci.items()},
                **({"extras": self.extras} if self.extras else {})}


@dataclass
class EvalResult:
    systems: list[SystemScores]
    ids: list[str]  # items scored (present in the references and in every system)
    references: dict[str, list[str]]
    predictions: dict[str, dict[str, str]]  # system -> id -> text
    missing: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # system -> {"no_prediction", "no_reference"}
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    media: dict[str, str] = field(default_factory=dict)  # id -> local media path (thumbnails in the report)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": len(self.ids),
            "systems": {s.name: {**s.corpus} for s in self.systems},
            "ci95": {s.name: {k: list(v) for k, v in s.ci.items()} for s in self.systems},
            "extras": {s.name: s.extras for s in self.systems if s.extras},
            "missing": {name: {k: len(v) for k, v in m.items()} for name, m in self.missing.items()},
            "missing_ids": self.missing,
            "unavailable": self.unavailable,
        }
