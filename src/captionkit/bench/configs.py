"""The models the benchmark runs: the real architectures of the default models, with random weights.

Speed needs no trained weights: random weights of the real configuration cost the same to run. The model hub
is not needed either: the hyper-parameters below are transcribed from the models' config.json files, and each
model is built from them with random weights, given a tokenizer whose vocabulary has exactly the config's size
(a byte-level BPE or WordPiece vocabulary generated here), and saved once under the cache folder.

Three scales: ``full`` (the real configuration), ``quick`` (2 layers per stack, smaller images: for checking
a change in minutes) and ``tiny`` (32 wide, small vocabularies: for the tests). What the scaled-down
configurations leave out changes the absolute speed, not what the comparison checks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

SCALES = ("full", "quick", "tiny")

# ------------------------------------------------------------------------------------------- real configurations

# florence-community/Florence-2-base: DaViT vision tower (4 stages) + BART-base-sized encoder-decoder.
FLORENCE_2_BASE = {
    "image_size": 768,  # 768 / 32 = 24 -> 24*24 + 1 = 577 image tokens
    "vision": {"depths": [1, 1, 9, 1], "embed_dim": [128, 256, 512, 1024], "num_heads": [4, 8, 16, 32],
               "num_groups": [4, 8, 16, 32], "patch_size": [7, 3, 3, 3], "patch_stride": [4, 2, 2, 2],
               "patch_padding": [3, 1, 1, 1], "patch_prenorm": [False, True, True, True], "window_size": 12,
               "projection_dim": 768},
    "text": {"vocab_size": 51289, "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
             "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
             "decoder_ffn_dim": 3072, "max_position_embeddings": 1024},
}
# Salesforce/blip-image-captioning-base: ViT-B/16 at 384 px + a 12-layer BERT decoder with cross-attention.
BLIP_BASE = {
    "image_size": 384,
    "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
               "patch_size": 16},
    "text": {"vocab_size": 30524, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
             "num_attention_heads": 12, "max_position_embeddings": 512},  # bert-base-uncased + [DEC] + [ENC]
    "projection_dim": 512, "image_text_hidden_size": 256,
}
# microsoft/git-base (and git-base-coco): CLIP ViT-B/16 at 224 px + a 6-layer BERT-sized decoder.
GIT_BASE = {
    "image_size": 224,
    "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
               "patch_size": 16},
    "text": {"vocab_size": 30522, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 6,
             "num_attention_heads": 12, "max_position_embeddings": 1024},
}
# nlpconnect/vit-gpt2-image-captioning: ViT-base/16 at 224 px + GPT-2 (124M) with cross-attention.
VIT_GPT2 = {
    "image_size": 224,
    "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
               "patch_size": 16},
    "text": {"vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024},
}
# Qwen/Qwen2.5-0.5B-Instruct (the default writer). RoPE theta and sliding-window settings are left at the
# library's defaults: they change no cost.
QWEN2_5_0_5B = {
    "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
}
# meta-llama/Llama-3.2-1B(-Instruct): the ~1B decoder (its llama3 RoPE scaling is left out: no cost).
LLAMA_3_2_1B = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
}

_TINY_VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "patch_size": 8}
_TINY_LM = {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 512,
            "initializer_range": 0.2}  # wide weights: no near-ties in greedy decoding


@dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model: its real configuration, how to scale it down, and how to build it."""

    name: str
    role: str  # captioner | writer
    backend: str  # captionkit's backend for it
    source: str  # the hub id whose configuration this is
    config: dict[str, Any]
    build: Callable[[dict[str, Any], Path, int], None]  # (config, folder, new tokens)
    quick: dict[str, Any] = field(default_factory=dict)  # overrides, merged into config (dicts merge, rest replaces)
    tiny: dict[str, Any] = field(default_factory=dict)
    settings: tuple[str, ...] | None = None  # the settings run by default (None: all the machine supports)

    def at(self, scale: str) -> dict[str, Any]:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}")
        return merged(self.config, {"full": {}, "quick": self.quick, "tiny": self.tiny}[scale])


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ------------------------------------------------------------------------------------------- tokenizers

_COMMON = list("etaoinshrdlcumwfgypbvkjxqz") + list("ETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,:;!?'-#@")


def synthetic_bpe(size: int, specials: list[str], chat_template: str | None = None, **named: str):
    """A byte-level BPE tokenizer with exactly ``size`` tokens: ``specials``, the 256 byte symbols, then merges
    (pairs of symbols, then pairs + a symbol) in a fixed order. Every id decodes; text encodes to 1-3 byte tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    space = "Ġ"  # the byte-level symbol of " "
    first = [space] + [c for c in _COMMON if c in alphabet]
    order = first + sorted(c for c in alphabet if c not in first)
    vocab = {token: i for i, token in enumerate(specials)}
    for c in order:
        vocab.setdefault(c, len(vocab))
    if size < len(vocab):
        raise ValueError(f"a byte-level vocabulary needs at least {len(vocab)} tokens (asked {size})")
    merges: list[tuple[str, str]] = []
    pairs = [(a, b) for a, b in product(order, order)]
    triples = ((a + b, c) for a, b in pairs for c in first)
    for a, b in [*pairs, *triples] if size - len(vocab) > len(pairs) else pairs:
        if len(vocab) >= size:
            break
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **named)
    fast.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in named.values()]})
    if chat_template:
        fast.chat_template = chat_template
    assert len(fast) == size, (len(fast), size)
    return fast


def synthetic_wordpiece(size: int, specials: list[str], **named: str):
    """A lower-cased WordPiece (BERT) tokenizer with exactly ``size`` tokens: specials, characters, then 2- and
    3-letter pieces with and without the ``##`` continuation mark."""
    from transformers import BertTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-#@()/&\"")
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = ["".join(p) for n in (2, 3, 4) for p in product(letters, repeat=n)]
    vocab: dict[str, int] = {}
    for token in [*specials, *chars, *("##" + c for c in chars)]:
        vocab.setdefault(token, len(vocab))
    for word in words:
        for token in (word, "##" + word):
            if len(vocab) < size:
                vocab.setdefault(token, len(vocab))
    tok = BertTokenizer(vocab=vocab, do_lower_case=True, **named)
    assert len(tok) == size, (len(tok), size)
    return tok


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


# ------------------------------------------------------------------------------------------- builders


def _seeded(make: Callable[[], Any], seed: int = 1234) -> Any:
    """``make()`` under ``seed``, leaving the caller's random state as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _spread_if_tiny(model: Any, cfg: dict[str, Any]) -> Any:
    """Tiny models get wide weights, so that greedy decoding is not decided by float rounding (near-ties)."""
    if not cfg.get("spread"):
        return model
    import torch

    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * cfg["spread"])
    return model


def _save(model: Any, parts: list[Any], folder: Path, new_tokens: int) -> None:
    """Weights, processor parts, and a generation config that always writes exactly ``new_tokens`` tokens."""
    gc = model.generation_config
    gc.min_new_tokens = gc.max_new_tokens = new_tokens
    gc.do_sample, gc.num_beams = False, 1
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder)
    for part in parts:
        part.save_pretrained(folder)


def build_florence2(cfg: dict[str, Any], folder: Path, new_tokens: int) -> None:
    from transformers import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    text, vision, size = cfg["text"], cfg["vision"], cfg["image_size"]
    # The tokenizer holds the text vocabulary plus <image> (Florence-2's image_token_id is the first id after it).
    tok = synthetic_bpe(text["vocab_size"] + 1, ["<s>", "<pad>", "</s>", "<unk>", "<image>"], bos_token="<s>",
                        eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                        extra_special_tokens={"image_token": "<image>"})
    stride = 1
    for s in vision["patch_stride"]:
        stride *= s
    tokens = (size // stride) ** 2 + 1  # spatial tokens + one pooled token
    image_processor = CLIPImageProcessorPil(size={"height": size, "width": size}, crop_size={"height": size, "width": size},
                                            do_center_crop=False, image_seq_length=tokens)
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tok,
                                   post_processor_config={"pure_text": {}})
    config = Florence2Config(
        text_config={**text, "model_type": "bart", "vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                     "decoder_start_token_id": tok.eos_token_id, "forced_eos_token_id": None,
                     "forced_bos_token_id": None},
        vision_config={**vision, "drop_path_rate": 0.0},
        image_token_id=tok.image_token_id,
    )
    model = _spread_if_tiny(_seeded(lambda: Florence2ForConditionalGeneration(config)), cfg)
    _save(model, [processor], folder, new_tokens)


def build_blip(cfg: dict[str, Any], folder: Path, new_tokens: int) -> None:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    text, size = cfg["text"], cfg["image_size"]
    tok = synthetic_wordpiece(text["vocab_size"], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"],
                              bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessorPil(size={"height": size, "width": size}), tok)
    text_config = {**text, "encoder_hidden_size": cfg["vision"]["hidden_size"], "bos_token_id": tok.bos_token_id,
                   "pad_token_id": tok.pad_token_id, "sep_token_id": tok.sep_token_id, "eos_token_id": tok.sep_token_id}
    config = BlipConfig(text_config=text_config, vision_config={**cfg["vision"], "image_size": size},
                        projection_dim=cfg["projection_dim"], image_text_hidden_size=cfg["image_text_hidden_size"])
    model = _spread_if_tiny(_seeded(lambda: BlipForConditionalGeneration(config)), cfg)
    _save(model, [processor], folder, new_tokens)


def build_git(cfg: dict[str, Any], folder: Path, new_tokens: int) -> None:
    from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

    text, size = cfg["text"], cfg["image_size"]
    tok = synthetic_wordpiece(text["vocab_size"], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    config = GitConfig(vision_config={**cfg["vision"], "image_size": size}, **text, bos_token_id=tok.cls_token_id,
                       eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    model = _spread_if_tiny(_seeded(lambda: GitForCausalLM(config)), cfg)
    _save(model, [GitProcessor(image_processor, tok)], folder, new_tokens)


def build_vit_gpt2(cfg: dict[str, Any], folder: Path, new_tokens: int) -> None:
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    text, size = cfg["text"], cfg["image_size"]
    tok = synthetic_bpe(text["vocab_size"], ["<|endoftext|>"], eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    eos = tok.eos_token_id
    decoder = GPT2Config(**text, bos_token_id=eos, eos_token_id=eos)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(ViTConfig(**cfg["vision"], image_size=size), decoder)
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = eos
    model = _spread_if_tiny(_seeded(lambda: VisionEncoderDecoderModel(config)), cfg)
    _save(model, [ViTImageProcessorPil(size={"height": size, "width": size}), tok], folder, new_tokens)


def build_causal_lm(cfg: dict[str, Any], folder: Path, new_tokens: int) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(cfg)
    spread = cfg.pop("spread", None)
    if cfg["model_type"] == "llama":
        tok = synthetic_bpe(cfg["vocab_size"], ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                                "<|end_header_id|>", "<|eot_id|>"], chat_template=LLAMA3,
                            bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    else:
        tok = synthetic_bpe(cfg["vocab_size"], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], chat_template=CHATML,
                            eos_token="<|im_end|>", pad_token="<|endoftext|>")
    config = AutoConfig.for_model(**cfg, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                  bos_token_id=tok.bos_token_id)
    model = _seeded(lambda: AutoModelForCausalLM.from_config(config))
    model = _spread_if_tiny(model, {"spread": spread})
    _save(model, [tok], folder, new_tokens)


_TINY_IMAGE = {"image_size": 32, "spread": 0.5}
SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("florence-2-base", "captioner", "florence2", "florence-community/Florence-2-base", FLORENCE_2_BASE,
              build_florence2,
              quick={"image_size": 384, "vision": {"depths": [1, 1, 1, 1]},
                     "text": {"encoder_layers": 2, "decoder_layers": 2}},
              tiny={**_TINY_IMAGE, "spread": 0.2,
                    "vision": {"depths": [1, 1], "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
                               "patch_prenorm": [False, True], "embed_dim": [16, 32], "num_heads": [1, 2],
                               "num_groups": [1, 2], "window_size": 4, "projection_dim": 32},
                    "text": {"vocab_size": 400, "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
                             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
                             "decoder_ffn_dim": 64, "max_position_embeddings": 128}}),
    ModelSpec("blip-base", "captioner", "blip", "Salesforce/blip-image-captioning-base", BLIP_BASE, build_blip,
              quick={"vision": {"num_hidden_layers": 2}, "text": {"num_hidden_layers": 2}},
              tiny={**_TINY_IMAGE, "vision": _TINY_VIT, "projection_dim": 32, "image_text_hidden_size": 32,
                    "text": {**{k: v for k, v in _TINY_VIT.items() if k != "patch_size"}, "vocab_size": 300,
                             "max_position_embeddings": 64}}),
    ModelSpec("git-base", "captioner", "git", "microsoft/git-base", GIT_BASE, build_git,
              quick={"vision": {"num_hidden_layers": 2}, "text": {"num_hidden_layers": 2}},
              tiny={**_TINY_IMAGE, "vision": _TINY_VIT,
                    "text": {**{k: v for k, v in _TINY_VIT.items() if k != "patch_size"}, "vocab_size": 300,
                             "max_position_embeddings": 64}}),
    ModelSpec("vit-gpt2", "captioner", "vision_encoder_decoder", "nlpconnect/vit-gpt2-image-captioning", VIT_GPT2,
              build_vit_gpt2,
              quick={"vision": {"num_hidden_layers": 2}, "text": {"n_layer": 2}},
              tiny={**_TINY_IMAGE, "vision": _TINY_VIT,
                    "text": {"vocab_size": 400, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64}}),
    ModelSpec("qwen2.5-0.5b-instruct", "writer", "local", "Qwen/Qwen2.5-0.5B-Instruct", QWEN2_5_0_5B, build_causal_lm,
              quick={"num_hidden_layers": 2}, tiny=_TINY_LM),
    ModelSpec("llama-3.2-1b", "writer", "local", "meta-llama/Llama-3.2-1B-Instruct", LLAMA_3_2_1B, build_causal_lm,
              quick={"num_hidden_layers": 2}, tiny=_TINY_LM,
              settings=("batched", "bf16")),  # a 4th copy (int8) of 5 GB weights would not fit in 24 GiB beside work
)


def spec(name: str) -> ModelSpec:
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(f"no benchmark model {name!r}; known: {', '.join(s.name for s in SPECS)}")


# ------------------------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """``$CAPTIONKIT_CACHE_DIR/bench``, else ``~/.cache/captionkit/bench``."""
    root = os.environ.get("CAPTIONKIT_CACHE_DIR")
    return Path(root).expanduser() / "bench" if root else Path.home() / ".cache" / "captionkit" / "bench"


def saved_model(model: ModelSpec, scale: str, new_tokens: int, root: Path | None = None) -> Path:
    """The folder of ``model`` at ``scale``: built and saved on first use, then reused (keyed by its config)."""
    cfg = model.at(scale)
    key = hashlib.sha256(json.dumps([cfg, new_tokens, _BUILD_VERSION], sort_keys=True).encode()).hexdigest()[:10]
    folder = (root or cache_dir()) / scale / f"{model.name}-{key}"
    if not (folder / ".complete").exists():
        partial = folder.with_name(folder.name + ".partial")
        if partial.exists():
            import shutil

            shutil.rmtree(partial)
        model.build(cfg, partial, new_tokens)
        (partial / "bench-config.json").write_text(json.dumps({"source": model.source, "scale": scale, "config": cfg},
                                                              indent=2), encoding="utf-8")
        (partial / ".complete").touch()
        partial.rename(folder)
    return folder


_BUILD_VERSION = 1  # bump when a builder changes what it saves
