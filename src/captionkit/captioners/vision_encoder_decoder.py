"""Vision encoder-decoder captioning (nlpconnect/vit-gpt2-image-captioning style: ViT encoder, GPT-2 decoder)."""

from __future__ import annotations

from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.errors import ConfigError
from captionkit.models.hf import load_model, load_processor, set_seed, torch
from captionkit.models.options import GenerationOptions, ModelOptions


@register_captioner("vision_encoder_decoder", model_types=("vision-encoder-decoder",))
class VisionEncoderDecoderCaptioner(CaptionerBase):
    """Image encoder + text decoder (e.g. ViT + GPT-2): unconditional captions only, no prompt.

    No processor class covers this pairing, so the image processor and the tokenizer are loaded
    separately from the same folder or hub id.
    """

    backend = "vision_encoder_decoder"
    supports_prompt = False

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        super().__init__(model_id, options)
        self.image_processor = _load_part(model_id, options, "AutoImageProcessor")
        self.tokenizer = _load_part(model_id, options, "AutoTokenizer")
        self.model = load_model(model_id, "VisionEncoderDecoderModel", options)
        config = self.model.generation_config
        if config.pad_token_id is None:  # GPT-2 has no pad token; vit-gpt2 pads with end-of-text
            config.pad_token_id = self.tokenizer.pad_token_id
            if config.pad_token_id is None:
                config.pad_token_id = self.tokenizer.eos_token_id

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]  # ViT: 3 channels
        inputs = self.image_processor(images=rgb, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        set_seed(gen.seed)
        with torch().inference_mode():
            ids = self.model.generate(**inputs, **gen.generate_kwargs())
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def _load_part(model_id: str, options: ModelOptions, cls_name: str):
    try:
        return load_processor(model_id, options, cls_name)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; a vision encoder-decoder model needs both, saved beside the weights: "
                          "image_processor.save_pretrained(folder) and tokenizer.save_pretrained(folder)") from None
