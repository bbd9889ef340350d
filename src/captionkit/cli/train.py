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


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app`` (the main CLI, or a test app)."""
    app.add_typer(train_app, name="train")
