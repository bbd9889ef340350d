"""BLIP-2 captioning and question answering (Salesforce/blip2-opt-*, Salesforce/blip2-flan-t5-*)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.models.hf import load_model, load_processor, set_seed, torch
from captionkit.models.options import GenerationOptions, ModelOptions

QUESTION_TEMPLATE = "Question: {question} Answer:"


@register_captioner("blip2", model_types=("blip-2",))
class Blip2Captioner(CaptionerBase):
    """BLIP-2 (OPT or Flan-T5 language model): captions, prompted captions, and answers to questions.

    The caption is only what the model adds: an OPT model's output repeats its prompt (image tokens,
    BOS and the prompt text), so the first ``len(input_ids)`` tokens are dropped; Flan-T5 returns new
    text only, and without a prompt reads an empty one. ``ask`` wraps the question as
    "Question: ... Answer:", the format BLIP-2 was tuned on.
    """

    backend = "blip2"
    supports_prompt = True
    supports_questions = True

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        super().__init__(model_id, options)
        self.processor = load_processor(model_id, options)
        self.model = load_model(model_id, "Blip2ForConditionalGeneration", options)
        if getattr(self.processor, "num_query_tokens", None) is None:  # processors saved before image tokens
            self.processor.num_query_tokens = self.model.config.num_query_tokens
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # a decoder-only LM continues from the right end of every row
        if self.model.generation_config.pad_token_id is None:
            pad = tokenizer.pad_token_id
            self.model.generation_config.pad_token_id = tokenizer.eos_token_id if pad is None else pad

    def ask(self, images: Sequence[Image.Image], question: str, gen: GenerationOptions | None = None) -> list[str]:
        return self.caption(images, QUESTION_TEMPLATE.format(question=question.strip()), gen)

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        if not prompt and self.model.config.is_encoder_decoder:
            prompt = ""  # Flan-T5 has no BOS to start from: encode an empty prompt ("</s>"), as BLIP-2's authors do
        text = None if prompt is None else [prompt] * len(images)
        inputs = self.processor(images=images, text=text, return_tensors="pt")
        # the vision tower's dtype: in float16 the Q-Former stays float32, and model.dtype can report that
        inputs = inputs.to(self.model.device, dtype=self.model.vision_model.dtype)  # pixel_values only
        set_seed(gen.seed)
        with torch().inference_mode():
            ids = self.model.generate(**inputs, **gen.generate_kwargs())
        if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
            ids = ids[:, inputs["input_ids"].shape[1]:]  # drop the echoed prompt
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
