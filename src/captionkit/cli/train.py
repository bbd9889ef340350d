"""``captionkit train``: fine-tune the models captionkit uses. One command per trainer (``writer`` now;
``captioner`` and ``projector`` join this sub-app later), each a thin layer over ``captionkit.training.*``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

train_app = typer.Typer(
    help="Fine-tune models: post writers (LoRA, QLoRA, LLaMA-Adapter or full) on `captionkit prepare` data.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _report(result, console) -> None:
    """One line per output folder, and the last evaluation when there was one."""
    console.print(f"train: {result.steps} steps -> {result.output_dir}")
    if result.evals:
        last = result.evals[-1]
        shown = ", ".join(f"{k} {last[k]:.4f}" for k in ("val_loss", "CIDEr", "BLEU-4") if k in last)
        console.print(f"last evaluation (epoch {last['epoch']}): {shown}")
    if result.best:
        console.print(f"best: {result.best}")
    console.print(f"final: {result.final}  (use: captionkit write ... --writer {result.final})")


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
def writer(
    data: Path = typer.Option(..., "--data", help="Training JSONL from `captionkit prepare` (Alpaca or chat)."),
    model: str = typer.Option(..., "--model", "-m", help="Base causal LM: hub id or local folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: checkpoint-<step>/, best/, final/, metrics."),
    method: Optional[str] = typer.Option(None, "--method", help="lora, qlora (CUDA + bitsandbytes), "
                                         "llama-adapter or full. [default: lora]"),
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset name or YAML file; flags override it."),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation JSONL. [default: the .val file "
                                            "beside --data when it exists]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the data. [default: 1]"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps; ends the run "
                                            "(overrides --epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass. [default: 8]"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1, help="Batches per optimizer step. "
                                             "[default: 1]"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate. [default: 2e-4]"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="cosine, linear or constant (after "
                                            "warmup). [default: cosine]"),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", help="Share of steps warming up."),
    max_grad_norm: Optional[float] = typer.Option(None, "--max-grad-norm", help="Gradient clipping norm."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=8, help="Tokens per row (prompt + "
                                             "response). [default: 512]"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", min=1, help="LoRA rank. [default: 8]"),
    lora_alpha: Optional[int] = typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha. [default: 16]"),
    lora_dropout: Optional[float] = typer.Option(None, "--lora-dropout", help="LoRA dropout. [default: 0.05]"),
    target_modules: Optional[str] = typer.Option(None, "--target-modules", help="Comma-separated module names "
                                                 "to adapt. [default: per architecture, e.g. q/k/v/o_proj]"),
    merge: Optional[bool] = typer.Option(None, "--merge/--no-merge", help="Save final/ as a full model with the "
                                         "LoRA merged in (instead of an adapter folder)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing", help="Recompute "
                                                          "activations in backward: less memory, slower."),
    eval_every_epoch: Optional[bool] = typer.Option(None, "--eval/--no-eval", help="Score the validation split "
                                                    "after each epoch. [default: on]"),
    eval_max_new_tokens: Optional[int] = typer.Option(None, "--eval-max-new-tokens", min=1,
                                                      help="Tokens generated per validation row. [default: 64]"),
    best_metric: Optional[str] = typer.Option(None, "--best-metric", help="Metric that picks best/: CIDEr, "
                                              "BLEU-4, ... or loss. [default: CIDEr]"),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1, help="Also checkpoint every N steps."),
    save_total_limit: Optional[int] = typer.Option(None, "--save-total-limit", min=1,
                                                   help="checkpoint-* folders kept. [default: 2]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Data order, dropout and initialisation. [default: 0]"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1. [default: auto]"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
) -> None:
    """Fine-tune a post writer. Loss is on the response only; the prompt is rendered with the model's chat
    template exactly as `captionkit write` renders it. final/ loads with `captionkit write --writer <out>/final`."""
    from rich.console import Console

    from captionkit.training.writer import WriterTrainConfig, train_writer

    targets = [t.strip() for t in target_modules.split(",") if t.strip()] if target_modules else None
    cfg = WriterTrainConfig.from_preset(
        preset, data=str(data), model=model, output_dir=str(out), method=method, val_data=str(val_data) if val_data
        else None, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        scheduler=scheduler, warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm, max_length=max_length,
        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets, merge=merge,
        gradient_checkpointing=gradient_checkpointing, eval_every_epoch=eval_every_epoch,
        eval_max_new_tokens=eval_max_new_tokens, best_metric=best_metric, save_steps=save_steps,
        save_total_limit=save_total_limit, seed=seed, device=device, resume=resume or None,
    )
    result = train_writer(cfg)
    _report(result, Console(stderr=True, highlight=False, soft_wrap=True))


# ------------------------------------------------------------------------------------------------ captioner


@train_app.command(
    "captioner",
    epilog="Examples:\n\n"
    "  captionkit train captioner --data synth/captions.jsonl --model nlpconnect/vit-gpt2-image-captioning "
    "--out runs/c1 --freeze encoder\n\n"
    "  captionkit train captioner --data coco_captions.json --model ./blip --out runs/c2 --scst --scst-samples 5\n\n"
    "  captionkit train captioner --data captions.csv --images ./imgs --model ./git --out runs/c3 --resume",
)
def captioner(
    data: Path = typer.Option(..., "--data", help="Captions: JSONL/CSV (image, caption[, references, split]) or "
                              "a COCO captions JSON."),
    model: str = typer.Option(..., "--model", "-m", help="Captioner to fine-tune (ViT+GPT-2 style "
                              "VisionEncoderDecoder, BLIP or GIT): hub id or folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: checkpoint-<step>/, best/, final/, metrics."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder image paths are relative to. "
                                          "[default: the data file's folder]"),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation file. [default: rows with "
                                            "split val]"),
    preset: Optional[str] = typer.Option(None, "--preset", help="YAML file of settings; flags override it."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the data. [default: 1]"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps; ends the run."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per step. [default: 8]"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate. [default: 5e-5]"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="cosine, linear or constant."),
    freeze: Optional[str] = typer.Option(None, "--freeze", help="encoder, decoder or none. [default: none]"),
    last_n: Optional[int] = typer.Option(None, "--train-last-n-decoder-blocks", min=0,
                                         help="Freeze the decoder except its last N blocks."),
    scheduled_sampling: Optional[float] = typer.Option(None, "--scheduled-sampling", help="Share of gold input "
                                                       "tokens replaced by the model's greedy predictions."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="Small crop + colour jitter."),
    hflip: Optional[bool] = typer.Option(None, "--hflip", help="With --augment: random horizontal flips too."),
    patience: Optional[int] = typer.Option(None, "--early-stopping-patience", min=1,
                                           help="Stop after N evaluations without a better --best-metric."),
    best_metric: Optional[str] = typer.Option(None, "--best-metric", help="CIDEr, BLEU-4, ... or loss. "
                                              "[default: CIDEr]"),
    scst: Optional[bool] = typer.Option(None, "--scst", help="Self-critical sequence training."),
    scst_samples: Optional[int] = typer.Option(None, "--scst-samples", min=1, help="Samples per image. [default: 4]"),
    scst_top_p: Optional[float] = typer.Option(None, "--scst-top-p", help="Nucleus sampling for SCST rollouts."),
    scst_reward: Optional[str] = typer.Option(None, "--scst-reward", help="CIDEr (CIDEr-D), BLEU-1..4, ROUGE-L "
                                              "or METEOR. [default: CIDEr]"),
    targets: Optional[str] = typer.Option(None, "--targets", help="caption (each image's caption) or references (a "
                                          "random one of its references each epoch, as COCO training does). "
                                          "[default: caption]"),
    scst_baseline: Optional[str] = typer.Option(None, "--scst-baseline", help="greedy (the greedy caption's "
                                                "reward) or mean (the image's other samples). [default: greedy]"),
    scst_weight: Optional[str] = typer.Option(None, "--scst-weight", help="SCST share of the loss, START or "
                                              "START:END (linear over training; the rest is cross-entropy)."),
    eval_every_epoch: Optional[bool] = typer.Option(None, "--eval/--no-eval", help="Score validation each epoch."),
    eval_max_new_tokens: Optional[int] = typer.Option(None, "--eval-max-new-tokens", min=1),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1. [default: auto]"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
) -> None:
    """Fine-tune an image captioner. final/ loads with `captionkit describe --captioner <out>/final`."""
    from rich.console import Console

    from captionkit.errors import ConfigError
    from captionkit.training.captioner import CaptionerTrainConfig, train_captioner

    w_start = w_end = None
    if scst_weight:
        try:
            parts = [float(x) for x in scst_weight.split(":")]
        except ValueError:
            raise ConfigError(f"--scst-weight {scst_weight!r}: give START or START:END, e.g. 0.5:1") from None
        w_start, w_end = parts[0], parts[-1]
    cfg = CaptionerTrainConfig.from_preset(
        preset, data=str(data), model=model, output_dir=str(out), images_dir=str(images) if images else None,
        val_data=str(val_data) if val_data else None, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        lr=lr, scheduler=scheduler, freeze=freeze, train_last_n_decoder_blocks=last_n,
        scheduled_sampling=scheduled_sampling, augment=augment, augment_hflip=hflip, early_stopping_patience=patience,
        best_metric=best_metric, scst=scst, scst_samples=scst_samples, scst_top_p=scst_top_p,
        scst_reward=scst_reward, scst_baseline=scst_baseline, targets=targets, scst_weight_start=w_start, scst_weight_end=w_end,
        eval_every_epoch=eval_every_epoch, eval_max_new_tokens=eval_max_new_tokens, seed=seed, device=device,
        resume=resume or None,
    )
    result = train_captioner(cfg)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"train: {result.steps} steps -> {result.output_dir}"
                  + (f"; skipped {result.skipped_images} unreadable image(s)" if result.skipped_images else "")
                  + ("; stopped early" if result.stopped_early else ""))
    if result.evals:
        last = result.evals[-1]
        shown = ", ".join(f"{k} {last[k]:.4f}" for k in ("val_loss", "CIDEr", "BLEU-4") if k in last)
        console.print(f"last evaluation (epoch {last['epoch']}): {shown}")
    if result.best:
        console.print(f"best: {result.best}")
    console.print(f"final: {result.final}  (use: captionkit describe ... --captioner {result.final})")


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app`` (the main CLI, or a test app)."""
    app.add_typer(train_app, name="train")


# ------------------------------------------------------------------------------------------------ projector


@train_app.command(
    "projector",
    epilog="Examples:\n\n"
    "  captionkit train projector --stage 1 --data synth/captions.jsonl --vision openai/clip-vit-large-patch14-336 "
    "--lm Qwen/Qwen2.5-0.5B-Instruct --out runs/p1\n\n"
    "  captionkit train projector --stage 2 --data synth/vqa.jsonl --init runs/p1/final --out runs/p2\n\n"
    "  captionkit ask photo.png \"what colour is the background?\" --captioner runs/p2/final",
)
def projector(
    data: Path = typer.Option(..., "--data", help="Stage 1: captions.jsonl rows; stage 2: LLaVA conversations."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: checkpoint-<step>/, best/, final/, metrics."),
    stage: int = typer.Option(1, "--stage", help="1: projector only on captions; 2: LoRA + projector on "
                              "conversations (start from stage 1 with --init)."),
    vision: Optional[str] = typer.Option(None, "--vision", help="Vision encoder (CLIP/SigLIP folder or id)."),
    lm: Optional[str] = typer.Option(None, "--lm", help="Causal LM (folder or id)."),
    init: Optional[str] = typer.Option(None, "--init", help="A Llava folder to start from (stage 1's final/)."),
    projector_type: Optional[str] = typer.Option(None, "--projector", help="mlp (LLaVA-1.5 GELU MLP), linear, or "
                                                 "residual (Linear + residual MLP block; loads in captionkit and with "
                                                 "trust_remote_code, not in vLLM). [default: mlp]"),
    chat_template: Optional[str] = typer.Option(None, "--chat-template", help="Jinja file or text for the "
                                                "processor. [default: ChatML for ChatML LMs, else LLaVA-1.5]"),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation rows. [default: split val rows]"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the data. [default: 1]"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps; ends the run."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass. [default: 8]"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1, help="Batches per optimizer step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Projector learning rate. [default: 1e-3]"),
    lora_lr: Optional[float] = typer.Option(None, "--lora-lr", help="Stage 2 LoRA learning rate. [default: --lr]"),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=8, help="Tokens per row. [default: 1024]"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r", min=1, help="LoRA rank (stage 2). [default: 8]"),
    lora_alpha: Optional[int] = typer.Option(None, "--lora-alpha", min=1, help="LoRA alpha. [default: 16]"),
    eval_every_epoch: Optional[bool] = typer.Option(None, "--eval/--no-eval", help="Score the validation split "
                                                    "after each epoch. [default: on]"),
    best_metric: Optional[str] = typer.Option(None, "--best-metric", help="Picks best/. [default: CIDEr (stage 1), "
                                              "exact_match (stage 2)]"),
    save_steps: Optional[int] = typer.Option(None, "--save-steps", min=1, help="Also checkpoint every N steps."),
    seed: Optional[int] = typer.Option(None, "--seed", help="[default: 0]"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda. [default: auto]"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
) -> None:
    """Train a LLaVA-style model (vision encoder + projector + LM). Prompts are rendered exactly as `captionkit
    describe/ask` renders them; final/ is a plain Llava folder: `captionkit ask IMAGE "Q" --captioner <out>/final`."""
    from rich.console import Console

    from captionkit.training.projector import ProjectorTrainConfig, train_projector

    cfg = ProjectorTrainConfig.from_options(
        data=str(data), output_dir=str(out), stage=stage, vision=vision, lm=lm, init=init, projector=projector_type,
        chat_template=chat_template, val_data=str(val_data) if val_data else None, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, lora_lr=lora_lr,
        max_length=max_length, lora_r=lora_r, lora_alpha=lora_alpha, eval_every_epoch=eval_every_epoch,
        best_metric=best_metric, save_steps=save_steps, seed=seed, device=device, resume=resume or None,
    )
    result = train_projector(cfg)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"train: {result.steps} steps -> {result.output_dir}")
    if result.evals:
        last = result.evals[-1]
        shown = ", ".join(f"{k} {last[k]:.4f}" for k in ("val_loss", "CIDEr", "exact_match") if k in last)
        console.print(f"last evaluation (epoch {last['epoch']}): {shown}")
    if result.best:
        console.print(f"best: {result.best}")
    console.print(f"final: {result.final}  (use: captionkit ask IMAGE \"QUESTION\" --captioner {result.final})")
