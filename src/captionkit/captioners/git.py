"""GIT captioning (microsoft/git-base-coco, git-large-coco, the -textcaps/-textvqa variants, or a folder)."""

from __future__ import annotations

from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.models.hf import load_model, load_processor, set_seed, torch
from captionkit.models.options import GenerationOptions, ModelOptions


@register_captioner("git", model_types=("git",))
class GitCaptioner(CaptionerBase):
    """GIT (Generative Image-to-text Transformer): captions, or a continuation of a prompt.

    A prompt is fed as ``[CLS] + prompt tokens`` with no ``[SEP]`` (as the transformers docs do for
    conditional generation and VQA). GIT is decoder-only, so its output starts with those tokens;
    the rule: the first ``len(input_ids)`` output tokens are dropped, and the caption is only what the model
    wrote after the prompt (for a VQA model, the answer without the question).
    """

    backend = "git"
    supports_prompt = True

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        super().__init__(model_id, options)
        self.processor = load_processor(model_id, options)
        self.model = load_model(model_id, "GitForCausalLM", options)
        self.processor.tokenizer.padding_side = "left"  # a decoder-only model continues from the right end
        if self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = self.processor.tokenizer.pad_token_id

    def _prompt_ids(self, prompt: str, rows: int):
        tokenizer = self.processor.tokenizer
        ids = [tokenizer.cls_token_id, *tokenizer(prompt, add_special_tokens=False).input_ids]
        return torch().tensor([ids] * rows)  # one shared prompt: equal lengths, no padding

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        inputs = self.processor(images=images, return_tensors="pt")
        if prompt:
            inputs["input_ids"] = self._prompt_ids(prompt, len(images))
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # dtype applies to pixel_values only
        set_seed(gen.seed)
        with torch().inference_mode():
            ids = self.model.generate(**inputs, **gen.generate_kwargs())
        if prompt:
            ids = ids[:, inputs["input_ids"].shape[1]:]  # drop the echoed prompt
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
