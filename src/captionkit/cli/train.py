"""``captionkit train``: fine-tune the models captionkit uses. One command per trainer (``writer``,
``captioner``, ``projector``), each a thin layer over ``captionkit.training.*``.

The options the trainers share (--val-data, --epochs, --lr, --eval, --seed, --resume, ...) are declared once in
``TRAIN_OPTIONS``; each command takes those its trainer has with ``@options(train_options(...))``. ``{default}``
in a help text is filled in from the trainer's config dataclass, so the help cannot drift from the behaviour.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from captionkit.cli.common import options
from captionkit.errors import ConfigError
from captionkit.training.captioner import CaptionerTrainConfig, train_captioner
from captionkit.training.projector import ProjectorTrainConfig, train_projector
from captionkit.training.writer import WriterTrainConfig, train_writer

train_app = typer.Typer(
    help="Fine-tune models: post writers (LoRA, QLoRA, LLaMA-Adapter or full) on `captionkit prepare` data, "
    "image captioners, and LLaVA-style projectors.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app`` (the main CLI, or a test app)."""
    app.add_typer(train_app, name="train")


# ------------------------------------------------------------------------------------------------ shared options


def _shown(value: Any) -> str:
    """A config default as the help shows it: on/off, 2e-4, 0.05, cosine."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value and abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _with_default(config_cls: type, field: str, help: str) -> str:
    """``help`` with ``{default}`` replaced by ``config_cls.<field>``'s default (raises when there is none)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    if field not in fields:
        raise TypeError(f"{config_cls.__name__} has no field {field!r}")
    if "{default}" not in help:
        return help
    value = fields[field].default
    if value is None or value is dataclasses.MISSING:
        raise TypeError(f"{config_cls.__name__}.{field} has no default to show in its help")
    return help.replace("{default}", _shown(value))


def config_option(config_cls: type, field: str, *flags: str, help: str, **kw: Any) -> Any:
    """A typer option (None: not given) setting ``config_cls.<field>``; ``{default}`` in ``help`` is its default."""
    return typer.Option(None, *flags, help=_with_default(config_cls, field, help), **kw)


# The options the trainers share, as in captionkit.cli.common: config field -> (annotation, typer option). A command
# passes their values to its config under the field's name; None means "not given" (preset or config default).
TRAIN_OPTIONS = {
    "val_data": (Optional[Path], typer.Option(None, "--val-data", help="Validation file. [default: the rows of --data with split val]")),
    "epochs": (Optional[int], typer.Option(None, "--epochs", min=1, help="Passes over the data. [default: {default}]")),
    "max_steps": (Optional[int], typer.Option(None, "--max-steps", min=1, help="Optimizer steps; ends the run (overrides --epochs).")),
    "batch_size": (Optional[int], typer.Option(None, "--batch-size", min=1, help="Rows per forward pass. [default: {default}]")),
    "grad_accum": (Optional[int], typer.Option(None, "--grad-accum", min=1, help="Batches per optimizer step. [default: {default}]")),
    "lr": (Optional[float], typer.Option(None, "--lr", help="Peak learning rate. [default: {default}]")),
    "scheduler": (Optional[str], typer.Option(None, "--scheduler", help="cosine, linear or constant (after warmup). [default: {default}]")),
    "warmup_ratio": (Optional[float], typer.Option(None, "--warmup-ratio", help="Share of steps warming up. [default: {default}]")),
    "max_grad_norm": (Optional[float], typer.Option(None, "--max-grad-norm", help="Gradient clipping norm. [default: {default}]")),
    "max_length": (Optional[int], typer.Option(None, "--max-length", min=8, help="Tokens per row (prompt + response). [default: {default}]")),
    "lora_r": (Optional[int], typer.Option(None, "--lora-r", min=1, help="LoRA rank. [default: {default}]")),
    "lora_alpha": (Optional[int], typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha. [default: {default}]")),
    "lora_dropout": (Optional[float], typer.Option(None, "--lora-dropout", help="LoRA dropout. [default: {default}]")),
    "eval_every_epoch": (Optional[bool], typer.Option(None, "--eval/--no-eval", help="Score the validation split after each epoch. [default: {default}]")),
    "eval_max_new_tokens": (Optional[int], typer.Option(None, "--eval-max-new-tokens", min=1, help="Tokens generated per validation row. [default: {default}]")),
    "best_metric": (Optional[str], typer.Option(None, "--best-metric", help="Metric that picks best/: CIDEr, BLEU-4, ... or loss. [default: {default}]")),
    "save_steps": (Optional[int], typer.Option(None, "--save-steps", min=1, help="Also checkpoint every N steps.")),
    "save_total_limit": (Optional[int], typer.Option(None, "--save-total-limit", min=1, help="checkpoint-* folders kept. [default: {default}]")),
    "seed": (Optional[int], typer.Option(None, "--seed", help="Data order, dropout and initialisation. [default: {default}]")),
    "device": (Optional[str], typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1. [default: {default}]")),
    "resume": (bool, typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out.")),
}


def train_options(config_cls: type, names: list[str], **helps: str) -> dict[str, tuple[Any, Any]]:
    """The ``TRAIN_OPTIONS`` in ``names``, as an ``@options`` group for the trainer ``config_cls`` configures.

    ``helps`` rewords an option where this trainer differs; ``{default}`` is filled in from ``config_cls`` either way.
    """
    group = {}
    for name in names:
        ann, opt = TRAIN_OPTIONS[name]
        opt = copy.copy(opt)
        opt.help = _with_default(config_cls, name, helps.get(name, opt.help))
        group[name] = (ann, opt)
    return group


def _overrides(opts: dict[str, Any]) -> dict[str, Any]:
    """``opts`` as config values: paths as strings, and --resume only when given (a preset's resume stands)."""
    values = dict(opts)
    if values.get("val_data") is not None:
        values["val_data"] = str(values["val_data"])
    values["resume"] = values.get("resume") or None
    return values


OutOpt = typer.Option(..., "--out", "-o", help="Output folder: checkpoint-<step>/, best/, final/, metrics.")

# Metrics the summary shows from the last evaluation, those the trainer computed.
SHOWN_METRICS = ("val_loss", "CIDEr", "BLEU-4", "exact_match")


def _report(result: Any, use: str) -> None:
    """Steps and output folder, the last evaluation, best/, and final/ with the command that uses it."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    skipped = getattr(result, "skipped_images", 0)
    console.print(f"train: {result.steps} steps -> {result.output_dir}"
                  + (f"; skipped {skipped} unreadable image(s)" if skipped else "")
                  + ("; stopped early" if getattr(result, "stopped_early", False) else ""))
    if result.evals:
        last = result.evals[-1]
        shown = ", ".join(f"{k} {last[k]:.4f}" for k in SHOWN_METRICS if k in last)
        console.print(f"last evaluation (epoch {last['epoch']}): {shown}")
    if result.best:
        console.print(f"best: {result.best}")
    console.print(f"final: {result.final}  (use: {use} {result.final})")


# ------------------------------------------------------------------------------------------------ writer


@train_app.command(
    "writer",
    epilog="Examples:\n\n"
    "  captionkit train writer --data finetune.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --out runs/w1\n\n"
    "  captionkit train writer --data finetune.jsonl --model meta-llama/Llama-2-7b-hf --preset adobe-lora "
    "--out runs/adobe\n\n"
    "  captionkit train writer --data finetune.jsonl --model tiiuae/falcon-7b-instruct --preset "
    "caption-studio-qlora --out runs/cs   # CUDA + bitsandbytes\n\n"
    "  captionkit train writer --data finetune.jsonl --model ./base --out runs/w1 --resume   # continue\n\n"
    "  captionkit train writer --data finetune.jsonl --model ./base --preset tiny-proof --out runs/smoke\n\n"
    "Presets: adobe-lora, caption-studio-qlora, tiny-proof (or a YAML file with the same keys); flags win.",
)
@options(train_options(
    WriterTrainConfig,
    ["val_data", "epochs", "max_steps", "batch_size", "grad_accum", "lr", "scheduler", "warmup_ratio",
     "max_grad_norm", "max_length", "lora_r", "lora_alpha", "lora_dropout", "eval_every_epoch",
     "eval_max_new_tokens", "best_metric", "save_steps", "save_total_limit", "seed", "device", "resume"],
    val_data="Validation JSONL. [default: the .val file beside --data when it exists]",
))
def writer(
    data: Path = typer.Option(..., "--data", help="Training JSONL from `captionkit prepare` (Alpaca or chat)."),
    model: str = typer.Option(..., "--model", "-m", help="Base causal LM: hub id or local folder."),
    out: Path = OutOpt,
    method: Optional[str] = config_option(WriterTrainConfig, "method", "--method", help="lora, qlora (CUDA + "
                                          "bitsandbytes), llama-adapter or full. [default: {default}]"),
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset name or YAML file; flags override it."),
    target_modules: Optional[str] = typer.Option(None, "--target-modules", help="Comma-separated module names "
                                                 "to adapt. [default: per architecture, e.g. q/k/v/o_proj]"),
    merge: Optional[bool] = config_option(WriterTrainConfig, "merge", "--merge/--no-merge", help="Save final/ as "
                                          "a full model with the LoRA merged in (instead of an adapter folder). "
                                          "[default: {default}]"),
    gradient_checkpointing: Optional[bool] = config_option(WriterTrainConfig, "gradient_checkpointing",
                                                           "--gradient-checkpointing", help="Recompute activations "
                                                           "in backward: less memory, slower. [default: {default}]"),
    *,
    opts: dict[str, Any],
) -> None:
    """Fine-tune a post writer. Loss is on the response only; the prompt is rendered with the model's chat
    template exactly as `captionkit write` renders it. final/ loads with `captionkit write --writer <out>/final`."""
    targets = [t.strip() for t in target_modules.split(",") if t.strip()] if target_modules else None
    cfg = WriterTrainConfig.from_preset(
        preset, data=str(data), model=model, output_dir=str(out), method=method, target_modules=targets,
        merge=merge, gradient_checkpointing=gradient_checkpointing, **_overrides(opts),
    )
    _report(train_writer(cfg), "captionkit write ... --writer")


# ------------------------------------------------------------------------------------------------ captioner


def _scst_weights(text: Optional[str]) -> tuple[Optional[float], Optional[float]]:
    """--scst-weight START or START:END as (start, end); (None, None) when not given."""
    if not text:
        return None, None
    try:
        parts = [float(x) for x in text.split(":")]
    except ValueError:
        raise ConfigError(f"--scst-weight {text!r}: give START or START:END, e.g. 0.5:1") from None
    return parts[0], parts[-1]


def _scst_weight_default() -> str:
    """The config's scst_weight_start and _end as --scst-weight writes them."""
    start, end = _shown(CaptionerTrainConfig.scst_weight_start), _shown(CaptionerTrainConfig.scst_weight_end)
    return start if start == end else f"{start}:{end}"


@train_app.command(
    "captioner",
    epilog="Examples:\n\n"
    "  captionkit train captioner --data synth/captions.jsonl --model nlpconnect/vit-gpt2-image-captioning "
    "--out runs/c1 --freeze encoder\n\n"
    "  captionkit train captioner --data coco_captions.json --model ./blip --out runs/c2 --scst --scst-samples 5\n\n"
    "  captionkit train captioner --data captions.csv --images ./imgs --model ./git --out runs/c3 --resume",
)
@options(train_options(
    CaptionerTrainConfig,
    ["val_data", "epochs", "max_steps", "batch_size", "lr", "scheduler", "eval_every_epoch", "eval_max_new_tokens",
     "best_metric", "seed", "device", "resume"],
    batch_size="Images per step. [default: {default}]",
))
def captioner(
    data: Path = typer.Option(..., "--data", help="Captions: JSONL/CSV (image, caption[, references, split]) or "
                              "a COCO captions JSON."),
    model: str = typer.Option(..., "--model", "-m", help="Captioner to fine-tune (ViT+GPT-2 style "
                              "VisionEncoderDecoder, BLIP or GIT): hub id or folder."),
    out: Path = OutOpt,
    images_dir: Optional[Path] = typer.Option(None, "--images", help="Folder image paths are relative to. "
                                              "[default: the data file's folder]"),
    preset: Optional[str] = typer.Option(None, "--preset", help="YAML file of settings; flags override it."),
    freeze: Optional[str] = config_option(CaptionerTrainConfig, "freeze", "--freeze", help="encoder, decoder or "
                                          "none. [default: {default}]"),
    train_last_n_decoder_blocks: Optional[int] = typer.Option(None, "--train-last-n-decoder-blocks", min=0,
                                                              help="Freeze the decoder except its last N blocks."),
    targets: Optional[str] = config_option(
        CaptionerTrainConfig, "targets", "--targets",
        help="caption (each image's caption) or references (a random one of its references each epoch, as COCO "
        "training does). [default: {default}]"),
    scheduled_sampling: Optional[float] = config_option(
        CaptionerTrainConfig, "scheduled_sampling", "--scheduled-sampling",
        help="Share of gold input tokens replaced by the model's greedy predictions. [default: {default}]"),
    augment: Optional[bool] = config_option(CaptionerTrainConfig, "augment", "--augment/--no-augment",
                                            help="Small crop + colour jitter. [default: {default}]"),
    augment_hflip: Optional[bool] = config_option(CaptionerTrainConfig, "augment_hflip", "--hflip", help="With "
                                                  "--augment: random horizontal flips too. [default: {default}]"),
    early_stopping_patience: Optional[int] = typer.Option(None, "--early-stopping-patience", min=1, help="Stop "
                                                          "after N evaluations without a better --best-metric."),
    scst: Optional[bool] = config_option(CaptionerTrainConfig, "scst", "--scst", help="Self-critical sequence "
                                         "training. [default: {default}]"),
    scst_samples: Optional[int] = config_option(CaptionerTrainConfig, "scst_samples", "--scst-samples", min=1,
                                                help="Samples per image. [default: {default}]"),
    scst_top_p: Optional[float] = config_option(CaptionerTrainConfig, "scst_top_p", "--scst-top-p",
                                                help="Nucleus sampling for SCST rollouts. [default: {default}]"),
    scst_reward: Optional[str] = config_option(
        CaptionerTrainConfig, "scst_reward", "--scst-reward",
        help="CIDEr (CIDEr-D), BLEU-1..4, ROUGE-L or METEOR. [default: {default}]"),
    scst_baseline: Optional[str] = config_option(
        CaptionerTrainConfig, "scst_baseline", "--scst-baseline",
        help="greedy (the greedy caption's reward) or mean (the image's other samples). [default: {default}]"),
    scst_weight: Optional[str] = config_option(
        CaptionerTrainConfig, "scst_weight_start", "--scst-weight",
        help="SCST share of the loss, START or START:END (linear over training; the rest is cross-entropy). "
        f"[default: {_scst_weight_default()}]"),
    *,
    opts: dict[str, Any],
) -> None:
    """Fine-tune an image captioner. final/ loads with `captionkit describe --captioner <out>/final`."""
    w_start, w_end = _scst_weights(scst_weight)
    cfg = CaptionerTrainConfig.from_preset(
        preset, data=str(data), model=model, output_dir=str(out), images_dir=str(images_dir) if images_dir else None,
        freeze=freeze, train_last_n_decoder_blocks=train_last_n_decoder_blocks, targets=targets,
        scheduled_sampling=scheduled_sampling, augment=augment, augment_hflip=augment_hflip,
        early_stopping_patience=early_stopping_patience, scst=scst, scst_samples=scst_samples,
        scst_top_p=scst_top_p, scst_reward=scst_reward, scst_baseline=scst_baseline, scst_weight_start=w_start,
        scst_weight_end=w_end, **_overrides(opts),
    )
    _report(train_captioner(cfg), "captionkit describe ... --captioner")


# ------------------------------------------------------------------------------------------------ projector


@train_app.command(
    "projector",
    epilog="Examples:\n\n"
    "  captionkit train projector --stage 1 --data synth/captions.jsonl --vision openai/clip-vit-large-patch14-336 "
    "--lm Qwen/Qwen2.5-0.5B-Instruct --out runs/p1\n\n"
    "  captionkit train projector --stage 2 --data synth/vqa.jsonl --init runs/p1/final --out runs/p2\n\n"
    "  captionkit ask photo.png \"what colour is the background?\" --captioner runs/p2/final",
)
@options(train_options(
    ProjectorTrainConfig,
    ["val_data", "epochs", "max_steps", "batch_size", "grad_accum", "lr", "max_length", "lora_r", "lora_alpha",
     "eval_every_epoch", "best_metric", "save_steps", "seed", "device", "resume"],
    lr="Projector learning rate, both stages. [default: {default}]",
    max_length="Tokens per row, image tokens included; longer rows are skipped. [default: {default}]",
    lora_r="LoRA rank (stage 2). [default: {default}]",
    best_metric="Metric that picks best/: CIDEr, BLEU-4, ... (stage 1), exact_match (stage 2) or loss. "
    "[default: CIDEr (stage 1), exact_match (stage 2)]",
))
def projector(
    data: Path = typer.Option(..., "--data", help="Stage 1: captions.jsonl rows; stage 2: LLaVA conversations."),
    out: Path = OutOpt,
    stage: int = typer.Option(ProjectorTrainConfig.stage, "--stage", help="1: projector only on captions; 2: LoRA "
                              "+ projector on conversations (start from stage 1 with --init)."),
    vision: Optional[str] = typer.Option(None, "--vision", help="Vision encoder (CLIP/SigLIP folder or id)."),
    lm: Optional[str] = typer.Option(None, "--lm", help="Causal LM (folder or id)."),
    init: Optional[str] = typer.Option(None, "--init", help="A Llava folder to start from (stage 1's final/)."),
    projector_type: Optional[str] = config_option(
        ProjectorTrainConfig, "projector", "--projector",
        help="mlp (LLaVA-1.5 GELU MLP), linear, or residual (Linear + residual MLP block; loads in captionkit and "
        "with trust_remote_code, not in vLLM). [default: {default}]"),
    chat_template: Optional[str] = typer.Option(None, "--chat-template", help="Jinja file or text for the "
                                                "processor. [default: ChatML for ChatML LMs, else LLaVA-1.5]"),
    lora_lr: Optional[float] = typer.Option(None, "--lora-lr", help="Stage 2 LoRA learning rate. [default: --lr]"),
    *,
    opts: dict[str, Any],
) -> None:
    """Train a LLaVA-style model (vision encoder + projector + LM). Prompts are rendered exactly as `captionkit
    describe/ask` renders them; final/ is a plain Llava folder: `captionkit ask IMAGE "Q" --captioner <out>/final`."""
    cfg = ProjectorTrainConfig.from_options(
        data=str(data), output_dir=str(out), stage=stage, vision=vision, lm=lm, init=init, projector=projector_type,
        chat_template=chat_template, lora_lr=lora_lr, **_overrides(opts),
    )
    _report(train_projector(cfg), "captionkit ask IMAGE \"QUESTION\" --captioner")
