"""Train a LLaVA-style vision-language model: a vision encoder + a projector + a causal LM.

:func:`assemble_llava` builds a standard ``LlavaForConditionalGeneration`` from a vision encoder (a CLIP / SigLIP
vision model folder or id, or a full CLIP/SigLIP model whose vision half is used) and a causal LM, adds the image
token to the tokenizer and saves a ``LlavaProcessor`` (the vision encoder's image processor + the tokenizer + a
chat template), so the folder loads with ``AutoModelForImageTextToText`` + ``AutoProcessor`` and with captionkit's
``chat_vlm`` backend (``captionkit describe/ask --captioner <folder>``).

Projectors (``--projector``); ``mlp`` and ``linear`` are saved as the stock ``LlavaMultiModalProjector``
(linear_1 -> act -> linear_2), so transformers and vLLM load those folders as they are:

* ``mlp`` (default): LLaVA-1.5's 2-layer GELU MLP.
* ``linear``: ``projector_hidden_act: linear`` (identity between the two layers) with ``linear_2`` initialised
  to the identity, so it starts as (and stays) a single linear map, as in LLaVA-1.0.
* ``residual``: the seed system 002's Linear -> residual MLP block (SimpleResBlock), which the stock projector
  cannot express. Saved as :mod:`captionkit.models.residual_llava` (a ``LlavaForConditionalGeneration`` subclass
  differing only in the projector, ``model_type: captionkit_residual_llava``): captionkit loads it like any Llava
  folder, plain transformers with ``trust_remote_code=True`` (the file is copied into the folder), vLLM not.

Training (plain PyTorch: the trainers' shared ``TrainLoop``, with the writer's schedule, checkpoints and metrics):

* ``stage 1`` (caption pretraining): vision tower and LM frozen, only the projector trains, on
  ``captions.jsonl`` rows (``{"id", "image", "caption", "references"?, "split"?}``); the prompt is the image +
  the default caption instruction of the chat_vlm captioner, the target the caption.
* ``stage 2`` (instruction tuning): LLaVA conversation rows (``{"id", "image", "conversations": [{"from":
  "human", "value": "<image>\\nQ"}, {"from": "gpt", "value": "A"}, ...]}``), LoRA (peft) on the LM's attention
  plus the projector; starts from stage 1's folder (``init``). The LoRA is merged before saving, so every saved
  folder is a plain Llava model.

Prompts are rendered with ``processor.apply_chat_template`` on exactly the message structure
``ChatVLMCaptioner.prompt_text`` uses (``[{"role": "user", "content": [{"type": "image"}, {"type": "text",
"text": question}]}]`` + generation prompt), and tokenized by the processor as at inference; the answer and the
template's end-of-turn text follow, and only answer tokens (gpt turns) carry a loss. Rows with ``split: val``
(or ``val_data``) are the validation set: val loss, then per-epoch generation scored with captionkit's
``evaluate`` (coco metrics, stage 1) or exact match of the answers (stage 2).
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, DatasetError
from captionkit.io.jsonl import json_objects
from captionkit.models import RESIDUAL_LLAVA_TYPE
from captionkit.training.common import TrainConfig, TrainLoop, TrainResult, prepare_output, trainable_params
from captionkit.training.writer import DEFAULT_TARGETS, SCHEDULERS, _quiet_peft, model_source, resolve_device

log = logging.getLogger("captionkit")

PROJECTORS: tuple[str, ...] = ("mlp", "linear", "residual")
STAGES: tuple[int, ...] = (1, 2)
IMAGE_TOKEN = "<image>"
TRAINABLE_FILE = "trainable.pt"
# Vision families without a CLS token: every patch token is an image feature.
NO_CLS = ("siglip_vision_model", "siglip2_vision_model")

# LLaVA-1.5's conversation format ("USER: <image>\nQ ASSISTANT: A</s>"); {eos} is filled in per tokenizer.
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '' }}{% elif message['role'] == 'user' %}{{ 'USER: ' }}"
    "{% else %}{{ 'ASSISTANT: ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\\n' }}{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '@EOS@' }}{% endif %}{{ ' ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# ChatML (Qwen-style LMs), with the image placeholder in the user turn.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\\n' }}{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# ------------------------------------------------------------------------------------------------ config


@dataclass
class ProjectorTrainConfig(TrainConfig):
    """One stage of LLaVA-style training. Stage 1 needs ``vision`` + ``lm`` (or ``init``); stage 2 ``init``."""

    data: str | None = None
    output_dir: str | None = None
    stage: int = 1
    vision: str | None = None  # vision encoder folder / id (stage 1 assembles vision + lm)
    lm: str | None = None  # causal LM folder / id
    init: str | None = None  # an existing Llava folder to start from (stage 2: stage 1's final/)
    projector: str = "mlp"
    vision_feature_layer: int = -2
    chat_template: str | None = None  # a Jinja file or text; None: ChatML for ChatML LMs, else LLaVA-1.5's
    image_root: str | None = None  # image paths are relative to this (None: the data file's folder)
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3  # projector (stage 1 and 2)
    lora_lr: float | None = None  # stage 2 LoRA weights (None: lr)
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    max_length: int = 1024
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: the LM's attention projections
    eval_every_epoch: bool = True
    eval_max_new_tokens: int = 32
    eval_max_items: int | None = None
    eval_batch_size: int | None = None
    eval_metrics: list[str] | None = None  # stage 1 subset of BLEU, METEOR, ROUGE-L, CIDEr (None: all)
    best_metric: str | None = None  # None: CIDEr (stage 1), exact_match (stage 2); or "loss"
    seed: int = 0
    device: str = "auto"
    save_steps: int | None = None
    save_total_limit: int | None = 2
    val_data: str | None = None  # None: rows with split "val" in ``data``
    resume: bool = False
    progress: bool = True

    @classmethod
    def from_options(cls, **values: Any) -> ProjectorTrainConfig:
        """The config from keyword options; None values keep the defaults."""
        return cls.from_dict({k: v for k, v in values.items() if v is not None})

    @property
    def metric(self) -> str:
        return self.best_metric or ("CIDEr" if self.stage == 1 else "exact_match")

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("--data: give the training file (captions.jsonl for stage 1, LLaVA conversations "
                              "for stage 2)")
        if not self.output_dir:
            raise ConfigError("--out: give the output folder")
        if self.stage not in STAGES:
            raise ConfigError(f"--stage {self.stage}: use 1 (projector pretraining) or 2 (instruction tuning)")
        check_projector(self.projector)
        if not self.init and not (self.vision and self.lm):
            raise ConfigError("give --init <llava folder> (stage 2: stage 1's final/), or --vision and --lm to "
                              "assemble a new model")
        if self.init and (self.vision or self.lm):
            raise ConfigError("--init already holds the vision encoder and LM; drop --vision/--lm")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler {self.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
        self.check_at_least(1, "epochs", "batch_size", "grad_accum", "max_length", "lora_r", "eval_max_new_tokens",
                            "max_steps", "save_steps", "eval_max_items", "eval_batch_size")
        if not self.lr > 0 or (self.lora_lr is not None and not self.lora_lr > 0):
            raise ConfigError("--lr / --lora-lr must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})")


def check_projector(projector: str) -> None:
    if projector not in PROJECTORS:
        raise ConfigError(f"--projector {projector!r}: use one of {', '.join(PROJECTORS)}")


# ------------------------------------------------------------------------------------------------ model


def default_chat_template(tokenizer: Any) -> str:
    """ChatML when the LM's own template is ChatML, else LLaVA-1.5's USER/ASSISTANT format (ending turns in EOS)."""
    own = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(own, str) and "<|im_start|>" in own:
        return CHATML_TEMPLATE
    return LLAVA_TEMPLATE.replace("@EOS@", tokenizer.eos_token or "")


def _read_template(spec: str) -> str:
    path = Path(spec).expanduser()
    return path.read_text(encoding="utf-8") if path.is_file() else spec


def _vision_parts(vision: Any) -> tuple[Any, Any | None, Any | None]:
    """(vision config, pretrained vision module or None, image processor or None) of a folder/id or a config."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, PretrainedConfig

    if isinstance(vision, PretrainedConfig):
        return getattr(vision, "vision_config", None) or vision, None, None
    source = model_source(str(vision))
    try:
        config = AutoConfig.from_pretrained(source)
        module = AutoModel.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--vision {vision}: cannot load it as a vision model ({exc})") from None
    try:
        image_processor = AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--vision {vision}: no image processor saved beside it ({exc}); save one with "
                          "image_processor.save_pretrained(folder)") from None
    vision_config = getattr(config, "vision_config", None) or config
    return vision_config, module, image_processor


def _image_size(image_processor: Any, vision_config: Any) -> int:
    for attr in ("crop_size", "size"):
        size = getattr(image_processor, attr, None)
        if isinstance(size, dict) and size.get("height"):
            return int(size["height"])
    return int(vision_config.image_size)


def assemble_llava(vision: Any, lm: str, *, projector: str = "mlp", vision_feature_layer: int = -2,
                   chat_template: str | None = None, image_processor: Any = None, seed: int = 0) -> tuple[Any, Any]:
    """(LlavaForConditionalGeneration, LlavaProcessor) from a vision encoder and a causal LM; see the module doc."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    check_projector(projector)
    vision_config, vision_module, loaded_processor = _vision_parts(vision)
    image_processor = image_processor or loaded_processor
    if image_processor is None:
        raise ConfigError("assemble_llava: give image_processor= when vision is a config")
    source = model_source(lm)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        language = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--lm {lm}: cannot load it as a causal LM ({exc})") from None
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"--lm {lm}: the tokenizer has no end-of-sequence token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    old_rows = language.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old_rows:  # new rows = the mean of the old ones: deterministic, and a neutral logit
        language.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for matrix in (language.get_input_embeddings().weight, language.get_output_embeddings().weight):
                matrix[old_rows:] = matrix[:old_rows].mean(dim=0, keepdim=True)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    has_cls = vision_config.model_type not in NO_CLS
    strategy = "default" if has_cls else "full"
    patch = int(vision_config.patch_size)
    side = _image_size(image_processor, vision_config)
    text_config = copy.deepcopy(language.config)
    config_class, model_class = LlavaConfig, LlavaForConditionalGeneration
    if projector == "residual":
        from captionkit.models.residual_llava import (
            ResidualLlavaConfig,
            ResidualLlavaForConditionalGeneration,
        )

        config_class, model_class = ResidualLlavaConfig, ResidualLlavaForConditionalGeneration
    config = config_class(
        vision_config=vision_config.to_dict(), text_config=text_config.to_dict(), image_token_index=image_token_id,
        projector_hidden_act="gelu" if projector == "mlp" else "linear", multimodal_projector_bias=True,
        vision_feature_layer=vision_feature_layer, vision_feature_select_strategy=strategy,
        image_seq_length=(side // patch) ** 2, tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings",
                                                                                  False)),
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = model_class(config)
    finally:
        torch.random.set_rng_state(state)
    if vision_module is not None:
        tower = model.model.vision_tower
        src = vision_module
        if type(src) is not type(tower) and hasattr(src, "vision_model") and hasattr(tower, "vision_model"):
            src, tower = src.vision_model, tower.vision_model
        missing, unexpected = tower.load_state_dict(src.state_dict(), strict=False)
        if missing or unexpected:
            raise ConfigError(f"--vision {vision}: its weights do not fit the vision tower ({(missing + unexpected)[:3]})")
    base = language.get_decoder() if hasattr(language, "get_decoder") else language.model
    model.model.language_model.load_state_dict(base.state_dict())
    model.lm_head.load_state_dict(language.get_output_embeddings().state_dict())
    if projector == "linear":
        with torch.no_grad():
            model.model.multi_modal_projector.linear_2.weight.copy_(torch.eye(config.text_config.hidden_size))
            model.model.multi_modal_projector.linear_2.bias.zero_()
    gen = language.generation_config
    model.generation_config.eos_token_id = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    if gen.min_new_tokens:
        model.generation_config.min_new_tokens = gen.min_new_tokens
    template = _read_template(chat_template) if chat_template else default_chat_template(tokenizer)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy=strategy, chat_template=template,
                               image_token=IMAGE_TOKEN, num_additional_image_tokens=1 if has_cls else 0)
    return model, processor


def load_llava(folder: str) -> tuple[Any, Any]:
    """A saved Llava folder (``assemble_llava`` output, stage 1's final/) and its processor."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from captionkit.models.residual_llava import register

    register()
    source = model_source(folder)
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--init {folder}: cannot load it as a Llava model with its processor ({exc})") from None
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


def save_llava(model: Any, processor: Any, folder: Path) -> Path:
    """A plain Llava folder (LoRA merged when ``model`` is a peft model) + processor."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with _quiet_peft():
        plain = copy.deepcopy(model).merge_and_unload() if hasattr(model, "peft_config") else model
        plain.save_pretrained(folder)
    processor.save_pretrained(folder)
    if plain.config.model_type == RESIDUAL_LLAVA_TYPE:
        from captionkit.models.residual_llava import save_remote_code

        save_remote_code(folder)
    return folder


def projector_params(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if "multi_modal_projector" in n]


def prepare_for_stage(model: Any, cfg: ProjectorTrainConfig, device: str) -> Any:
    """Freeze everything but the projector (stage 1), or add LoRA to the LM and keep the projector trainable."""
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.stage == 2:
        import peft

        lm_type = model.config.text_config.model_type
        targets = cfg.target_modules or DEFAULT_TARGETS.get(lm_type) or ["q_proj", "k_proj", "v_proj", "o_proj"]
        leaves = {n.rsplit(".", 1)[-1] for n, _ in model.model.language_model.named_modules()}
        missing = [t for t in targets if t not in leaves]
        if missing:
            raise ConfigError(f"--target-modules: the LM ({lm_type}) has no module named {', '.join(missing)}")
        pattern = rf".*language_model\..*\.({'|'.join(map(re.escape, targets))})$"
        lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                               target_modules=pattern)
        with _quiet_peft():
            model = peft.get_peft_model(model, lora)
    for _, p in projector_params(model):
        p.requires_grad_(True)
    model.train()
    return model


def trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, state: dict[str, Any], where: Any) -> None:
    import torch

    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing or set(state) != {n for n, p in params.items() if p.requires_grad}:
        raise ConfigError(f"--resume {where}: the checkpoint's trainable weights do not match this model "
                          f"(e.g. {missing[:3]}); resume with the same --stage/--projector/LoRA settings")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Turn:
    question: str
    answer: str


@dataclass
class Sample:
    id: str
    image: Path
    turns: list[Turn]
    references: list[str]  # stage 1: the captions to score against; stage 2: the last answer
    split: str = "train"


def caption_instruction() -> str:
    from captionkit.captioners.chat_vlm import DEFAULT_CAPTION_PROMPT

    return DEFAULT_CAPTION_PROMPT


def read_samples(path: str | Path, stage: int, image_root: str | None = None) -> list[Sample]:
    """Stage 1: caption rows; stage 2: LLaVA conversation rows. Missing fields raise DatasetError (file:line)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"--data {path}: no such file")
    root = Path(image_root).expanduser() if image_root else path.parent
    samples: list[Sample] = []
    for lineno, row in json_objects(path):
        if not isinstance(row.get("image"), str):
            raise DatasetError(f"{path}:{lineno}: needs an image field (path relative to the data file)")
        rid, split = str(row.get("id", lineno)), str(row.get("split") or "train")
        image = root / row["image"]
        if stage == 1:
            caption = row.get("caption")
            if not isinstance(caption, str) or not caption.strip():
                raise DatasetError(f"{path}:{lineno}: stage 1 rows need a caption (captions.jsonl rows)")
            refs = [r for r in row.get("references") or [] if isinstance(r, str) and r.strip()] or [caption]
            samples.append(Sample(rid, image, [Turn(caption_instruction(), caption.strip())], refs, split))
            continue
        turns = _turns(row.get("conversations"), path, lineno)
        samples.append(Sample(rid, image, turns, [turns[-1].answer], split))
    if not samples:
        raise DatasetError(f"{path}: holds no rows")
    return samples


def _turns(conversations: Any, path: Path, lineno: int) -> list[Turn]:
    bad = DatasetError(f"{path}:{lineno}: stage 2 rows need conversations: alternating {{from: human, value}} and "
                       "{from: gpt, value} turns, starting with human (LLaVA format)")
    if not isinstance(conversations, list) or len(conversations) < 2 or len(conversations) % 2:
        raise bad
    turns = []
    for human, gpt in zip(conversations[::2], conversations[1::2]):
        if not (isinstance(human, dict) and isinstance(gpt, dict) and human.get("from") == "human"
                and gpt.get("from") == "gpt" and isinstance(human.get("value"), str)
                and isinstance(gpt.get("value"), str)):
            raise bad
        question = human["value"].replace(IMAGE_TOKEN, "").strip()
        turns.append(Turn(question, gpt["value"].strip()))
    return turns


def user_message(text: str, image: bool = True) -> dict[str, Any]:
    """The user message exactly as ``ChatVLMCaptioner.prompt_text`` builds it (image first, then the text)."""
    content: list[dict[str, Any]] = [{"type": "image"}] if image else []
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def render_turns(processor: Any, turns: list[Turn]) -> list[tuple[str, bool]]:
    """``(text, is_answer)`` pieces: prompt (as chat_vlm renders it), answer + end of turn, next prompt, ..."""
    pieces: list[tuple[str, bool]] = []
    messages: list[dict[str, Any]] = []
    done = ""
    for k, turn in enumerate(turns):
        messages.append(user_message(turn.question, image=k == 0))
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.answer}]})
        full = processor.apply_chat_template(messages, tokenize=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ConfigError("the chat template does not render conversations as growing prefixes, so answers "
                              "cannot be separated from prompts; give --chat-template")
        pieces.append((prompt[len(done):], False))
        answer, rest = full[len(prompt):], ""
        eos = processor.tokenizer.eos_token
        if eos and eos in answer:  # the answer ends with the end-of-turn token; what follows is prompt again
            cut = answer.rindex(eos) + len(eos)
            answer, rest = answer[:cut], answer[cut:]
        pieces.append((answer, True))
        if rest:
            pieces.append((rest, False))
        done = full
    return pieces


def encode_sample(processor: Any, sample: Sample, max_length: int, blank: Any) -> dict[str, Any] | None:
    """input_ids (image token expanded as the processor does at inference) and labels (-100 off the answers)."""
    tok = processor.tokenizer
    pieces = render_turns(processor, sample.turns)
    eos = tok.eos_token or ""
    first = processor(images=[blank], text=[pieces[0][0]], return_tensors="pt")["input_ids"][0].tolist()
    ids, labels = list(first), [-100] * len(first)
    for text, is_answer in pieces[1:]:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        if is_answer and eos and not text.endswith(eos):
            piece = [*piece, tok.eos_token_id]  # templates without an end-of-turn token: EOS ends the answer
        ids += piece
        labels += piece if is_answer else [-100] * len(piece)
    if len(first) >= max_length or len(ids) > max_length:
        return None  # truncating would cut image tokens or answers in half
    return {"input_ids": ids, "labels": labels}


def encode_samples(processor: Any, samples: list[Sample], max_length: int, where: Any) -> list[tuple[Sample, dict]]:
    from PIL import Image

    side = _image_size(processor.image_processor, None) if _has_size(processor.image_processor) else 224
    blank = Image.new("RGB", (side, side))
    out = []
    for s in samples:
        enc = encode_sample(processor, s, max_length, blank)
        if enc is not None:
            out.append((s, enc))
    if len(out) < len(samples):
        log.warning("%s: skipped %d row(s) longer than --max-length %d", where, len(samples) - len(out), max_length)
    if not out:
        raise DatasetError(f"{where}: every row is longer than --max-length {max_length}; raise it")
    return out


def _has_size(image_processor: Any) -> bool:
    return any(isinstance(getattr(image_processor, a, None), dict) and getattr(image_processor, a).get("height")
               for a in ("crop_size", "size"))


def load_images(paths: list[Path]) -> list[Any]:
    from PIL import Image

    images = []
    for path in paths:
        try:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the image ({exc})") from None
    return images


def collate(processor: Any, rows: list[tuple[Sample, dict]], pad_id: int) -> dict[str, Any]:
    """Right-padded ids/labels/mask + pixel_values of the rows' images."""
    import torch

    width = max(len(r["input_ids"]) for _, r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (_, r) in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    pixels = processor.image_processor(load_images([s.image for s, _ in rows]), return_tensors="pt")["pixel_values"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}


# ------------------------------------------------------------------------------------------------ evaluation


def normalize_answer(text: str) -> str:
    return " ".join(text.lower().strip().strip(string.punctuation + " ").split())


def generate_answers(model: Any, processor: Any, samples: list[Sample], max_new_tokens: int, batch_size: int,
                     device: str) -> dict[str, str]:
    """Greedy answers to each sample's first question, prompted exactly as chat_vlm prompts: id -> text."""
    import torch

    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    out: dict[str, str] = {}
    try:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            texts = [processor.apply_chat_template([user_message(s.turns[0].question)], add_generation_prompt=True,
                                                   tokenize=False) for s in chunk]
            enc = processor(images=load_images([s.image for s in chunk]), text=texts, padding=True,
                            return_tensors="pt").to(device)
            with torch.inference_mode():
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     pad_token_id=tok.pad_token_id)
            new = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.update({s.id: text.strip() for s, text in zip(chunk, new)})
    finally:
        tok.padding_side = side
    return out


def _loss(model: Any, batch: dict[str, Any], n_tokens: int) -> Any:
    import torch

    labels = batch.pop("labels")
    logits = model(**batch, use_cache=False).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="sum") / max(n_tokens, 1)


def evaluate_epoch(model: Any, processor: Any, val: list[tuple[Sample, dict]], cfg: ProjectorTrainConfig,
                   device: str) -> dict[str, Any]:
    """val_loss, then coco metrics (stage 1, captionkit's ``evaluate``) or exact match (stage 2) of generations."""
    import torch

    from captionkit.eval.evaluate import evaluate

    model.eval()
    size = cfg.eval_batch_size or cfg.batch_size
    pad_id = processor.tokenizer.pad_token_id
    try:
        total, count = 0.0, 0
        with torch.inference_mode():
            for start in range(0, len(val), size):
                batch = {k: v.to(device) for k, v in collate(processor, val[start:start + size], pad_id).items()}
                n = int((batch["labels"][:, 1:] != -100).sum())
                total += float(_loss(model, batch, 1))
                count += n
        scores: dict[str, Any] = {"val_loss": total / max(count, 1)}
        items = [s for s, _ in val][:cfg.eval_max_items] if cfg.eval_max_items else [s for s, _ in val]
        preds = generate_answers(model, processor, items, cfg.eval_max_new_tokens, size, device)
    finally:
        model.train()
    if cfg.stage == 1:
        preds = {k: v or "." for k, v in preds.items()}
        refs = {s.id: s.references for s in items}
        if cfg.eval_metrics:
            from captionkit.eval.coco import coco_scores

            corpus = coco_scores(refs, preds, metrics=cfg.eval_metrics)[0]
        else:
            corpus = evaluate({"model": preds}, refs, metrics=["coco"], n_resamples=0).systems[0].corpus
        scores.update({k: float(v) for k, v in corpus.items()})
    else:
        hits = [normalize_answer(preds[s.id]) == normalize_answer(s.turns[0].answer) for s in items]
        scores["exact_match"] = sum(hits) / max(len(hits), 1)
    scores["samples"] = [{"id": s.id, "prediction": preds[s.id], "reference": s.turns[0].answer} for s in items[:5]]
    return scores


# ------------------------------------------------------------------------------------------------ training


def make_optimizer(cfg: ProjectorTrainConfig, model: Any) -> Any:
    import torch

    groups = []
    for is_projector in (True, False):
        params = [p for n, p in model.named_parameters()
                  if p.requires_grad and ("multi_modal_projector" in n) == is_projector]
        if params:
            lr = cfg.lr if is_projector else (cfg.lora_lr or cfg.lr)
            groups.append({"params": params, "lr": lr, "weight_decay": cfg.weight_decay})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_for_training(cfg: ProjectorTrainConfig, device: str) -> tuple[Any, Any]:
    if cfg.init:
        model, processor = load_llava(cfg.init)
    else:
        model, processor = assemble_llava(cfg.vision, cfg.lm or "", projector=cfg.projector,
                                          vision_feature_layer=cfg.vision_feature_layer,
                                          chat_template=cfg.chat_template, seed=cfg.seed)
    return prepare_for_stage(model, cfg, device), processor


def _split(samples: list[Sample], cfg: ProjectorTrainConfig) -> tuple[list[Sample], list[Sample]]:
    if cfg.val_data:
        return [s for s in samples if s.split != "val"], read_samples(cfg.val_data, cfg.stage, cfg.image_root)
    train = [s for s in samples if s.split != "val"]
    return train, [s for s in samples if s.split == "val"]


def train_projector(cfg: ProjectorTrainConfig) -> TrainResult:
    """Run (or resume) one stage; ``output_dir`` gets checkpoint-<step>/, best/, final/ (Llava folders) + metrics."""
    cfg.validate()
    import torch

    device = resolve_device(cfg.device)
    train_samples, val_samples = _split(read_samples(cfg.data or "", cfg.stage, cfg.image_root), cfg)
    if not train_samples:
        raise DatasetError(f"--data {cfg.data}: holds no training rows (every row has split val)")
    resume_from = prepare_output(cfg)
    model, processor = build_for_training(cfg, device)
    rows = encode_samples(processor, train_samples, cfg.max_length, cfg.data)
    val = encode_samples(processor, val_samples, cfg.max_length, "validation") if val_samples else []
    pad_id = processor.tokenizer.pad_token_id

    def train_unit(window: list[list[int]], _state: Any) -> tuple[float, dict[str, Any]]:
        """Token-weighted cross-entropy over the window's batches, backpropagated batch by batch."""
        n_tokens = sum(sum(1 for t in rows[i][1]["labels"][1:] if t != -100) for b in window for i in b)
        loss_sum = 0.0
        for b in window:
            batch = {k: v.to(device) for k, v in collate(processor, [rows[i] for i in b], pad_id).items()}
            loss = _loss(model, batch, n_tokens)
            loss.backward()
            loss_sum += float(loss.detach())
        return loss_sum, {}

    def evaluate() -> dict[str, Any]:
        return evaluate_epoch(model, processor, val, cfg, device)

    def oom_error(where: str) -> ConfigError:
        return ConfigError(f"out of memory during {where} (--batch-size {cfg.batch_size}); use a smaller "
                           "--batch-size with a larger --grad-accum")

    return TrainLoop(
        cfg, f"train projector (stage {cfg.stage})", len(rows), trainable_params(model), make_optimizer(cfg, model),
        train_unit, save_model=lambda folder: save_llava(model, processor, folder),
        save_checkpoint=lambda folder: torch.save(trainable_state(model), folder / TRAINABLE_FILE),
        load_checkpoint=lambda folder: load_trainable_state(
            model, torch.load(folder / TRAINABLE_FILE, map_location="cpu"), folder),
        evaluate=evaluate if val and cfg.eval_every_epoch else None, metric=cfg.metric, oom_error=oom_error,
        resume_from=resume_from).run()


__all__ = ["PROJECTORS", "ProjectorTrainConfig", "Sample", "Turn", "assemble_llava", "collate", "encode_sample",
           "evaluate_epoch", "load_llava", "read_samples", "render_turns", "save_llava", "train_projector",
           "user_message"]
