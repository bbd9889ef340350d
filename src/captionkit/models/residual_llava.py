"""A Llava model whose projector is ``Linear -> SimpleResBlock`` (the CLIP + Phi-2 "multimodal GPT" recipe).

transformers' stock ``LlavaMultiModalProjector`` is ``linear_1 -> act -> linear_2``; the residual block
(``x = LayerNorm(x); x + Linear(GELU(Linear(x)))``) does not fit it. This file defines the smallest extension:
a ``LlavaConfig`` subclass (``model_type: captionkit_residual_llava``) and ``LlavaForConditionalGeneration``
subclass whose only difference is the projector. Everything else (vision tower, LM, prompt handling, generate,
the ``LlavaProcessor``) is stock.

Loading: captionkit registers the classes with the Auto classes (:func:`register`), so ``captionkit describe/ask
--captioner FOLDER`` loads such a folder; :func:`save_remote_code` also copies this file into the folder with an
``auto_map``, so plain transformers loads it with ``trust_remote_code=True``. vLLM does not know the architecture;
use ``--projector mlp`` for a checkpoint every Llava runtime loads.

This module imports only torch and transformers (it is copied into saved folders as remote code).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import nn
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaModel

MODEL_TYPE = "captionkit_residual_llava"  # = captionkit.models.RESIDUAL_LLAVA_TYPE (this file must stand alone)


class ResidualLlavaConfig(LlavaConfig):
    model_type = MODEL_TYPE


class ResidualProjector(nn.Module):
    """``linear_1`` (vision width x feature layers -> LM width), then a SimpleResBlock on the LM width."""

    def __init__(self, config: LlavaConfig) -> None:
        super().__init__()
        layers = 1 if isinstance(config.vision_feature_layer, int) else len(config.vision_feature_layer)
        width = config.text_config.hidden_size
        bias = config.multimodal_projector_bias
        self.linear_1 = nn.Linear(config.vision_config.hidden_size * layers, width, bias=bias)
        self.pre_norm = nn.LayerNorm(width)
        self.linear_2 = nn.Linear(width, width, bias=bias)
        self.act = nn.GELU()
        self.linear_3 = nn.Linear(width, width, bias=bias)

    def forward(self, image_features):
        x = self.pre_norm(self.linear_1(image_features))
        return x + self.linear_3(self.act(self.linear_2(x)))


class ResidualLlavaModel(LlavaModel):
    config_class = ResidualLlavaConfig
    config: ResidualLlavaConfig

    def __init__(self, config: ResidualLlavaConfig) -> None:
        super().__init__(config)
        self.multi_modal_projector = ResidualProjector(config)
        self.post_init()


class ResidualLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = ResidualLlavaConfig
    config: ResidualLlavaConfig

    def __init__(self, config: ResidualLlavaConfig) -> None:
        super().__init__(config)
        self.model = ResidualLlavaModel(config)
        self.post_init()


def register() -> None:
    """Make AutoConfig / AutoModelForImageTextToText know the architecture (idempotent)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    try:
        AutoConfig.register(MODEL_TYPE, ResidualLlavaConfig)
    except ValueError:  # already registered
        return
    AutoModelForImageTextToText.register(ResidualLlavaConfig, ResidualLlavaForConditionalGeneration)


def save_remote_code(folder: Path) -> None:
    """Copy this file into ``folder`` and point config.json's ``auto_map`` at it (trust_remote_code loading)."""
    shutil.copyfile(__file__, folder / "residual_llava.py")
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "residual_llava.ResidualLlavaConfig",
                          "AutoModelForImageTextToText": "residual_llava.ResidualLlavaForConditionalGeneration"}
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
