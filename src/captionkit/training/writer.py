"""Fine-tune a post writer (a causal LM) on the instruction data ``captionkit prepare`` writes.

Methods: ``lora`` (peft LoRA), ``qlora`` (LoRA on a 4-bit nf4 base; CUDA + bitsandbytes only), ``llama-adapter``
(peft AdaptionPrompt, for the architectures peft supports) and ``full`` (every weight trains).

Data: Alpaca rows ``{"instruction", "input", "output"}`` or chat rows ``{"messages": [system, user, assistant]}``
(JSONL). Each row is rendered exactly as the local writer renders its prompts at inference: the tokenizer's chat
template over system + user with ``add_generation_prompt=True`` (or the plain format without a template); the
response and EOS follow, and only the response tokens carry a loss (labels are -100 on the prompt and padding).
A row missing the needed fields stops the run with a DatasetError naming file, line and fields; rows whose
prompt alone fills ``max_length`` are skipped and counted.

The loop is plain PyTorch (``training.common.TrainLoop``, shared by every trainer): AdamW, warmup +
cosine/linear/constant schedule, gradient accumulation and clipping. Each optimizer step is logged to
``metrics.csv`` and ``metrics.jsonl`` (and TensorBoard when installed). Each epoch (and every ``save_steps``)
writes ``checkpoint-<step>/`` with the model/adapter, optimizer, scheduler, RNG states and position in the data,
so ``resume`` continues on the same trajectory as an uninterrupted run. After each epoch the validation split is
scored (val loss, and greedy generations through captionkit's ``evaluate`` with the coco metrics); the best
epoch by ``best_metric`` is copied to ``best/``. ``final/`` holds the adapter folder (or the merged/full model)
that ``captionkit write --writer <folder>`` loads.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, DatasetError
from captionkit.extras import available, require
from captionkit.io.jsonl import json_objects
from captionkit.training.common import (  # noqa: F401  (re-exported: older imports name this module)
    CHECKPOINT_PREFIX,
    CONFIG_FILE,
    LOWER_IS_BETTER,
    PRESETS_DIR,
    STATE_FILE,
    MetricsLog,
    TrainConfig,
    TrainLoop,
    TrainResult,
    epoch_order,
    is_oom,
    latest_checkpoint,
    log_step,
    make_scheduler,
    prepare_output,
    preset_names,
    read_yaml_preset,
    record_eval,
    trainable_params,
)

log = logging.getLogger("captionkit")

METHODS: tuple[str, ...] = ("lora", "qlora", "llama-adapter", "full")
SCHEDULERS: tuple[str, ...] = ("cosine", "linear", "constant")
OPTIMIZERS: tuple[str, ...] = ("adamw", "paged_adamw_8bit")
SKIP_TOO_LONG = "prompt longer than max_length"

# Default LoRA targets per config.model_type (the attention projections); peft's own table is the fallback.
TARGETS_QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{mt: TARGETS_QKVO for mt in ("llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mistral", "mixtral",
                                   "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "granite", "smollm3")},
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "phi3": ["qkv_proj", "o_proj"],
    "falcon": ["query_key_value"],
    "gpt_neox": ["query_key_value"],
    "bloom": ["query_key_value"],
    "gpt2": ["c_attn"],
    "opt": ["q_proj", "v_proj"],
}


# ------------------------------------------------------------------------------------------------ config


@dataclass
class WriterTrainConfig(TrainConfig):
    """Everything one writer training run needs. Load from a preset with :meth:`from_preset`."""

    data: str | None = None
    model: str | None = None
    method: str = "lora"
    output_dir: str | None = None
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; when set it ends the run (epochs cycle as needed)
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    max_length: int = 512
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: chosen per architecture (DEFAULT_TARGETS)
    adapter_layers: int | None = None  # llama-adapter: layers from the top (None: all)
    adapter_len: int = 10  # llama-adapter: adaption prompt tokens per layer
    quant_type: str = "nf4"  # qlora
    double_quant: bool = True  # qlora
    optimizer: str = "adamw"
    merge: bool = False
    gradient_checkpointing: bool = False
    eval_every_epoch: bool = True
    eval_max_new_tokens: int = 64
    eval_max_items: int | None = None  # generate for at most this many validation rows (val loss uses all)
    eval_batch_size: int | None = None  # None: batch_size
    eval_metrics: list[str] | None = None  # None: every coco metric (evaluate()); or a subset of BLEU, METEOR,
    # ROUGE-L, CIDEr (METEOR starts a Java process: ~6 s per evaluation)
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # float32 on CPU; bfloat16 base weights on GPU for adapter methods
    save_steps: int | None = None
    save_total_limit: int | None = 2  # checkpoint-* folders kept (best/ and final/ are separate copies)
    best_metric: str = "CIDEr"  # a coco metric (higher is better) or "loss" (validation loss)
    val_data: str | None = None  # None: the ``.val`` file beside ``data`` when it exists
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("--data: give the training file (JSONL from `captionkit prepare`)")
        if not self.model:
            raise ConfigError("--model: give the base model (hub id or folder)")
        if not self.output_dir:
            raise ConfigError("--out: give the output folder")
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler {self.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        self.check_at_least(1, "epochs", "batch_size", "grad_accum", "max_length", "lora_r", "adapter_len",
                            "eval_max_new_tokens", "max_steps", "save_steps", "eval_max_items", "eval_batch_size",
                            "adapter_layers")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0 (got {self.lr})")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora-dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.merge and self.method == "llama-adapter":
            raise ConfigError("--merge: a llama-adapter (adaption prompt) cannot be merged into the base weights; "
                              "drop --merge, or train with --method lora")
        if self.method == "qlora":
            check_qlora_possible(self.device)
        if self.optimizer == "paged_adamw_8bit" and not available("bitsandbytes"):
            raise ConfigError("optimizer paged_adamw_8bit needs bitsandbytes (and a CUDA GPU); it is not installed "
                              "here. Use optimizer: adamw, or --method lora")


def check_qlora_possible(device: str = "auto") -> None:
    """QLoRA needs a CUDA GPU and bitsandbytes: say which is missing and what to use instead."""
    import torch

    missing = []
    if device == "cpu" or not torch.cuda.is_available():
        missing.append("no CUDA GPU is available" if device != "cpu" else "--device cpu was asked for")
    if not available("bitsandbytes"):
        missing.append("bitsandbytes is not installed")
    if missing:
        raise ConfigError(f"--method qlora needs a CUDA GPU and bitsandbytes (4-bit weights), but {' and '.join(missing)}"
                          "; use --method lora (same adapter, full-precision base) on this machine")


def load_preset(preset: str | Path) -> dict[str, Any]:
    """A writer preset's keys: ``preset`` is a name (``adobe-lora``) or a YAML file. Unknown keys raise ConfigError."""
    return read_yaml_preset(preset, WriterTrainConfig.field_names())


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Example:
    id: str
    system: str | None
    user: str
    response: str


def read_examples(path: str | Path) -> list[Example]:
    """Alpaca or chat rows from a JSONL file; a row missing its fields raises DatasetError (file, line, fields)."""
    from captionkit.prepare import SYSTEM_PROMPT

    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"--data {path}: no such file")
    examples: list[Example] = []
    for lineno, row in json_objects(path):
        rid = str(row.get("id", lineno))
        if "messages" in row:
            examples.append(_chat_example(row["messages"], rid, path, lineno))
            continue
        missing = [k for k in ("instruction", "output") if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise DatasetError(f"{path}:{lineno}: missing or empty field(s) {', '.join(missing)}; rows need "
                               "instruction + output (+ input) (Alpaca) or messages (chat), as `captionkit "
                               "prepare` writes them")
        text = row.get("input") or ""
        user = f"{row['instruction']}\n\n{text}" if str(text).strip() else row["instruction"]
        examples.append(Example(rid, SYSTEM_PROMPT, user, row["output"]))
    if not examples:
        raise DatasetError(f"{path}: holds no rows")
    return examples


def _chat_example(messages: Any, rid: str, path: Path, lineno: int) -> Example:
    ok = isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                            and m.get("role") in ("system", "user", "assistant") for m in messages)
    if not ok or not messages or messages[-1]["role"] != "assistant" or \
            not any(m["role"] == "user" for m in messages):
        raise DatasetError(f"{path}:{lineno}: field messages must be a list of {{role, content}} with a user "
                           "message and ending with the assistant's answer")
    system = "\n\n".join(m["content"] for m in messages[:-1] if m["role"] == "system") or None
    user = "\n\n".join(m["content"] for m in messages[:-1] if m["role"] != "system")
    return Example(rid, system, user, messages[-1]["content"])


def render_prompt(tokenizer: Any, system: str | None, user: str) -> str:
    """The prompt text exactly as :class:`captionkit.writers.local.LocalWriter` renders it at inference."""
    from captionkit.writers.base import Prompt
    from captionkit.writers.local import plain_prompt

    prompt = Prompt(system, user)
    if not getattr(tokenizer, "chat_template", None):
        return plain_prompt(prompt)
    attempts = [prompt.messages()]
    if system:
        attempts.append([{"role": "user", "content": prompt.text()}])
    error: Exception | None = None
    for messages in attempts:
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja2 TemplateError, e.g. "System role not supported"
            error = exc
    raise ConfigError(f"--model: its chat template fails on the training prompts ({error})")


def encode_example(tokenizer: Any, ex: Example, max_length: int) -> dict[str, list[int]] | None:
    """input_ids and labels (-100 on the prompt); None when the prompt alone fills ``max_length``."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    prompt_ids = tokenizer(render_prompt(tokenizer, ex.system, ex.user), add_special_tokens=not chat)["input_ids"]
    response_ids = tokenizer(ex.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        return None
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def collate(rows: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch: attention_mask 0 and labels -100 on padding."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def encode_all(tokenizer: Any, examples: list[Example], max_length: int, path: Any) -> list[dict[str, list[int]]]:
    rows, skipped = [], Counter()
    for ex in examples:
        enc = encode_example(tokenizer, ex, max_length)
        if enc is None:
            skipped[SKIP_TOO_LONG] += 1
        else:
            rows.append(enc)
    if skipped:
        log.warning("%s: skipped %d row(s) whose prompt is longer than --max-length %d", path,
                    skipped[SKIP_TOO_LONG], max_length)
    if not rows:
        raise DatasetError(f"{path}: every row's prompt is longer than --max-length {max_length}; raise it")
    return rows


# ------------------------------------------------------------------------------------------------ model


def linear_names(model: Any, limit: int = 12) -> list[str]:
    """Distinct leaf names of the model's Linear (and GPT-2 Conv1D) layers, for error messages."""
    import torch

    names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    return names[:limit]


def choose_targets(model: Any, requested: list[str] | None) -> list[str]:
    model_type = getattr(model.config, "model_type", "")
    targets = list(requested) if requested else DEFAULT_TARGETS.get(model_type)
    if not targets:
        try:
            from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS
            targets = list(PEFT_TARGETS.get(model_type) or [])
        except ImportError:
            targets = []
    if not targets:
        raise ConfigError(f"--target-modules: no default for model type {model_type!r}; name the layers to adapt, "
                          f"e.g. some of its Linear layers: {', '.join(linear_names(model))}")
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise ConfigError(f"--target-modules: the model ({model_type or 'unknown type'}) has no module named "
                          f"{', '.join(missing)}; its Linear layers are named: {', '.join(linear_names(model))}")
    return targets


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return device


def _dtype(cfg: WriterTrainConfig, device: str) -> Any:
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device.startswith("cuda") and cfg.method != "full":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft still asks transformers 5 for is_gradient_checkpointing (a FutureWarning on every call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def model_source(spec: str) -> str:
    """A local model folder as an absolute path (so adapter_config.json names a base that loads from anywhere)."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def build_model(cfg: WriterTrainConfig, device: str) -> tuple[Any, Any]:
    """(model ready to train on ``device``, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model_source(cfg.model or "")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"--model {cfg.model}: cannot load its tokenizer ({exc})") from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"--model {cfg.model}: the tokenizer has no end-of-sequence token, so the model could "
                          "not learn where a post ends")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kw: dict[str, Any] = {"dtype": _dtype(cfg, device)}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.quant_type, bnb_4bit_use_double_quant=cfg.double_quant,
            bnb_4bit_compute_dtype=kw["dtype"])
        kw["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {cfg.model}: cannot load it as a causal LM ({exc})") from None
    if cfg.method != "qlora":
        model = model.to(device)
    if cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # transformers 5 renamed it (the old name warns)
        model.config.use_cache = False
    if cfg.method == "full":
        model.train()
        return model, tokenizer

    peft = require("peft", "train", "LoRA/adapter training (pip install peft)")
    if cfg.method == "llama-adapter":
        from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

        mt = model.config.model_type
        if mt not in TRANSFORMERS_MODEL_CONFIG:
            raise ConfigError(f"--method llama-adapter: peft's adaption prompt supports the model types "
                              f"{', '.join(sorted(TRANSFORMERS_MODEL_CONFIG))}, not {mt!r}; use --method lora")
        n_layers = model.config.num_hidden_layers
        peft_cfg = peft.AdaptionPromptConfig(adapter_len=cfg.adapter_len,
                                             adapter_layers=min(cfg.adapter_layers or n_layers, n_layers),
                                             task_type="CAUSAL_LM")
    else:
        targets = choose_targets(model, cfg.target_modules)
        if cfg.method == "qlora":
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        peft_cfg = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                   target_modules=targets, task_type="CAUSAL_LM")
    with _quiet_peft():
        model = peft.get_peft_model(model, peft_cfg)
    if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    # Adapters train in float32 even on a bf16 base (stable AdamW updates).
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    model.train()
    return model, tokenizer


def make_optimizer(cfg: WriterTrainConfig, model: Any) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "paged_adamw_8bit":
        bnb = require("bitsandbytes", "train", "8-bit optimizers")
        return bnb.optim.PagedAdamW8bit(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _oom_error(cfg: WriterTrainConfig, where: str) -> ConfigError:
    return ConfigError(
        f"out of memory during {where} (--batch-size {cfg.batch_size}, --max-length {cfg.max_length}); use a "
        f"smaller --batch-size with a larger --grad-accum (same effective batch), a shorter --max-length, "
        f"--gradient-checkpointing, or --method lora/qlora instead of full")


# ------------------------------------------------------------------------------------------------ saving


def save_model(model: Any, tokenizer: Any, folder: Path, *, merge: bool = False) -> None:
    """The adapter folder (adapter_config.json names the base), or a full model when ``merge`` or not peft."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with _quiet_peft():
        if hasattr(model, "peft_config") and merge:
            import copy

            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(folder)
        else:
            model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _load_weights(model: Any, folder: Path, method: str) -> None:
    """Put a checkpoint's trained weights into the freshly built model."""
    from safetensors.torch import load_file

    if method == "full":
        files = sorted(folder.glob("*.safetensors"))
        state: dict[str, Any] = {}
        for f in files:
            state.update(load_file(f))
        _missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise ConfigError(f"--resume {folder}: its weights do not match the model ({unexpected[:3]})")
        return
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))


# ------------------------------------------------------------------------------------------------ evaluation


def generate(model: Any, tokenizer: Any, examples: list[Example], max_new_tokens: int, batch_size: int,
             device: str) -> dict[str, str]:
    """Greedy generations for ``examples`` (left-padded batches, as the local writer does): id -> text."""
    import torch

    chat = bool(getattr(tokenizer, "chat_template", None))
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: dict[str, str] = {}
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            texts = [render_prompt(tokenizer, ex.system, ex.user) for ex in chunk]
            enc = tokenizer(texts, add_special_tokens=not chat, padding=True, return_tensors="pt").to(device)
            with torch.inference_mode():
                ids = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                     max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     pad_token_id=tokenizer.pad_token_id)
            new = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.update({ex.id: text.strip() for ex, text in zip(chunk, new)})
    finally:
        tokenizer.padding_side = side
    return out


def _mean_loss(model: Any, rows: list[dict[str, list[int]]], pad_id: int, batch_size: int, device: str) -> float:
    """Token-weighted loss over ``rows``."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start:start + batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            if n:
                total += float(model(**batch).loss) * n
                count += n
    return total / max(count, 1)


def evaluate_epoch(model: Any, tokenizer: Any, val: list[Example], val_rows: list[dict[str, list[int]]],
                   cfg: WriterTrainConfig, device: str) -> dict[str, Any]:
    """val_loss plus coco metrics of greedy generations (captionkit's ``evaluate``)."""
    from captionkit.eval.evaluate import evaluate

    model.eval()
    batch = cfg.eval_batch_size or cfg.batch_size
    try:
        scores: dict[str, Any] = {"val_loss": _mean_loss(model, val_rows, tokenizer.pad_token_id, batch, device)}
        items = val[:cfg.eval_max_items] if cfg.eval_max_items else val
        preds = generate(model, tokenizer, items, cfg.eval_max_new_tokens, batch, device)
    except (RuntimeError, MemoryError) as exc:
        if is_oom(exc):
            raise _oom_error(cfg, "evaluation") from None
        raise
    finally:
        model.train()
    # An empty generation would score as missing: keep it as an (empty-ish) prediction.
    preds = {k: v or "." for k, v in preds.items()}
    refs = {ex.id: [ex.response] for ex in items}
    if cfg.eval_metrics:
        from captionkit.eval.coco import coco_scores

        corpus = coco_scores(refs, preds, metrics=cfg.eval_metrics)[0]
    else:
        corpus = evaluate({"model": preds}, refs, metrics=["coco"], n_resamples=0).systems[0].corpus
    scores.update({k: float(v) for k, v in corpus.items()})
    scores["samples"] = [{"id": ex.id, "prediction": preds[ex.id], "reference": ex.response} for ex in items[:5]]
    return scores


def default_val_path(data: str | Path) -> Path | None:
    from captionkit.prepare import val_path

    path = val_path(Path(data).expanduser())
    return path if path.is_file() else None


def train_writer(cfg: WriterTrainConfig) -> TrainResult:
    """Run (or resume) one training run; see the module docstring for what lands in ``cfg.output_dir``."""
    cfg.validate()
    import torch

    device = resolve_device(cfg.device)
    train_examples = read_examples(cfg.data or "")
    val_file = Path(cfg.val_data).expanduser() if cfg.val_data else default_val_path(cfg.data or "")
    val_examples = read_examples(val_file) if val_file else []
    resume_from = prepare_output(cfg)
    model, tokenizer = build_model(cfg, device)
    rows = encode_all(tokenizer, train_examples, cfg.max_length, cfg.data)
    val_rows = encode_all(tokenizer, val_examples, cfg.max_length, val_file) if val_examples else []
    pad_id = tokenizer.pad_token_id

    def train_unit(window: list[list[int]], _state: Any) -> tuple[float, dict[str, Any]]:
        """Token-weighted cross-entropy over the window's batches, backpropagated batch by batch."""
        n_tokens = sum(int((torch.tensor(rows[i]["labels"][1:]) != -100).sum()) for b in window for i in b)
        loss_sum = 0.0
        for b in window:
            batch = {k: v.to(device) for k, v in collate([rows[i] for i in b], pad_id).items()}
            labels = batch.pop("labels")
            logits = model(**batch, use_cache=False).logits[:, :-1].float()
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                reduction="sum") / max(n_tokens, 1)
            loss.backward()
            loss_sum += float(loss.detach())
        return loss_sum, {}

    def evaluate() -> dict[str, Any]:
        return evaluate_epoch(model, tokenizer, val_examples, val_rows, cfg, device)

    return TrainLoop(
        cfg, "train writer", len(rows), trainable_params(model), make_optimizer(cfg, model), train_unit,
        save_model=lambda folder: save_model(model, tokenizer, folder, merge=cfg.merge or cfg.method == "full"),
        save_checkpoint=lambda folder: save_model(model, tokenizer, folder / "model"),
        load_checkpoint=lambda folder: _load_weights(model, folder / "model", cfg.method),
        evaluate=evaluate if val_examples and cfg.eval_every_epoch else None, metric=cfg.best_metric,
        oom_error=lambda where: _oom_error(cfg, where), resume_from=resume_from).run()
