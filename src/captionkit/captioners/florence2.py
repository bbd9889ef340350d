"""Florence-2 (florence-community/Florence-2-base/-large: the native transformers port, no remote code).

Florence-2 is steered by task tokens, not instructions: ``--task`` picks one (``options.extra["task"]``), and the
processor turns it into its task sentence ("<DETAILED_CAPTION>" -> "Describe in detail what is shown in the
image."). The answer is parsed with the processor's ``post_process_generation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.errors import ConfigError
from captionkit.models.hf import load_model, load_processor, read_config, set_seed, torch
from captionkit.models.options import GenerationOptions, ModelOptions

TASKS = {
    "caption": "<CAPTION>",
    "detailed_caption": "<DETAILED_CAPTION>",
    "more_detailed_caption": "<MORE_DETAILED_CAPTION>",
    "ocr": "<OCR>",
}
# detailed_caption: <CAPTION> is one terse phrase ("a dog on a beach") that leaves little for later stages, and
# <MORE_DETAILED_CAPTION> writes a paragraph that needs ~3x the tokens (and CPU time), is cut short by the default
# --max-new-tokens 40, and invents more details. <DETAILED_CAPTION> is one or two factual sentences.
DEFAULT_TASK = "detailed_caption"


@register_captioner("florence2", model_types=("florence2",))
class Florence2Captioner(CaptionerBase):
    """Florence-2: caption, detailed_caption (default), more_detailed_caption or ocr, chosen with --task.

    A ``--prompt`` replaces the task: one of the task tokens (``<OCR>``) or names (``ocr``) above, or free text,
    which Florence-2 reads as its text input (it was trained on task prompts, so free text works less well).
    ``ocr(images)`` runs the <OCR> task whatever --task says, so Florence-2 can serve as an OCR engine.
    """

    backend = "florence2"
    supports_prompt = True
    supports_questions = False  # no VQA task in Florence-2's training mix

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        super().__init__(model_id, options)
        task = str(options.extra.get("task") or DEFAULT_TASK).strip().lower()
        if task not in TASKS:
            raise ConfigError(f"--task {task!r}: Florence-2 tasks are {', '.join(TASKS)}")
        self.task = task
        # The original microsoft/Florence-2-* repos (and their fine-tunes) are remote-code checkpoints with a
        # "davit" vision tower; transformers' own Florence2ForConditionalGeneration cannot read their weights.
        vision = read_config(model_id, options).get("vision_config") or {}
        if vision.get("model_type", "florence_vision") != "florence_vision":
            raise ConfigError(
                f"--captioner {model_id}: a remote-code Florence-2 checkpoint ({vision.get('model_type')} vision "
                "tower), not the native transformers format; use florence-community/Florence-2-base or "
                "florence-community/Florence-2-large, or a fine-tune saved in that format")
        self.processor = load_processor(model_id, options)
        self.model = load_model(model_id, "Florence2ForConditionalGeneration", options)
        if self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = self.processor.tokenizer.pad_token_id

    # ------------------------------------------------------------------ prompts

    def _task_prompt(self, prompt: str | None) -> tuple[str, str]:
        """(task token used to parse the answer, text given to the processor)."""
        if prompt is None or not prompt.strip():
            token = TASKS[self.task]
            return token, token
        prompt = prompt.strip()
        if prompt in TASKS.values():
            return prompt, prompt
        if prompt.lower() in TASKS:  # "--prompt ocr" means the task, not the word
            return TASKS[prompt.lower()], TASKS[prompt.lower()]
        if self._has_image_token(prompt):
            raise ConfigError(f"--prompt {prompt!r}: contains the image placeholder {self.processor.image_token}; "
                              "captionkit inserts the image itself, so remove it from --prompt")
        known = getattr(self.processor, "tasks_answer_post_processing_type", {})
        if any(token in prompt for token in known):
            raise ConfigError(
                f"--prompt {prompt!r}: Florence-2 task tokens other than {', '.join(TASKS.values())} give boxes or "
                "regions, not text; pass one of those alone (or use --task), or plain text without <...> tokens")
        return "<CAPTION>", prompt  # free text: parsed as plain text

    def _has_image_token(self, text: str) -> bool:
        token = getattr(self.processor, "image_token", None)
        return bool(token) and token in text

    # ------------------------------------------------------------------ the Captioner API

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        return self._run(images, *self._task_prompt(prompt), gen)

    def ocr(self, images: Sequence[Image.Image], gen: GenerationOptions | None = None) -> list[str]:
        """The text in each image (Florence-2's <OCR> task), in order; "" where it reads none."""
        gen = gen or GenerationOptions()
        out: list[str] = []
        for start in range(0, len(images), self.options.batch_size):
            out.extend(self._run(list(images[start:start + self.options.batch_size]), "<OCR>", "<OCR>", gen))
        return out

    def _run(self, images: list[Image.Image], task: str, text: str, gen: GenerationOptions) -> list[str]:
        # One prompt for the whole batch and a fixed image size: every row has the same length, no padding.
        inputs = self.processor(images=images, text=[text] * len(images), return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # dtype applies to pixel_values only
        set_seed(gen.seed)
        with torch().inference_mode():
            if len(images) > 1 and self.model.device.type == "cpu":
                ids = self._generate_vision_per_image(inputs, gen)
            else:
                ids = self.model.generate(**inputs, **gen.generate_kwargs())
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [self._parse(t, task, image.size) for t, image in zip(texts, images)]

    def _generate_vision_per_image(self, inputs: Any, gen: GenerationOptions) -> Any:
        """On CPU the DaViT vision tower is slower per image in a batch than alone (scripts/profile_florence.py:
        10.5 s for 4 images in one batch vs 9.5 s one at a time), so encode the images one at a time and batch
        only the text encoder and decoder.
        The result is what ``generate`` computes from the same image features: outputs are unchanged (tested)."""
        torch_ = torch()
        model, ids = self.model, inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = torch_.ones_like(ids) if mask is None else mask
        features = torch_.cat([model.get_image_features(pv[None]).pooler_output for pv in inputs["pixel_values"]])
        embeds = model.get_input_embeddings()(ids)
        placeholder = model.model.get_placeholder_mask(ids, inputs_embeds=embeds, image_features=features)
        embeds = embeds.masked_scatter(placeholder, features.to(embeds.dtype))
        encoded = model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return model.generate(input_ids=ids, attention_mask=mask, encoder_outputs=encoded, **gen.generate_kwargs())

    def _parse(self, text: str, task: str, size: tuple[int, int]) -> str:
        try:
            parsed = self.processor.post_process_generation(text, task=task, image_size=size)[task]
        except (ValueError, KeyError):  # a processor saved without post_processor_config: plain text is all
            parsed = text
        return parsed.strip() if isinstance(parsed, str) else str(parsed)
