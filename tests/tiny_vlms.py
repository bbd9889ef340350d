"""Tiny random-weight vision-language models, saved to a folder with a working processor, for offline tests.

Nothing here touches the model hub: every tokenizer is trained on a few sentences with the ``tokenizers``
library (with the special tokens its processor needs), every image processor is built from its class with
small sizes, and every model is a 1-2 layer, 32-wide random network saved with ``save_pretrained``.
``BUILDERS[name](folder)`` writes one model and returns the folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from captionkit.captioners.chat_vlm import image_only_processor_class

CORPUS = [
    "a photo of a cat sitting on a red mat next to a small dog",
    "describe this image in detail and say what is shown in the picture",
    "what is the text in the image? what does the image describe?",
    "the quick brown fox jumps over the lazy dog near the river",
    "these are frames of one video in time order; describe what happens",
    "user assistant system you are a helpful assistant caption en answer en",
    "describe with a paragraph what is shown in the image",
]

# A model this small produces near-uniform logits; a larger initialiser range keeps greedy decoding away from
# near-ties, so that batched and one-at-a-time runs (different matmul shapes) pick the same tokens.
INIT_RANGE = 0.2
SEED = 1234


def train_tokenizer(specials: list[str], vocab_size: int = 360, **named) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``CORPUS``; ``specials`` get the first ids, in order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def chat_template(image: str, *, user: str, assistant: str, end: str, bos: str = "") -> str:
    """A minimal Jinja chat template: ``image`` stands for each {"type": "image"} item.

    Literal pieces go through ``{{ '...' }}`` so that Jinja's trim_blocks cannot eat their newlines.
    """

    def lit(text: str) -> str:
        return "{{ " + repr(text) + " }}" if text else ""

    return (
        lit(bos) + "{% for message in messages %}"
        "{% if message['role'] == 'user' %}" + lit(user) + "{% else %}" + lit(assistant) + "{% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for item in message['content'] %}"
        "{% if item['type'] == 'image' %}" + lit(image) + "{% elif item['type'] == 'text' %}{{ item['text'] }}"
        "{% endif %}{% endfor %}{% endif %}" + lit(end) + "{% endfor %}"
        "{% if add_generation_prompt %}" + lit(assistant) + "{% endif %}"
    )


def _save(model, processor, folder: Path, *, min_new_tokens: int = 2) -> Path:
    """Save model + processor; ``min_new_tokens`` keeps random models from stopping at once (both our backend and
    a direct ``generate`` read it from generation_config.json, so parity is unaffected)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config.min_new_tokens = min_new_tokens
    model.generation_config.do_sample = False
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build()


# --------------------------------------------------------------------------- Florence-2 (encoder-decoder)

FLORENCE_POST_PROCESSOR = {
    "ocr": {"pattern": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
            "area_threshold": 0.0},
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {}, "description_with_bboxes": {}, "description_with_polygons": {}, "polygons": {},
    "bboxes": {}, "description_with_bboxes_or_polygons": {},
}


def build_florence2(folder: Path) -> Path:
    from transformers import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = train_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<image>"], bos_token="<s>", eos_token="</s>",
                          pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    # 32 px through strides 4 and 2 -> 4x4 spatial tokens + 1 pooled token
    image_processor = CLIPImageProcessorPil(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                                            do_center_crop=False, image_seq_length=17)
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tok,
                                   post_processor_config=FLORENCE_POST_PROCESSOR)
    config = Florence2Config(
        text_config={
            "model_type": "bart", "vocab_size": len(tok), "max_position_embeddings": 128, "d_model": 32,
            "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
            "encoder_attention_heads": 2, "decoder_attention_heads": 2, "init_std": INIT_RANGE,
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
            "decoder_start_token_id": tok.eos_token_id, "forced_eos_token_id": None, "forced_bos_token_id": None,
        },
        vision_config={
            "depths": [1, 1], "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
            "patch_prenorm": [False, True], "embed_dim": [16, 32], "num_heads": [1, 2], "num_groups": [1, 2],
            "window_size": 4, "projection_dim": 32, "drop_path_rate": 0.0, "initializer_range": INIT_RANGE,
        },
        image_token_id=tok.image_token_id,
    )
    model = _seeded(lambda: Florence2ForConditionalGeneration(config))
    return _save(model, processor, folder)


# --------------------------------------------------------------------------- LLaVA (1.5 style: one image, CLIP + Llama)

def build_llava(folder: Path) -> Path:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = train_tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], bos_token="<s>", eos_token="</s>",
                          pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template("<image>\n", user="USER: ", assistant="ASSISTANT:", end=" ", bos="<s>"),
    )
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
                       "projection_dim": 32, "initializer_range": INIT_RANGE},
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 256, "initializer_range": INIT_RANGE,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        image_token_index=tok.image_token_id, image_seq_length=16, vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    model = _seeded(lambda: LlavaForConditionalGeneration(config))
    return _save(model, processor, folder)


# --------------------------------------------------------------------------- Qwen2-VL family (dynamic resolution)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = chat_template("<|vision_start|><|image_pad|><|vision_end|>", user="<|im_start|>user\n",
                              assistant="<|im_start|>assistant\n", end="<|im_end|>\n")


def _qwen_tokenizer():
    return train_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                           extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                                 "vision_bos_token": "<|vision_start|>",
                                                 "vision_eos_token": "<|vision_end|>"})


def _qwen_ids(tok) -> dict:
    ids = tok.convert_tokens_to_ids
    return {"image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>")}


def _qwen_text(tok, **extra) -> dict:
    return {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
            "initializer_range": INIT_RANGE, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
            "bos_token_id": None, **extra}


def _qwen_image_processor(cls, patch: int):
    # factor = patch * merge: a 40x48 image -> 5x6 merged tokens, 32x56 -> 4x7: different lengths per image
    factor = patch * 2
    return cls(patch_size=patch, merge_size=2, temporal_patch_size=2,
               size={"shortest_edge": (2 * factor) ** 2, "longest_edge": (8 * factor) ** 2})


def build_qwen2_vl(folder: Path) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = _qwen_tokenizer()
    processor = image_only_processor_class(Qwen2VLProcessor)(
        image_processor=_qwen_image_processor(Qwen2VLImageProcessorPil, 4), tokenizer=tok, chat_template=QWEN_TEMPLATE)
    config = Qwen2VLConfig(
        text_config=_qwen_text(tok, rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2],
                                                     "rope_theta": 10000.0}),
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "initializer_range": INIT_RANGE},
        **_qwen_ids(tok),
    )
    model = _seeded(lambda: Qwen2VLForConditionalGeneration(config))
    return _save(model, processor, folder)


def build_qwen2_5_vl(folder: Path) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = _qwen_tokenizer()
    processor = image_only_processor_class(Qwen2_5_VLProcessor)(
        image_processor=_qwen_image_processor(Qwen2VLImageProcessorPil, 4), tokenizer=tok, chat_template=QWEN_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text(tok, rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2],
                                                     "rope_theta": 10000.0}),
        # window attention in block 0 (16 px windows = 2x2 merged tokens), full attention in block 1
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 16,
                       "fullatt_block_indexes": [1], "initializer_range": INIT_RANGE},
        **_qwen_ids(tok),
    )
    model = _seeded(lambda: Qwen2_5_VLForConditionalGeneration(config))
    return _save(model, processor, folder)


def build_qwen3_vl(folder: Path) -> Path:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = _qwen_tokenizer()
    processor = image_only_processor_class(Qwen3VLProcessor)(
        image_processor=_qwen_image_processor(Qwen2VLImageProcessorPil, 4), tokenizer=tok, chat_template=QWEN_TEMPLATE)
    config = Qwen3VLConfig(
        text_config=_qwen_text(tok, head_dim=16, rope_parameters={
            "rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True, "rope_theta": 10000.0}),
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "num_position_embeddings": 64, "deepstack_visual_indexes": [0],
                       "initializer_range": INIT_RANGE},
        **_qwen_ids(tok),
    )
    model = _seeded(lambda: Qwen3VLForConditionalGeneration(config))
    return _save(model, processor, folder)


# --------------------------------------------------------------------------- Idefics3 (SmolVLM v1 checkpoints)

def build_idefics3(folder: Path) -> Path:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tiles = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = train_tokenizer(["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                           "<image>", "<global-img>", *tiles], vocab_size=400,
                          bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|endoftext|>")
    # longest edge 64, tiles of 32: a wide image gives 1x2 tiles + global, a square-ish one 2x2 + global
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                                do_image_splitting=True)
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=4,  # (32/8)^2 patches / scale_factor^2
        chat_template=chat_template("<image>", user="<|im_start|>User:", assistant="Assistant:",
                                    end="<end_of_utterance>\n"),
    )
    config = Idefics3Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8, "initializer_range": INIT_RANGE},
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 512, "initializer_range": INIT_RANGE,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=tok.pad_token_id,
    )
    model = _seeded(lambda: Idefics3ForConditionalGeneration(config))
    return _save(model, processor, folder)


# --------------------------------------------------------------------------- PaliGemma (no chat template)

def build_paligemma(folder: Path) -> Path:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = train_tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], bos_token="<bos>", eos_token="<eos>",
                          pad_token="<pad>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32}, image_seq_length=16)
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)  # adds <loc....>/<seg...> tokens
    vocab = len(processor.tokenizer)
    config = PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
                       "projection_dim": 32},
        text_config={"model_type": "gemma", "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                     "max_position_embeddings": 512, "initializer_range": INIT_RANGE,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        image_token_index=tok.image_token_id, projection_dim=32, hidden_size=32, vocab_size=vocab,
        initializer_range=INIT_RANGE,
    )
    model = _seeded(lambda: PaliGemmaForConditionalGeneration(config))
    return _save(model, processor, folder)


# --------------------------------------------------------------------------- DeepSeek-VL (SigLIP + Llama, one image)

def build_deepseek_vl(folder: Path) -> Path:
    from transformers import DeepseekVLConfig, DeepseekVLForConditionalGeneration, DeepseekVLProcessor
    from transformers.models.deepseek_vl.image_processing_pil_deepseek_vl import DeepseekVLImageProcessorPil

    tok = train_tokenizer(["<|end▁of▁sentence|>", "<|begin▁of▁sentence|>", "<image_placeholder>", "<pad>"],
                          bos_token="<|begin▁of▁sentence|>", eos_token="<|end▁of▁sentence|>", pad_token="<pad>",
                          extra_special_tokens={"image_token": "<image_placeholder>"})
    image_processor = DeepseekVLImageProcessorPil(size={"height": 32, "width": 32})
    processor = DeepseekVLProcessor(
        image_processor=image_processor, tokenizer=tok, num_image_tokens=16,
        chat_template=chat_template("<image_placeholder>", user="User: ", assistant="Assistant:", end="\n\n",
                                    bos="<|begin▁of▁sentence|>"),
    )
    config = DeepseekVLConfig(
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 512, "initializer_range": INIT_RANGE,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        image_token_id=tok.image_token_id,
    )
    model = _seeded(lambda: DeepseekVLForConditionalGeneration(config))
    return _save(model, processor, folder)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "florence2": build_florence2,
    "llava": build_llava,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "idefics3": build_idefics3,
    "paligemma": build_paligemma,
    "deepseek_vl": build_deepseek_vl,
}
