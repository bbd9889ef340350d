"""Small models from scratch (random weights, tokenizer trained on the task's own text), for learning proofs.

No pretrained weight can be downloaded where the proofs run, so each trainer is shown to learn by
starting from a random model of a small real architecture.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1200):
    """A byte-level BPE tokenizer trained on ``texts``, with ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def build_scratch_lm(folder: Path, texts: Iterable[str], *, hidden: int = 192, layers: int = 3, heads: int = 4,
                     max_positions: int = 512, vocab_size: int = 1200, seed: int = 0) -> Path:
    """A random Qwen2-architecture causal LM with a tokenizer trained on ``texts``, saved to ``folder``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = train_bpe_tokenizer(texts, vocab_size)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_scratch_captioner(folder: Path, texts: Iterable[str], *, image_size: int = 48, patch: int = 8,
                            hidden: int = 128, encoder_layers: int = 2, decoder_layers: int = 2, heads: int = 4,
                            max_positions: int = 64, vocab_size: int = 600, seed: int = 0) -> Path:
    """A random ViT + GPT-2 ``VisionEncoderDecoderModel`` (the layout of nlpconnect/vit-gpt2-image-captioning)
    with a BPE tokenizer trained on ``texts`` and a ViT image processor, saved to ``folder``."""
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    tok = train_bpe_tokenizer(texts, vocab_size)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    encoder = ViTConfig(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=encoder_layers,
                        num_attention_heads=heads, image_size=image_size, patch_size=patch)
    decoder = GPT2Config(vocab_size=len(tok), n_embd=hidden, n_layer=decoder_layers, n_head=heads,
                         n_positions=max_positions, bos_token_id=eos, eos_token_id=eos, pad_token_id=pad)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = eos, eos, pad
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config)
    model.generation_config.decoder_start_token_id = eos
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
