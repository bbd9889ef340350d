"""Chat vision-language models: Qwen2-VL/2.5-VL/3-VL, SmolVLM (Idefics3), LLaVA, PaliGemma, DeepSeek-VL, and any
other model that ``AutoModelForImageTextToText`` loads.

Prompts are built with the processor's own chat template (the processor then expands each image placeholder
into the model's image tokens); PaliGemma has no chat template and takes its task prefixes ("caption en",
"answer en ...") as plain text. A batch of images is one left-padded ``generate`` call; only the newly
generated tokens are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.errors import ConfigError
from captionkit.models import RESIDUAL_LLAVA_TYPE
from captionkit.models.hf import (
    _short,
    load_model,
    load_processor,
    read_config,
    set_seed,
    torch,
    transformers,
)
from captionkit.models.options import GenerationOptions, ModelOptions

DEFAULT_CAPTION_PROMPT = "Describe this image in one or two sentences."
DEFAULT_FRAMES_PROMPT = ("These are {n} frames of one video, in time order. "
                         "Describe what happens in the video in one or two sentences.")

# How many images one prompt may hold: models trained on several images per prompt get 8 (a video's frames);
# LLaVA-1.5, PaliGemma and DeepSeek-VL were trained on one image per prompt. Unknown models: 1, unless
# options.extra["max_images_per_prompt"] says otherwise.
MAX_IMAGES_PER_PROMPT = {
    "qwen2_vl": 8, "qwen2_5_vl": 8, "qwen3_vl": 8, "idefics3": 8, "smolvlm": 8,
    "llava": 1, "paligemma": 1, "deepseek_vl": 1, "deepseek_vl_hybrid": 1,
}

# PaliGemma "mix" checkpoints answer task prefixes, not free chat.
PALIGEMMA_CAPTION = "caption en"
PALIGEMMA_TASK_PREFIXES = ("caption", "describe", "answer", "question", "ocr", "detect", "segment")


def image_only_processor_class(cls: type) -> type:
    """``cls`` without its video processor, when it has one.

    transformers 5 builds every sub-processor a processor class declares, and video processors need torchvision
    (huggingface/transformers#48558): without it, AutoProcessor cannot load Qwen2-VL/2.5-VL/3-VL or SmolVLM even
    for images. The subclass keeps the same name and behaviour and simply does not declare a video processor.
    """
    if "video_processor" not in cls.get_attributes():
        return cls

    def get_attributes(klass) -> list[str]:
        return [name for name in cls.get_attributes() if name != "video_processor"]

    return type(cls.__name__, (cls,), {"get_attributes": classmethod(get_attributes), "__module__": cls.__module__,
                                       "__doc__": cls.__doc__})


def load_chat_processor(spec: str, options: ModelOptions, model_type: str, flag: str = "--captioner"):
    """The model's processor; image-only when torchvision (needed by video processors) is not installed."""
    tf = transformers()
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.utils import is_torchvision_available

    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    cls = getattr(tf, name, None) if isinstance(name, str) else None
    if cls is None or is_torchvision_available() or "video_processor" not in cls.get_attributes():
        return load_processor(spec, options, flag=flag)
    extra: dict[str, Any] = {"revision": options.revision} if options.revision else {}
    try:
        return image_only_processor_class(cls).from_pretrained(spec, **extra)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{flag} {spec}: cannot load its processor/tokenizer ({_short(exc)}). A model folder needs the "
            f"processor files saved beside the weights (processor.save_pretrained(folder))"
        ) from None


@register_captioner(
    "chat_vlm",
    model_types=("llava", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "smolvlm", "deepseek_vl",
                 "deepseek_vl_hybrid", "paligemma"),
)
class ChatVLMCaptioner(CaptionerBase):
    """Chat VLMs (Qwen-VL, SmolVLM, LLaVA, PaliGemma, DeepSeek-VL): instructions, questions, several frames at once.

    ``--prompt`` is the instruction (default: a one-or-two-sentence description); ``ask`` puts the question in
    its place. ``caption_frames`` shows a video's frames in one user message, in time order, for models that
    take several images (``max_images_per_prompt``).
    """

    backend = "chat_vlm"
    supports_prompt = True
    supports_questions = True

    def __init__(self, model_id: str, options: ModelOptions) -> None:
        super().__init__(model_id, options)
        if options.extra.get("task"):
            raise ConfigError(f"--task {options.extra['task']}: only Florence-2 takes a task; give a chat VLM an "
                              "instruction with --prompt instead (e.g. --prompt 'Read the text in the image.')")
        config = read_config(model_id, options)
        self.model_type: str = config.get("model_type", "")
        self.processor = load_chat_processor(model_id, options, self.model_type)
        tokenizer = self.processor.tokenizer
        self.plain_prompt = self.model_type == "paligemma"  # task prefixes, no chat template
        if not self.plain_prompt and not getattr(self.processor, "chat_template", None):
            if getattr(tokenizer, "chat_template", None):  # older repos keep it in tokenizer_config.json
                self.processor.chat_template = tokenizer.chat_template
            else:
                raise ConfigError(
                    f"--captioner {model_id}: the {self.model_type or 'model'}'s processor has no chat template, so "
                    "captionkit cannot build its prompt; use an instruction-tuned checkpoint, or save a template "
                    "with the processor (processor.chat_template = ...; processor.save_pretrained(folder))")
        if self.model_type == RESIDUAL_LLAVA_TYPE:  # captionkit train projector --projector residual
            from captionkit.models.residual_llava import register

            register()
        self.model = load_model(model_id, "AutoModelForImageTextToText", options)
        tokenizer.padding_side = "left"  # decoder-only: every row must end where generation starts
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.model.generation_config.pad_token_id is None:
            self.model.generation_config.pad_token_id = tokenizer.pad_token_id
        self.image_token: str | None = getattr(self.processor, "image_token", None)
        limit = options.extra.get("max_images_per_prompt", MAX_IMAGES_PER_PROMPT.get(self.model_type, 1))
        self.max_images_per_prompt = max(1, int(limit))

    # ------------------------------------------------------------------ prompts

    def _check_text(self, text: str, flag: str) -> None:
        if self.image_token and self.image_token in text:
            raise ConfigError(f"{flag}: contains {self.image_token}, the model's image placeholder; captionkit "
                              f"inserts the image itself, so remove {self.image_token} from {flag}")

    def _instruction(self, prompt: str | None, flag: str = "--prompt") -> str:
        if prompt is None or not prompt.strip():
            return PALIGEMMA_CAPTION if self.plain_prompt else DEFAULT_CAPTION_PROMPT
        self._check_text(prompt, flag)
        return prompt.strip()

    def prompt_text(self, text: str, n_images: int = 1) -> str:
        """The full model input for ``text`` about ``n_images`` images (before image-token expansion)."""
        if self.plain_prompt:  # PaliGemma: "<image>" per image, then the processor adds BOS and a newline
            return (self.image_token or "<image>") * n_images + text
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)

    # ------------------------------------------------------------------ the Captioner API

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: GenerationOptions) -> list[str]:
        text = self.prompt_text(self._instruction(prompt), 1)
        return self._generate(images, [text] * len(images), gen)

    def ask(self, images: Sequence[Image.Image], question: str, gen: GenerationOptions | None = None) -> list[str]:
        if not question or not question.strip():
            raise ConfigError("the question is empty; ask something about the image")
        self._check_text(question, "the question")
        question = question.strip()
        if self.plain_prompt and not question.lower().startswith(PALIGEMMA_TASK_PREFIXES):
            question = f"answer en {question}"
        return self.caption(images, question, gen)

    def caption_frames(self, frames: Sequence[Image.Image], prompt: str | None = None,
                       gen: GenerationOptions | None = None) -> str:
        """One description of ``frames`` (a video's frames in time order) shown together in one user message."""
        frames = list(frames)
        if not frames:
            raise ConfigError("caption_frames needs at least one frame")
        if len(frames) > self.max_images_per_prompt:
            fix = (f"use --frames {self.max_images_per_prompt} or fewer" if self.max_images_per_prompt > 1
                   else "caption the frames one by one (it takes one image per prompt)")
            raise ConfigError(f"--frames {len(frames)}: {self.model_id} ({self.model_type}) takes at most "
                              f"{self.max_images_per_prompt} image(s) per prompt; {fix}")
        if prompt is None or not prompt.strip():
            text = (PALIGEMMA_CAPTION if self.plain_prompt
                    else DEFAULT_FRAMES_PROMPT.format(n=len(frames)) if len(frames) > 1 else DEFAULT_CAPTION_PROMPT)
        else:
            text = self._instruction(prompt)
        return self._generate(frames, [self.prompt_text(text, len(frames))], gen or GenerationOptions())[0]

    # ------------------------------------------------------------------ generation

    def _generate(self, images: list[Image.Image], texts: list[str], gen: GenerationOptions) -> list[str]:
        """``texts`` hold all the images' placeholders in order; one left-padded generate call for all rows."""
        inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt")
        inputs.pop("labels", None)  # PaliGemma returns training labels; generation does not need them
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # dtype applies to float tensors only
        set_seed(gen.seed)
        with torch().inference_mode():
            ids = self.model.generate(**inputs, **gen.generate_kwargs())
        if not self.model.config.is_encoder_decoder:
            ids = ids[:, inputs["input_ids"].shape[1]:]  # only what the model wrote after the prompt
        return [text.strip() for text in self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
