"""Fine-tune an image captioner (VisionEncoderDecoder such as ViT+GPT-2, BLIP, or GIT) on image/caption pairs.

Data: a JSONL or CSV file (columns ``image``/``file``/``file_name``, ``caption``/``text``, optional
``references`` list and ``split``) with image paths relative to ``images_dir`` (default: the file's folder), or a
COCO captions file (``images`` + ``annotations``; the first annotation of an image is its training caption, all of
them its references). Rows whose image cannot be read are skipped and counted (``TrainResult.skipped_images``);
rows missing fields raise DatasetError naming them. Without ``val_data`` the rows with split ``val`` validate.

Training is teacher forcing (cross-entropy on ``[start] caption [eos]``; with ``targets: references`` each image
is trained on one of its references drawn anew each epoch, as COCO training does), optionally with scheduled sampling
(a share of gold input tokens replaced by the model's own greedy predictions from a first, gradient-free pass),
light augmentation (small random resized crop and colour jitter; horizontal flip only when asked, since captions
name positions), freezing (encoder, decoder, or all decoder blocks but the last N), and self-critical sequence
training (SCST: K sampled captions per image drawn with dropout off, the greedy caption as baseline (or, with
``scst_baseline: mean``, the mean reward of the image's other samples), reward CIDEr-D with document
frequencies from the training references, loss ``-(r_sample - baseline) * logprob(sample)``, mixed with
cross-entropy by a weight going linearly from ``scst_weight_start`` to ``scst_weight_end``).

Outputs mirror the writer trainer: metrics.csv/jsonl, eval.jsonl, ``checkpoint-<step>/`` (model + processor +
training state, so ``resume`` continues the same trajectory), ``best/`` by ``best_metric`` with early stopping, and
``final/``; both load with ``captionkit describe --captioner <folder>``. Validation captions come from the backend
captioner (``captionkit.captioners``) built on the saved folder, running the in-memory model, with the describe
stage's GenerationOptions, and are scored by ``captionkit.eval.evaluate``.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, DatasetError
from captionkit.io.jsonl import json_objects
from captionkit.training.common import RunState, TrainConfig, TrainLoop, prepare_output, trainable_params
from captionkit.training.writer import SCHEDULERS, model_source, resolve_device

log = logging.getLogger("captionkit")

FREEZE: tuple[str, ...] = ("none", "encoder", "decoder")
BACKENDS: tuple[str, ...] = ("vision_encoder_decoder", "blip", "git")
VAL_SPLITS = {"val", "validation", "dev"}
SCST_BASELINES: tuple[str, ...] = ("greedy", "mean")
TARGETS: tuple[str, ...] = ("caption", "references")
IMAGE_KEYS = ("image", "file", "file_name", "path")
CAPTION_KEYS = ("caption", "text")
COCO_REWARDS = {"CIDEr": "CIDEr", "CIDEr-D": "CIDEr", "ROUGE-L": "ROUGE-L", "METEOR": "METEOR",
                **{f"BLEU-{k}": "BLEU" for k in range(1, 5)}}


# ------------------------------------------------------------------------------------------------ config


@dataclass
class CaptionerTrainConfig(TrainConfig):
    """One captioner training run. ``from_preset`` takes a YAML file of these keys plus overrides."""

    data: str | None = None
    model: str | None = None
    output_dir: str | None = None
    images_dir: str | None = None  # None: the data file's folder
    val_data: str | None = None  # None: rows with split val in ``data``
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 5e-5
    warmup_ratio: float = 0.0
    scheduler: str = "linear"
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    max_length: int = 40  # caption tokens including start and end
    freeze: str = "none"
    train_last_n_decoder_blocks: int | None = None
    targets: str = "caption"  # caption (each image's caption) or references (a random reference per image per epoch)
    scheduled_sampling: float = 0.0
    augment: bool = False
    augment_hflip: bool = False
    early_stopping_patience: int | None = None
    best_metric: str = "CIDEr"
    scst: bool = False
    scst_samples: int = 4
    scst_top_p: float = 0.9
    scst_reward: str = "CIDEr"  # CIDEr (CIDEr-D) or BLEU-1..4, ROUGE-L, METEOR (per-item coco scores)
    scst_baseline: str = "greedy"  # greedy (Rennie et al. 2017) or mean (of the image's other samples; Luo 2020)
    scst_weight_start: float = 1.0
    scst_weight_end: float = 1.0
    scst_max_new_tokens: int = 20
    eval_every_epoch: bool = True
    eval_max_new_tokens: int = 20
    eval_max_items: int | None = None
    eval_metrics: list[str] | None = None  # None: every coco metric; or a subset of BLEU, METEOR, ROUGE-L, CIDEr
    seed: int = 0
    device: str = "auto"
    save_total_limit: int | None = 2
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("--data: give the captions file (JSONL, CSV or COCO captions JSON)")
        if not self.model:
            raise ConfigError("--model: give the captioner to fine-tune (hub id or folder)")
        if not self.output_dir:
            raise ConfigError("--out: give the output folder")
        if self.freeze not in FREEZE:
            raise ConfigError(f"--freeze {self.freeze!r}: use one of {', '.join(FREEZE)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler {self.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
        self.check_at_least(1, "epochs", "batch_size", "max_length", "scst_samples", "eval_max_new_tokens",
                            "scst_max_new_tokens", "max_steps", "eval_max_items", "early_stopping_patience")
        self.check_at_least(0, "train_last_n_decoder_blocks")
        if self.max_length < 3:
            raise ConfigError(f"--max-length must be >= 3 (got {self.max_length})")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")
        if not 0 <= self.scheduled_sampling <= 1:
            raise ConfigError(f"--scheduled-sampling must be in [0, 1] (got {self.scheduled_sampling})")
        if not 0 < self.scst_top_p <= 1:
            raise ConfigError(f"--scst-top-p must be in (0, 1] (got {self.scst_top_p})")
        for name in ("scst_weight_start", "scst_weight_end"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.targets not in TARGETS:
            raise ConfigError(f"--targets {self.targets!r}: use one of {', '.join(TARGETS)}")
        if self.scst_baseline not in SCST_BASELINES:
            raise ConfigError(f"--scst-baseline {self.scst_baseline!r}: use one of {', '.join(SCST_BASELINES)}")
        if self.scst_baseline == "mean" and self.scst_samples < 2:
            raise ConfigError("--scst-baseline mean needs --scst-samples >= 2 (the baseline is the other samples' mean)")
        if self.scst_reward not in COCO_REWARDS:
            raise ConfigError(f"--scst-reward {self.scst_reward!r}: use one of {', '.join(COCO_REWARDS)}")


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Pair:
    id: str
    image: str  # path as given
    caption: str
    references: list[str]
    split: str | None = None


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if row.get(key) not in (None, ""):
            return row[key]
    return None


def _row_pair(row: dict[str, Any], where: str, index: int) -> Pair:
    image, caption = _first(row, IMAGE_KEYS), _first(row, CAPTION_KEYS)
    refs = row.get("references")
    if isinstance(refs, str):
        try:
            refs = json.loads(refs) if refs.strip().startswith("[") else [r for r in refs.split("|") if r.strip()]
        except ValueError:
            refs = [refs]
    if caption is None and isinstance(refs, list) and refs:
        caption = refs[0]
    missing = [name for name, value in (("image (or file)", image), ("caption (or text)", caption)) if value is None]
    if missing:
        raise DatasetError(f"{where}: missing field(s) {', '.join(missing)}; rows need an image path "
                           f"({'/'.join(IMAGE_KEYS)}) and a caption ({'/'.join(CAPTION_KEYS)}); has: "
                           f"{', '.join(map(str, row)) or 'nothing'}")
    refs = [str(r) for r in refs] if isinstance(refs, list) and refs else [str(caption)]
    return Pair(str(row.get("id", index)), str(image), str(caption), refs, row.get("split") or None)


def read_pairs(path: str | Path) -> list[Pair]:
    """Image/caption pairs from JSONL, CSV or a COCO captions JSON; DatasetError names missing fields."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"--data {path}: no such file")
    pairs: list[Pair] = []
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.DictReader(fh), 2):
                pairs.append(_row_pair(row, f"{path}:{lineno}", lineno))
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DatasetError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            missing = [k for k in ("images", "annotations") if not isinstance(data, dict) or k not in data]
            raise DatasetError(f"{path}: a COCO captions file needs images and annotations; missing {', '.join(missing)}")
        caps: dict[Any, list[str]] = {}
        for k, ann in enumerate(data["annotations"]):
            if "image_id" not in ann or "caption" not in ann:
                raise DatasetError(f"{path}: annotation {k} misses "
                                   f"{', '.join(f for f in ('image_id', 'caption') if f not in ann)}")
            caps.setdefault(ann["image_id"], []).append(str(ann["caption"]))
        for k, img in enumerate(data["images"]):
            if "id" not in img or "file_name" not in img:
                raise DatasetError(f"{path}: image {k} misses {', '.join(f for f in ('id', 'file_name') if f not in img)}")
            refs = caps.get(img["id"])
            if refs:
                pairs.append(Pair(str(img.get("item_id", img["id"])), img["file_name"], refs[0], refs,
                                  img.get("split")))
    else:
        for lineno, row in json_objects(path):
            pairs.append(_row_pair(row, f"{path}:{lineno}", lineno))
    if not pairs:
        raise DatasetError(f"{path}: holds no image/caption pairs")
    return pairs


def load_images(pairs: list[Pair], root: Path) -> tuple[list[Pair], list[Any], list[str]]:
    """(kept pairs, their RGB images, reasons for the skipped ones): unreadable images never stop the run."""
    from PIL import Image

    kept, images, skipped = [], [], []
    for pair in pairs:
        path = Path(pair.image).expanduser()
        path = path if path.is_absolute() else root / path
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
            kept.append(pair)
        except Exception as exc:  # missing, truncated, not an image: skipped and counted
            skipped.append(f"{pair.id}: {path} ({type(exc).__name__})")
    if skipped:
        log.warning("skipped %d image(s) that could not be read, e.g. %s", len(skipped), skipped[0])
    return kept, images, skipped


def augment_image(image: Any, rng: random.Random, hflip: bool = False) -> Any:
    """Small random resized crop (90-100% side) and colour jitter (+-10%); a horizontal flip only when asked."""
    from PIL import Image, ImageEnhance

    w, h = image.size
    s = rng.uniform(0.9, 1.0)
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.9, 1.1))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.9, 1.1))
    if hflip and rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return image


# ------------------------------------------------------------------------------------------------ model


class CaptionModel:
    """One backend's model, processing and token conventions behind a common interface.

    Sequences are ``[start] tokens [eos] [pad]...`` for every backend; :meth:`logits` returns logits aligned with
    the sequence (position t predicts token t + 1), exactly what ``generate`` continues from.
    """

    def __init__(self, spec: str, device: str) -> None:
        import transformers

        from captionkit.captioners.base import backend_for_config
        from captionkit.models.hf import read_config

        self.spec = model_source(spec)
        backend = backend_for_config(read_config(self.spec, flag="--model"), spec, flag="--model")
        if backend not in BACKENDS:
            raise ConfigError(f"--model {spec}: a {backend} captioner; training supports {', '.join(BACKENDS)}")
        self.backend = backend
        try:
            if backend == "vision_encoder_decoder":
                self.image_processor = transformers.AutoImageProcessor.from_pretrained(self.spec)
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.spec)
                self.processor = None
                self.model = transformers.VisionEncoderDecoderModel.from_pretrained(self.spec)
                cfg = self.model.config
                self.eos = cfg.eos_token_id if cfg.eos_token_id is not None else self.tokenizer.eos_token_id
                self.start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else self.eos
            else:
                self.processor = transformers.AutoProcessor.from_pretrained(self.spec)
                self.image_processor, self.tokenizer = self.processor.image_processor, self.processor.tokenizer
                if backend == "blip":
                    self.model = transformers.BlipForConditionalGeneration.from_pretrained(self.spec)
                    text = self.model.config.text_config
                    self.start, self.eos = text.bos_token_id, text.sep_token_id
                else:
                    self.model = transformers.GitForCausalLM.from_pretrained(self.spec)
                    self.start, self.eos = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--model {spec}: cannot load it as a {backend} captioner ({exc})") from None
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else self.eos
        if self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = self.pad
        self.device = device
        self.model.to(device).train()

    # ---- parts, for freezing
    def encoder(self) -> Any:
        return {"vision_encoder_decoder": lambda m: m.encoder, "blip": lambda m: m.vision_model,
                "git": lambda m: m.git.image_encoder}[self.backend](self.model)

    def decoder_params(self) -> list[tuple[str, Any]]:
        enc = {id(p) for p in self.encoder().parameters()}
        return [(n, p) for n, p in self.model.named_parameters() if id(p) not in enc]

    def decoder_blocks(self) -> Any:
        return {"vision_encoder_decoder": lambda m: m.decoder.transformer.h,
                "blip": lambda m: m.text_decoder.bert.encoder.layer,
                "git": lambda m: m.git.encoder.layer}[self.backend](self.model)

    def apply_freeze(self, freeze: str, last_n_blocks: int | None) -> None:
        for p in self.model.parameters():
            p.requires_grad_(True)
        if freeze == "encoder":
            for p in self.encoder().parameters():
                p.requires_grad_(False)
        if freeze == "decoder" or last_n_blocks is not None:
            for _, p in self.decoder_params():
                p.requires_grad_(False)
        if last_n_blocks:
            blocks = list(self.decoder_blocks())
            for block in blocks[max(0, len(blocks) - last_n_blocks):]:
                for p in block.parameters():
                    p.requires_grad_(True)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigError("--freeze/--train-last-n-decoder-blocks: nothing is left to train")

    # ---- data
    def pixel_values(self, images: list[Any]) -> Any:
        pv = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, dtype=self.model.dtype)

    def encode(self, captions: list[str], max_length: int) -> tuple[Any, Any]:
        """(input_ids, attention_mask) of ``[start] caption [eos]``, right-padded."""
        import torch

        seqs = [[self.start, *self.tokenizer(c, add_special_tokens=False)["input_ids"][:max_length - 2], self.eos]
                for c in captions]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    def logits(self, pixel_values: Any, ids: Any, mask: Any) -> Any:
        if self.backend == "vision_encoder_decoder":
            out = self.model(pixel_values=pixel_values, decoder_input_ids=ids, decoder_attention_mask=mask,
                             use_cache=False)
        else:
            out = self.model(pixel_values=pixel_values, input_ids=ids, attention_mask=mask, use_cache=False)
        return out.logits[:, -ids.shape[1]:].float()  # GIT's logits also cover the image tokens

    def generate(self, pixel_values: Any, max_new_tokens: int, sample: int = 0, top_p: float = 1.0) -> Any:
        """Token sequences starting with ``[start]``: greedy, or ``sample`` sampled ones per image."""
        # pad/eos come from the generation config (BLIP's generate passes its own pad and eos).
        kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": 1, "do_sample": bool(sample)}
        if sample:
            kw.update(num_return_sequences=sample, top_p=top_p, top_k=0)
        return self.model.generate(pixel_values=pixel_values, **kw)  # every backend returns [start] first

    def decode(self, ids: Any) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def save(self, folder: Path) -> None:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        self.model.save_pretrained(folder)
        if self.processor is not None:
            self.processor.save_pretrained(folder)
        else:
            self.image_processor.save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)


def sequence_mask(ids: Any, eos: int) -> Any:
    """1 for the tokens after ``[start]`` up to and including the first eos (what a caption's log-prob covers)."""
    is_eos = (ids[:, 1:] == eos).long()
    before = is_eos.cumsum(1) - is_eos  # eos tokens strictly before each position
    return (before == 0).long()


def token_logprobs(cm: CaptionModel, pixel_values: Any, ids: Any) -> tuple[Any, Any]:
    """(sum of log p per sequence, token counts) for sequences ``ids`` (``[start] ...``)."""
    import torch

    tmask = sequence_mask(ids, cm.eos)
    attn = torch.cat([torch.ones_like(tmask[:, :1]), tmask], 1)
    logits = cm.logits(pixel_values, ids, attn)[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logp * tmask).sum(1), tmask.sum(1)


def ce_loss(cm: CaptionModel, pixel_values: Any, ids: Any, mask: Any, ss_ratio: float = 0.0,
            generator: Any = None) -> Any:
    """Teacher-forcing cross-entropy; with ``ss_ratio`` > 0 that share of gold input tokens (not [start]) is
    replaced by the model's greedy predictions from a gradient-free first pass (scheduled sampling)."""
    import torch

    inputs = ids
    if ss_ratio > 0:
        with torch.no_grad():
            pred = cm.logits(pixel_values, ids, mask).argmax(-1)[:, :-1]  # predictions for positions 1..
        swap = torch.rand(pred.shape, generator=generator).to(ids.device) < ss_ratio
        swap &= mask[:, 1:].bool()
        inputs = ids.clone()
        inputs[:, 1:] = torch.where(swap, pred, ids[:, 1:])
    logits = cm.logits(pixel_values, inputs, mask)[:, :-1]
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=-100)


# ------------------------------------------------------------------------------------------------ rewards


class Reward:
    """Per-item reward of candidate captions against references: CIDEr-D with document frequencies from the
    training references (built once, ptb-tokenised), or any coco metric's per-item score."""

    def __init__(self, metric: str, training_references: list[list[str]]) -> None:
        from captionkit.eval.coco import cider_d_scorer

        if metric not in COCO_REWARDS:
            raise ConfigError(f"--scst-reward {metric!r}: use one of {', '.join(COCO_REWARDS)}")
        self.metric = metric
        self.cider = cider_d_scorer(training_references, tokenize=True) if COCO_REWARDS[metric] == "CIDEr" else None

    def __call__(self, candidates: list[str], references: list[list[str]]) -> Any:
        import numpy as np

        from captionkit.eval.coco import coco_scores
        from captionkit.eval.ptb import ptb_tokenize

        if self.cider is not None:
            cands = ptb_tokenize([c or "" for c in candidates])
            flat = iter(ptb_tokenize([r for refs in references for r in refs]))
            refs = [[next(flat) for _ in rs] for rs in references]
            return self.cider.score(cands, refs)
        gts = {i: list(r) for i, r in enumerate(references)}
        res = {i: c or "" for i, c in enumerate(candidates)}
        per_item = coco_scores(gts, res, metrics=[COCO_REWARDS[self.metric]])[1].get(self.metric, {})
        return np.array([per_item.get(i, 0.0) for i in range(len(candidates))], dtype=np.float64)


def advantages(r_sample: Any, r_greedy: Any | None, samples: int) -> Any:
    """Per-sample advantages; ``r_sample`` holds each image's ``samples`` rewards in a row. The baseline is the
    image's greedy reward, or (``r_greedy`` None) the mean of the image's other samples."""
    if r_greedy is not None:
        return r_sample - r_greedy.repeat(samples)  # numpy repeat: each image's value ``samples`` times in a row
    per_image = r_sample.reshape(-1, samples)
    return (per_image - (per_image.sum(1, keepdims=True) - per_image) / (samples - 1)).reshape(-1)


def scst_loss(cm: CaptionModel, pixel_values: Any, references: list[list[str]], reward: Reward, samples: int,
              top_p: float, max_new_tokens: int, baseline: str = "greedy") -> tuple[Any, dict[str, float]]:
    """Self-critical loss ``mean(-(r_sample - b) * logprob(sample))`` and its reward statistics.

    ``b`` is the reward of the greedy caption (``greedy``) or the mean reward of the image's other samples
    (``mean``). Rollouts are drawn and scored with dropout off, so the gradient is that of the policy sampled.
    """
    import torch

    was_training = cm.model.training
    cm.model.eval()
    try:
        with torch.no_grad():
            sampled = cm.generate(pixel_values, max_new_tokens, sample=samples, top_p=top_p)
            greedy = cm.generate(pixel_values, max_new_tokens) if baseline == "greedy" else None
        refs_k = [r for r in references for _ in range(samples)]
        r_sample = reward(cm.decode(sampled), refs_k)
        stats = {"reward_sample": float(r_sample.mean())}
        r_greedy = reward(cm.decode(greedy), references) if greedy is not None else None
        if r_greedy is not None:
            stats["reward_greedy"] = float(r_greedy.mean())
        advantage = torch.tensor(advantages(r_sample, r_greedy, samples), dtype=torch.float32,
                                 device=pixel_values.device)
        logp, _ = token_logprobs(cm, pixel_values.repeat_interleave(samples, 0), sampled)
    finally:
        cm.model.train(was_training)
    return -(advantage * logp).mean(), stats


# ------------------------------------------------------------------------------------------------ evaluation


def make_captioner(cm: CaptionModel, folder: Path) -> Any:
    """The inference backend built on a saved folder (fresh, not the load_captioner cache), running ``cm``'s
    in-memory model: identical processing to ``captionkit describe --captioner <folder>``."""
    from captionkit.captioners.base import available_backends
    from captionkit.models.options import ModelOptions

    captioner = available_backends()[cm.backend].factory(str(folder), ModelOptions(device=cm.device, dtype="float32"))
    captioner.model = cm.model
    return captioner


def evaluate_epoch(cm: CaptionModel, captioner: Any, val: list[Pair], images: list[Any],
                   cfg: CaptionerTrainConfig) -> dict[str, Any]:
    import torch

    from captionkit.eval.evaluate import evaluate
    from captionkit.models.options import GenerationOptions

    cm.model.eval()
    try:
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(val), cfg.batch_size):
                chunk = val[start:start + cfg.batch_size]
                ids, mask = cm.encode([p.caption for p in chunk], cfg.max_length)
                n = int(mask[:, 1:].sum())
                total += float(ce_loss(cm, cm.pixel_values(images[start:start + len(chunk)]), ids, mask)) * n
                count += n
        n_items = cfg.eval_max_items or len(val)
        texts = captioner.caption(images[:n_items], gen=GenerationOptions(max_new_tokens=cfg.eval_max_new_tokens))
    finally:
        cm.model.train()
    items = val[:n_items]
    preds = {p.id: t or "." for p, t in zip(items, texts)}
    refs = {p.id: p.references for p in items}
    if cfg.eval_metrics:
        from captionkit.eval.coco import coco_scores

        corpus = coco_scores(refs, preds, metrics=cfg.eval_metrics)[0]
    else:
        corpus = evaluate({"model": preds}, refs, metrics=["coco"], n_resamples=0).systems[0].corpus
    scores: dict[str, Any] = {"val_loss": total / max(count, 1)}
    scores.update({k: float(v) for k, v in corpus.items()})
    scores["samples"] = [{"id": p.id, "prediction": preds[p.id], "reference": p.caption} for p in items[:5]]
    return scores


# ------------------------------------------------------------------------------------------------ training


@dataclass
class CaptionerTrainResult:
    output_dir: Path
    final: Path
    best: Path | None
    steps: int
    skipped_images: int = 0
    skipped: list[str] = field(default_factory=list)
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)


def target(pair: Pair, index: int, epoch: int, cfg: CaptionerTrainConfig) -> str:
    """The caption an image is trained on this epoch: its caption, or (``targets: references``) one of its
    references drawn from (seed, epoch, index), so a resumed run draws the same ones."""
    if cfg.targets == "caption" or len(pair.references) < 2:
        return pair.caption
    return random.Random(f"{cfg.seed}:{epoch}:{index}").choice(pair.references)


def _load_weights(model: Any, folder: Path) -> None:
    """Put a checkpoint's weights into ``model`` (through from_pretrained, which maps saved key names)."""
    saved = type(model).from_pretrained(folder)
    _missing, unexpected = model.load_state_dict(saved.state_dict(), strict=False)
    if unexpected:
        raise ConfigError(f"--resume {folder}: its weights do not match the model ({unexpected[:3]})")


def scst_weight(cfg: CaptionerTrainConfig, step: int, total_steps: int) -> float:
    """The SCST share of the loss at ``step``: linear from ``scst_weight_start`` to ``scst_weight_end``."""
    progress = step / max(1, total_steps - 1)
    return cfg.scst_weight_start + (cfg.scst_weight_end - cfg.scst_weight_start) * progress


def mixed_loss(cm: CaptionModel, pixel_values: Any, ids: Any, mask: Any, references: list[list[str]],
               reward: Reward | None, weight: float, cfg: CaptionerTrainConfig) -> tuple[Any, dict[str, float]]:
    """``(1 - weight) * cross-entropy + weight * SCST loss`` of one batch, and its log fields."""
    import torch

    extra: dict[str, float] = {}
    loss = torch.zeros((), device=cm.device)
    if weight < 1.0:
        ce = ce_loss(cm, pixel_values, ids, mask, cfg.scheduled_sampling, torch.Generator().manual_seed(
            random.getrandbits(31)) if cfg.scheduled_sampling else None)
        loss = loss + (1 - weight) * ce
        extra["ce_loss"] = float(ce.detach())
    if weight > 0.0 and reward is not None:
        sl, stats = scst_loss(cm, pixel_values, references, reward, cfg.scst_samples, cfg.scst_top_p,
                              cfg.scst_max_new_tokens, cfg.scst_baseline)
        loss = loss + weight * sl
        extra.update(stats, scst_loss=float(sl.detach()), scst_weight=weight)
    return loss, extra


def _oom_error(cfg: CaptionerTrainConfig, where: str) -> ConfigError:
    return ConfigError(f"out of memory during {where} (--batch-size {cfg.batch_size}); use a smaller --batch-size, "
                       "--freeze encoder, or fewer --scst-samples")


def _read_data(cfg: CaptionerTrainConfig) -> tuple[list[Pair], list[Any], list[Pair], list[Any], list[str]]:
    """(train pairs, their images, val pairs, their images, skipped images); DatasetError when no image reads."""
    data = Path(cfg.data or "").expanduser()
    pairs = read_pairs(data)
    root = Path(cfg.images_dir).expanduser() if cfg.images_dir else data.parent
    if cfg.val_data:
        val_file = Path(cfg.val_data).expanduser()
        train_pairs, val_pairs = pairs, read_pairs(val_file)
        val_root = Path(cfg.images_dir).expanduser() if cfg.images_dir else val_file.parent
    else:
        train_pairs = [p for p in pairs if (p.split or "train") not in VAL_SPLITS]
        val_pairs, val_root = [p for p in pairs if p.split in VAL_SPLITS], root
    train_pairs, train_images, skipped = load_images(train_pairs, root)
    val_pairs, val_images, val_skipped = load_images(val_pairs, val_root)
    skipped += val_skipped
    if not train_pairs:
        raise DatasetError(f"--data {data}: no training image could be read ({len(skipped)} skipped, e.g. "
                           f"{skipped[0] if skipped else 'none'})")
    return train_pairs, train_images, val_pairs, val_images, skipped


def train_captioner(cfg: CaptionerTrainConfig) -> CaptionerTrainResult:
    """Run (or resume) one captioner training run; see the module docstring for the outputs."""
    cfg.validate()
    import torch

    device = resolve_device(cfg.device)
    train_pairs, train_images, val_pairs, val_images, skipped = _read_data(cfg)
    resume_from = prepare_output(cfg)
    cm = CaptionModel(cfg.model or "", device)
    cm.apply_freeze(cfg.freeze, cfg.train_last_n_decoder_blocks)
    reward = Reward(cfg.scst_reward, [p.references for p in train_pairs]) if cfg.scst else None
    trainable = trainable_params(cm.model)
    optimizer = torch.optim.AdamW([{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                                   {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)
    captioner = None

    def train_unit(window: list[list[int]], state: RunState) -> tuple[float, dict[str, Any]]:
        [b] = window  # no gradient accumulation: a unit is one batch
        images = [train_images[i] for i in b]
        if cfg.augment:
            images = [augment_image(im, random, cfg.augment_hflip) for im in images]
        pv = cm.pixel_values(images)
        ids, mask = cm.encode([target(train_pairs[i], i, state.epoch, cfg) for i in b], cfg.max_length)
        weight = scst_weight(cfg, state.step, state.total_steps) if reward is not None else 0.0
        loss, extra = mixed_loss(cm, pv, ids, mask, [train_pairs[i].references for i in b], reward, weight, cfg)
        loss.backward()
        return float(loss.detach()), extra

    def evaluate() -> dict[str, Any]:
        nonlocal captioner
        folder = loop.checkpoint()  # the backend captioner needs a saved folder; the loop saves again after
        if captioner is None:
            captioner = make_captioner(cm, folder / "model")
        return evaluate_epoch(cm, captioner, val_pairs, val_images, cfg)

    loop = TrainLoop(cfg, "train captioner", len(train_pairs), trainable, optimizer, train_unit, save_model=cm.save,
                     save_checkpoint=lambda folder: cm.save(folder / "model"),
                     load_checkpoint=lambda folder: _load_weights(cm.model, folder / "model"),
                     evaluate=evaluate if val_pairs and cfg.eval_every_epoch else None, metric=cfg.best_metric,
                     oom_error=lambda where: _oom_error(cfg, where), resume_from=resume_from)
    result = loop.run()
    return CaptionerTrainResult(**vars(result), skipped_images=len(skipped), skipped=skipped,
                                stopped_early=loop.state.stopped_early)
