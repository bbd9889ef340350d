"""BLIP image captioning (Salesforce/blip-image-captioning-base/-large, or any folder saved like them)."""

from __future__ import annotations

from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.models.hf import load_model, load_processor, set_seed, torch
from captionkit.models.options import GenerationOptions, ModelOptions


@register_captioner("blip", model_types=("blip",))
class BlipCaptioner(CaptionerBase):
    """BLIP: short captions; a prompt (e.g. "a photograph of") is continued and stays at the caption's start.

    Without a prompt BLIP captions unconditionally. With one, its text decoder starts from the prompt's
    tokens and goes on, so the caption reads as a whole sentence: "a photograph of a dog on a beach".
    """

    backend = "blip"
    supports_prompt = True

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        super().__init__(model_id, options)
        self.processor = load_processor(model_id, options)
        self.model = load_model(model_id, "BlipForConditionalGeneration", options)
        if self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = self.processor.tokenizer.pad_token_id

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        # One prompt for the whole batch, so every row has the same length and no padding is needed.
        text = [prompt] * len(images) if prompt else None
        inputs = self.processor(images=images, text=text, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # dtype applies to pixel_values only
        set_seed(gen.seed)
        with torch().inference_mode():
            ids = self.model.generate(**inputs, **gen.generate_kwargs())
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
