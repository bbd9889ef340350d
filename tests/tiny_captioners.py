"""Tiny random-weight captioning models, built and saved by the tests themselves (no model hub).

Each ``save_*`` writes a folder that ``from_pretrained`` loads offline: config.json and weights, plus the
processor (image processor and a tokenizer trained here with the ``tokenizers`` library). The models are
random, so their captions are nonsense, but they go through exactly the code paths real checkpoints do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
    CLIPImageProcessorPil,
    GitConfig,
    GitForCausalLM,
    GitProcessor,
    GPT2Config,
    GPT2Tokenizer,
    OPTConfig,
    T5Config,
    T5Tokenizer,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
    ViTImageProcessorPil,
)

SENTENCES = [
    "a photo of a cat sitting on a red sofa",
    "a dog running on the green grass in the park",
    "two people walking down a busy street at night",
    "a plate of food with bread and a cup of coffee",
    "a picture of a blue car parked next to a building",
    "question: what is in the image? answer: a small bird on a branch",
    "the logo of a brand on a white background with black text",
] * 4

IMAGE_SIZE = 32
PATCH = 8
# One vision tower for all: 16 patches of 8x8 pixels, width 32, one layer.
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
          "image_size": IMAGE_SIZE, "patch_size": PATCH}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 64}


def wordpiece_tokenizer(bos_token: str | None = None) -> BertTokenizer:
    """A lower-cased BERT-style WordPiece tokenizer trained on SENTENCES (ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *([bos_token] if bos_token else [])]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=150, special_tokens=specials))
    extra = {"bos_token": bos_token} if bos_token else {}
    return BertTokenizer(vocab=tok.get_vocab(), **extra)


def bpe_tokenizer(specials: list[str], **kw) -> GPT2Tokenizer:
    """A byte-level BPE tokenizer (GPT-2/OPT style) trained on SENTENCES; ``specials`` take the first ids."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES, trainer)
    state = json.loads(tok.to_str())["model"]  # the trained vocab and merges
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    return GPT2Tokenizer(vocab=state["vocab"], merges=merges, **kw)


def unigram_tokenizer() -> T5Tokenizer:
    """A SentencePiece-style Unigram tokenizer (Flan-T5 conventions: <pad>=0 </s>=1 <unk>=2) trained on SENTENCES."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(SENTENCES, trainer)
    vocab = [(piece, score) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _spread(model, seed: int):
    """Re-draw every weight matrix with a wide spread, seeded.

    Default initialisations are tiny (BLIP's vision tower uses 1e-10), which makes a random model ignore
    its image and write the same caption for every picture; wide weights make captions depend on the pixels
    and keep logits far apart, so greedy decoding is not decided by float rounding.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return model


def save_blip(folder: Path) -> Path:
    tokenizer = wordpiece_tokenizer(bos_token="[DEC]")  # BLIP's decoder starts from [DEC]
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    text = {**TEXT, "vocab_size": len(tokenizer), "encoder_hidden_size": 32, "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id, "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id}
    config = BlipConfig(text_config=text, vision_config=VISION, projection_dim=32, image_text_hidden_size=32)
    _spread(BlipForConditionalGeneration(config), seed=1).save_pretrained(folder)
    BlipProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def save_blip2(folder: Path, num_query_tokens: int = 4) -> Path:
    # OPT conventions: <s>=0 <pad>=1 </s>=2 <unk>=3, and </s> doubles as BOS and EOS.
    tokenizer = bpe_tokenizer(["<s>", "<pad>", "</s>", "<unk>"], bos_token="</s>", eos_token="</s>",
                              pad_token="<pad>", unk_token="<unk>", add_bos_token=True)
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=num_query_tokens)  # adds <image>
    text = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                     num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32,
                     bos_token_id=2, eos_token_id=2, pad_token_id=1)
    qformer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "encoder_hidden_size": 32, "cross_attention_frequency": 1, "vocab_size": 64}
    config = Blip2Config(vision_config=VISION, qformer_config=qformer, text_config=text,
                         num_query_tokens=num_query_tokens, image_text_hidden_size=32,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    _spread(Blip2ForConditionalGeneration(config), seed=2).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_blip2_flan_t5(folder: Path, num_query_tokens: int = 4) -> Path:
    """BLIP-2 with an encoder-decoder (Flan-T5) language model, which returns only the new text."""
    tokenizer = unigram_tokenizer()
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=num_query_tokens)  # adds <image>
    text = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1,
                    num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    qformer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "encoder_hidden_size": 32, "cross_attention_frequency": 1, "vocab_size": 64}
    config = Blip2Config(vision_config=VISION, qformer_config=qformer, text_config=text,
                         num_query_tokens=num_query_tokens, image_text_hidden_size=32,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    _spread(Blip2ForConditionalGeneration(config), seed=5).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_git(folder: Path) -> Path:
    tokenizer = wordpiece_tokenizer()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    config = GitConfig(vision_config=VISION, vocab_size=len(tokenizer), **TEXT, bos_token_id=tokenizer.cls_token_id,
                       eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    _spread(GitForCausalLM(config), seed=3).save_pretrained(folder)
    GitProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def save_vision_encoder_decoder(folder: Path) -> Path:
    """ViT encoder + GPT-2 decoder, like nlpconnect/vit-gpt2-image-captioning (which has no pad token)."""
    tokenizer = bpe_tokenizer(["<|endoftext|>"])
    image_processor = ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    eos = tokenizer.eos_token_id
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                         bos_token_id=eos, eos_token_id=eos)
    encoder = ViTConfig(**{k: v for k, v in VISION.items()})
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = eos
    config.pad_token_id = eos
    config.eos_token_id = eos
    _spread(VisionEncoderDecoderModel(config), seed=4).save_pretrained(folder)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_text_only(folder: Path) -> Path:
    """A tiny BERT encoder: a real transformers model that is not an image captioner."""
    BertModel(BertConfig(vocab_size=64, **TEXT)).save_pretrained(folder)
    return folder


# case name -> (backend that must load it, builder)
BUILDERS = {"blip": ("blip", save_blip), "blip2": ("blip2", save_blip2),
            "blip2-flan-t5": ("blip2", save_blip2_flan_t5), "git": ("git", save_git),
            "vision_encoder_decoder": ("vision_encoder_decoder", save_vision_encoder_decoder)}
