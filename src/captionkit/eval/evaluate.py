"""``evaluate``: score one or more systems against references with the chosen metric families.

The same function serves ``captionkit eval`` and the trainers' per-epoch evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, DatasetError
from captionkit.eval.types import EvalResult, SystemScores

log = logging.getLogger("captionkit")

# Metric families: "coco" (BLEU-1..4, METEOR, ROUGE-L, CIDEr), "embed" (sentence-embedding similarity),
# "clip" (CLIPScore/RefCLIPScore, needs media), "bertscore", "sacrebleu" (sacreBLEU, chrF), "posts" (checks).
FAMILIES = ("coco", "embed", "clip", "bertscore", "sacrebleu", "posts")
DEFAULT_FAMILIES = ("coco",)


def evaluate(
    predictions: Mapping[str, Mapping[str, str | list[str]]],
    references: Mapping[str, Sequence[str]],
    *,
    metrics: Sequence[str] = DEFAULT_FAMILIES,
    media: Mapping[str, str] | None = None,
    ocr: Mapping[str, str] | None = None,
    platform: str | None = None,
    embedder: str | None = None,
    clip_model: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> EvalResult:
    """Score each system (name -> id -> text, or -> candidate texts) on the ids it shares with the references.

    Items missing on either side are reported in ``result.missing``, never silently dropped; metrics that
    cannot run (no Java for METEOR, no media for CLIPScore, a missing extra) are listed with the reason in
    ``result.unavailable``.
    """
    unknown = [m for m in metrics if m not in FAMILIES]
    if unknown:
        raise ConfigError(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    if not predictions:
        raise ConfigError("--predictions: give at least one system to score")
    refs = {k: [r for r in v if r is not None] for k, v in references.items() if v}
    if not refs:
        raise DatasetError("--references: no reference texts found")
    missing = {name: {"no_prediction": sorted(set(refs) - set(p)), "no_reference": sorted(set(p) - set(refs))}
               for name, p in predictions.items()}
    ids = [i for i in refs if all(i in p for p in predictions.values())]
    if not ids:
        raise DatasetError("no item has both a reference and a prediction from every system: check that the ids match")
    result = EvalResult(systems=[], ids=ids, references={i: list(refs[i]) for i in ids},
                        predictions={name: {i: _first(p[i]) for i in ids} for name, p in predictions.items()},
                        missing=missing, media=dict(media or {}))
    for name, preds in predictions.items():
        system = SystemScores(name=name)
        texts = {i: _first(preds[i]) for i in ids}
        system.extras["empty_predictions"] = sum(1 for t in texts.values() if not t.strip())
        for family in metrics:
            _score_family(family, system, texts, {i: preds[i] for i in ids}, result, ocr=ocr, platform=platform,
                          embedder=embedder, clip_model=clip_model)
        _add_cis(system, n_resamples, seed)
        result.systems.append(system)
    return result


def _first(value: str | list[str]) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def _score_family(family: str, system: SystemScores, texts: dict[str, str], raw: dict[str, Any], result: EvalResult,
                  **kw: Any) -> None:
    refs = result.references
    if family == "coco":
        from captionkit.eval.coco import coco_scores

        corpus, per_item, unavailable = coco_scores(refs, texts)
        system.corpus.update(corpus)
        system.per_item.update(per_item)
        result.unavailable.update(unavailable)
    elif family == "embed":
        from captionkit.eval.semantic import embedding_similarity

        mean, per_item = embedding_similarity(texts, refs, kw["embedder"])
        system.corpus["EmbedSim"] = mean
        system.per_item["EmbedSim"] = per_item
    elif family == "clip":
        _clip(system, texts, result, kw["clip_model"])
    elif family == "bertscore":
        from captionkit.eval.semantic import bertscore

        scored = bertscore(texts, refs)
        if scored.corpus is None:
            result.unavailable["BERTScore"] = scored.reason or "not computed"
        else:
            system.corpus["BERTScore"] = scored.corpus
            system.per_item["BERTScore"] = scored.per_item
    elif family == "sacrebleu":
        from captionkit.eval.semantic import sacrebleu_scores

        corpus, per_item = sacrebleu_scores(texts, refs)
        system.corpus.update(corpus)
        system.per_item.update(per_item)
    elif family == "posts":
        from captionkit.eval.posts import METRICS, post_checks

        candidates = {i: v if isinstance(v, list) else [v] for i, v in raw.items()}
        checked = post_checks(candidates, platform=kw["platform"] or "x", ocr_text=kw["ocr"])
        figures = {k: checked[k] for k in METRICS if k in checked}
        system.extras["posts"] = {**figures, "platform": checked.get("platform"), "repeated": checked.get("repeated")}
        system.corpus.update({f"post:{k}": v for k, v in figures.items() if isinstance(v, (int, float))})
        system.per_item.update({f"post:{k}": v for k, v in checked.get("per_item", {}).items()})


def _clip(system: SystemScores, texts: dict[str, str], result: EvalResult, model: str | None) -> None:
    images = {i: p for i, p in result.media.items() if i in texts and Path(p).exists()}
    if not images:
        result.unavailable["CLIPScore"] = "no media for the scored items (pass --media with a captionkit run output)"
        return
    from captionkit.eval.semantic import clip_score

    kwargs = {"model": model} if model else {}
    scored = clip_score({i: texts[i] for i in images}, images, result.references, **kwargs)
    for key in ("CLIPScore", "RefCLIPScore"):
        if scored.get(key) is not None:
            system.corpus[key] = scored[key]
            system.per_item[key] = scored["per_item"][key]
    system.extras["clip"] = {"model": scored.get("model"), "windowed": scored.get("windowed"),
                             "skipped": len(scored.get("skipped") or {})}


def _add_cis(system: SystemScores, n_resamples: int, seed: int) -> None:
    if n_resamples < 1:  # --bootstrap 0: no intervals
        return
    from captionkit.eval.stats import bootstrap_ci

    for metric, values in system.per_item.items():
        vals = [v for v in values.values() if v is not None]
        corpus = system.corpus.get(metric)
        # Resampling per-item values gives an interval for their mean; where the reported figure is not that
        # mean (corpus BLEU, METEOR's jar figure, sacreBLEU, chrF, pooled distinct-n) it would sit beside the
        # figure, not around it, so no interval is claimed for those.
        if len(vals) >= 2 and corpus is not None and abs(corpus - sum(vals) / len(vals)) <= 1e-9 * max(1.0, abs(corpus)):
            system.ci[metric] = bootstrap_ci(vals, n_resamples=n_resamples, seed=seed)
