"""A tiny random-weight causal LM (Qwen2 architecture), a LoRA adapter for it, and a vision-model folder, for
offline writer tests.

Nothing here touches the model hub: the byte-level BPE tokenizer is trained on a few sentences with the
``tokenizers`` library, the model is a 2-layer, 32-wide random Qwen2 saved with ``save_pretrained``, and the
adapter is a peft LoRA with non-zero ``lora_B`` weights (so it changes what the model writes).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "write a short post for x about a red sneaker on a wooden table",
    "you are a social media writer for a brand; keep it friendly and short",
    "description: a dog running on a sandy beach at sunset with waves",
    "visible text: summer sale, fifty percent off everything this weekend",
    "new from acme: the lightest running shoe we have ever made #running",
    "transcript: welcome back to the channel, today we cook pasta together",
    "shop now at the link in bio and tag a friend who needs this",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, as Qwen2.5-Instruct writes it (without the default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A model this small produces near-uniform logits; a larger initialiser range keeps greedy decoding away from
# near-ties, so that batched and one-at-a-time runs (different matmul shapes) pick the same tokens.
INIT_RANGE = 0.2
SEED = 1234
MAX_POSITIONS = 256


def train_tokenizer(*, chat_template: bool = True, pad_token: bool = True) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 10, trainer)
    named = {"eos_token": "<|im_end|>"}
    if pad_token:
        named["pad_token"] = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **named)
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_lm(folder: Path, *, chat_template: bool = True, pad_token: bool = True,
                  max_positions: int = MAX_POSITIONS, min_new_tokens: int = 2) -> Path:
    """Save a tiny Qwen2ForCausalLM and its tokenizer to ``folder``; returns the folder.

    ``min_new_tokens`` in generation_config.json keeps the random model from stopping at once (our writer and a
    direct ``generate`` both read it, so parity is unaffected).
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = train_tokenizer(chat_template=chat_template, pad_token=pad_token)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=max_positions, initializer_range=INIT_RANGE,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        model = Qwen2ForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.min_new_tokens = min_new_tokens
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_lora_adapter(base: Path, folder: Path, *, seed: int = 99) -> Path:
    """A LoRA adapter on ``base`` (q/v projections) with random non-zero lora_B, saved with peft to ``folder``.

    adapter_config.json records ``base_model_name_or_path`` = the base folder, as peft does for any base.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft still asks transformers 5 for is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (a no-op adapter); make it change the outputs
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(base), cfg["base_model_name_or_path"]
    return folder


def build_vision_folder(folder: Path) -> Path:
    """A saved (config-only) ViT image model: a folder a writer must refuse."""
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
              patch_size=8).save_pretrained(folder)
    return folder
