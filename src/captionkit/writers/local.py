"""Local causal language models through transformers: Qwen2.5-Instruct, SmolLM2, Llama 3.2, any folder or hub id
that ``AutoModelForCausalLM`` loads, optionally with a LoRA/PEFT adapter on top.

Prompts are rendered with the tokenizer's own chat template (``add_generation_prompt=True``) and tokenized
without adding special tokens again (the template already holds BOS and role markers). A tokenizer without a
chat template gets the plain format instead: the system text, a blank line, the user text, and a blank line
(``prompt.text() + "\\n\\n"``), tokenized with the tokenizer's usual special tokens; the model continues from there.

Prompts go through ``generate`` in batches of ``--batch-size``, left-padded (the pad token is EOS when the
tokenizer has none) with the attention mask, and only the newly generated tokens are decoded.

``n`` candidates per prompt:

* with ``--do-sample``: ``num_return_sequences=n`` sampled continuations, torch seeded with ``--seed`` before each
  batch (the same prompts, batch size and seed give the same candidates);
* without sampling and ``n > 1``: beam search with ``num_beams=max(n, --num-beams)`` and
  ``num_return_sequences=n`` (the n best beams; greedy decoding has only one answer to give).

A prompt longer than the model's context minus ``--max-new-tokens`` raises :class:`PromptTooLongError` (a
ConfigError) before anything is generated, naming the prompt, its length, the context and the fix.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, ModelUnavailableError
from captionkit.models.hf import (
    _short,
    hub_kwargs,
    load_model,
    load_processor,
    read_config,
    set_seed,
    torch,
    transformers,
)
from captionkit.models.options import GenerationOptions, ModelOptions
from captionkit.writers.base import Prompt, register_writer

FLAG = "--writer"
ADAPTER_CONFIG = "adapter_config.json"
# Config keys holding a model's context length, in the order transformers' architectures use them.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
# Image captioners that AutoModelForCausalLM also loads: they describe images, they do not write from text.
NOT_WRITERS = {"git", "got_ocr2"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class PromptTooLongError(ConfigError):
    """A prompt does not fit the model's context with room for ``--max-new-tokens``.

    ``index`` is the prompt's position in the ``write`` call, so a caller can record it as that item's failure.
    """

    def __init__(self, message: str, *, index: int, length: int, context: int, max_new_tokens: int) -> None:
        super().__init__(message)
        self.index, self.length, self.context, self.max_new_tokens = index, length, context, max_new_tokens


def plain_prompt(prompt: Prompt) -> str:
    """The model input for tokenizers without a chat template: system, blank line, user, blank line."""
    return prompt.text().rstrip() + "\n\n"


def adapter_base(folder: Path, flag: str = FLAG) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path`` in adapter_config.json)."""
    try:
        cfg = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flag} {folder}: cannot read {ADAPTER_CONFIG} ({_short(exc)})") from None
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{flag} {folder}: {ADAPTER_CONFIG} does not name its base model "
                          "(base_model_name_or_path); pass the base as --writer and this folder as --adapter")
    if not Path(base).expanduser().is_absolute() and not Path(base).expanduser().exists() \
            and (folder / base).exists():
        return str(folder / base)  # a base saved relative to the adapter folder
    return str(base)


def is_adapter_folder(spec: str) -> bool:
    return (Path(spec).expanduser() / ADAPTER_CONFIG).is_file()


def context_length(config: dict[str, Any]) -> int | None:
    """The model's context in tokens from its config (text_config for multimodal configs), if it says."""
    for cfg in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            value = cfg.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def prepare_tokenizer(tokenizer: Any, spec: str) -> Any:
    """Left padding (decoder-only: every row must end where generation starts); pad = EOS when missing."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"{FLAG} {spec}: the tokenizer has neither a pad nor an end-of-sequence token, so "
                              "prompts cannot be batched; save one (tokenizer.pad_token = ...) or use --batch-size 1")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@register_writer("local")
class LocalWriter:
    """A causal LM (plus an optional LoRA/PEFT adapter) writing posts from chat prompts.

    ``spec`` is a hub id or a folder: a saved model, or a saved adapter (adapter_config.json), whose base model
    is then loaded from its ``base_model_name_or_path``. ``settings.adapter`` loads an adapter folder on top of
    the ``spec`` model. ``model_id`` is the base, plus ``+<adapter>`` when there is one.
    """

    backend = "local"

    def __init__(self, spec: str, settings: Any) -> None:
        self.spec = spec
        self.options: ModelOptions = settings.model_options
        self.batch_size: int = settings.batch_size
        base, adapter = spec, settings.adapter
        if is_adapter_folder(spec):
            if adapter:
                raise ConfigError(f"{FLAG} {spec} is a LoRA/PEFT adapter folder and --adapter {adapter} is another "
                                  "one; give the base model as --writer and one adapter as --adapter")
            base, adapter = adapter_base(Path(spec).expanduser()), spec
        self.base_model, self.adapter = base, adapter
        self.model_id = f"{base}+{adapter}" if adapter else base

        config = read_config(base, self.options, flag=FLAG)
        self.model_type: str = config.get("model_type", "")
        self._check_causal_lm(base, config)
        self.context: int | None = context_length(config)

        self.tokenizer = prepare_tokenizer(self._load_tokenizer(base, adapter), self.model_id)
        self.chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        model = load_model(base, "AutoModelForCausalLM", self.options, flag=FLAG)
        if adapter:
            model = self._load_adapter(model, adapter)
        self.model = model.eval()
        if self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = self.tokenizer.pad_token_id

    # ------------------------------------------------------------------ loading

    def _check_causal_lm(self, base: str, config: dict[str, Any]) -> None:
        transformers()  # a clear MissingExtraError when it is not installed
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        mt = self.model_type
        if mt in NOT_WRITERS or (mt not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not config.get("auto_map")):
            what = f"a {mt!r} model" if mt else "a model without a model_type"
            raise ConfigError(
                f"{FLAG} {base}: is {what}, not a text-generation (causal language) model, so it cannot write "
                "posts. Pass an instruction-tuned LM (e.g. --writer qwen2.5-0.5b-instruct), a folder saved from "
                "AutoModelForCausalLM, or --writer template; image models belong in --captioner")

    def _load_tokenizer(self, base: str, adapter: str | None) -> Any:
        # An adapter folder may carry its own tokenizer (added tokens, a chat template); prefer it when it does.
        source = base
        if adapter and any((Path(adapter).expanduser() / name).is_file() for name in TOKENIZER_FILES):
            source = adapter
        return load_processor(source, self.options, cls_name="AutoTokenizer", flag=FLAG)

    def _load_adapter(self, model: Any, adapter: str) -> Any:
        from captionkit.extras import require

        peft = require("peft", "models", "LoRA/PEFT adapters (pip install peft)")
        path = Path(adapter).expanduser()
        flag = FLAG if adapter == self.spec else "--adapter"
        if path.exists():
            if not (path / ADAPTER_CONFIG).is_file():
                raise ConfigError(f"{flag} {adapter}: folder has no {ADAPTER_CONFIG}, so it is not a saved "
                                  "LoRA/PEFT adapter (peft_model.save_pretrained(folder) writes one)")
        elif "/" not in adapter or adapter.count("/") > 1 or adapter.startswith((".", "/", "~")):
            raise ConfigError(f"{flag} {adapter!r}: no such folder, and not a hub id of the form owner/name")
        extra = {k: v for k, v in hub_kwargs(adapter, self.options).items() if k in ("revision",)}
        try:
            with warnings.catch_warnings():  # peft still asks transformers 5 for is_gradient_checkpointing
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
                return peft.PeftModel.from_pretrained(model, adapter, is_trainable=False, **extra)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            if not path.exists():
                raise ModelUnavailableError(f"{flag} {adapter}: cannot load the adapter ({_short(exc)}); pass a "
                                            "local adapter folder") from None
            raise ConfigError(f"{flag} {adapter}: cannot load the adapter on {self.base_model} ({_short(exc)}); "
                              "is it an adapter for this base model?") from None

    # ------------------------------------------------------------------ prompts

    def render(self, prompt: Prompt) -> str:
        """The model input text for ``prompt``: its chat template with the assistant turn opened, or the plain
        format (:func:`plain_prompt`) when the tokenizer has no chat template."""
        if not self.chat_template:
            return plain_prompt(prompt)
        attempts = [prompt.messages()]
        if prompt.system:  # templates without a system role (Gemma): the system text opens the user turn
            attempts.append([{"role": "user", "content": prompt.text()}])
        for messages in attempts:
            try:
                return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            except Exception as exc:  # jinja2's TemplateError, e.g. "System role not supported"
                error = exc
        raise ConfigError(f"{FLAG} {self.model_id}: its chat template fails on the prompt ({_short(error)})")

    def _encode(self, texts: list[str], **kw: Any) -> Any:
        # Chat templates already hold BOS/role tokens; plain prompts get the tokenizer's usual special tokens.
        return self.tokenizer(texts, add_special_tokens=not self.chat_template, **kw)

    def _check_lengths(self, texts: list[str], gen: GenerationOptions) -> list[int]:
        """Each prompt's length in tokens; PromptTooLongError names the first that leaves no room to write."""
        lengths = [len(ids) for ids in self._encode(texts)["input_ids"]]
        if self.context is None:
            return lengths
        room = self.context - gen.max_new_tokens
        for i, length in enumerate(lengths):
            if length > room:
                if room <= 0:
                    fix = f"use --max-new-tokens below {self.context}"
                    room_text = "no room for the prompt"
                else:
                    fix = ("use a smaller --max-new-tokens, fewer examples (--k), a shorter description, or a "
                           "model with a longer context")
                    room_text = f"{room} tokens for the prompt"
                raise PromptTooLongError(
                    f"{FLAG} {self.model_id}: prompt {i + 1} is {length} tokens, but the model's context is "
                    f"{self.context} tokens and --max-new-tokens {gen.max_new_tokens} must fit too, leaving "
                    f"{room_text}; {fix}",
                    index=i, length=length, context=self.context, max_new_tokens=gen.max_new_tokens)
        return lengths

    # ------------------------------------------------------------------ generation

    def generate_kwargs(self, gen: GenerationOptions, n: int) -> dict[str, Any]:
        """``generate`` arguments for ``n`` candidates per prompt (see the module docstring for the rule)."""
        if n < 1:
            raise ConfigError(f"--num-candidates must be >= 1 (got {n})")
        kw = gen.generate_kwargs()
        if n > 1:
            kw["num_return_sequences"] = n
            if not gen.do_sample or gen.num_beams > 1:  # beam search (or beam sampling) needs n <= num_beams
                kw["num_beams"] = max(n, gen.num_beams)
        return kw

    def _generate_ids(self, texts: list[str], gen: GenerationOptions, n: int) -> list[list[int]]:
        """New token ids, ``n`` rows per text in order (rows of one text are consecutive)."""
        kw = self.generate_kwargs(gen, n)
        lengths = self._check_lengths(texts, gen)
        device = next(self.model.parameters()).device
        # Greedy and beam outputs do not depend on which prompts share a batch (left padding, masked): batch prompts
        # of similar length together, so that less padding is computed. Sampling keeps the given order, so that a
        # --seed draws the same samples for the same prompts.
        order = list(range(len(texts)))
        if not gen.do_sample and len(texts) > self.batch_size:
            order.sort(key=lambda i: lengths[i])
        rows: list[list[int]] = [[] for _ in range(len(texts) * n)]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            inputs = self._encode([texts[i] for i in chunk], padding=True, return_tensors="pt").to(device)
            set_seed(gen.seed)
            with torch().inference_mode():
                ids = self.model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **kw)
            written = ids[:, inputs["input_ids"].shape[1]:].tolist()  # only what the model wrote
            for j, i in enumerate(chunk):
                rows[i * n:(i + 1) * n] = written[j * n:(j + 1) * n]
        return rows

    def write(self, prompts: Sequence[Prompt], gen: GenerationOptions, n: int = 1) -> list[list[str]]:
        """``n`` raw candidates per prompt, in order."""
        if not prompts:
            return []
        rows = self._generate_ids([self.render(p) for p in prompts], gen, n)
        texts = [t.strip() for t in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


__all__ = ["LocalWriter", "PromptTooLongError", "adapter_base", "context_length", "is_adapter_folder", "plain_prompt",
           "prepare_tokenizer"]
