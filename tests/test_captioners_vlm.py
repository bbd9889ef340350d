"""The Florence-2 and chat-VLM captioners, on tiny random models saved by ``tiny_vlms``.

Every caption is checked against the model's own greedy ``generate`` on the same prompt and pixels, computed
here straight from transformers, one image at a time (no padding): the backend's prompt building, left-padded
batching and decoding add nothing and lose nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch  # noqa: E402

from captionkit.captioners.base import Captioner, backend_for_config, load_captioner  # noqa: E402
from captionkit.captioners.chat_vlm import (  # noqa: E402
    DEFAULT_CAPTION_PROMPT,
    DEFAULT_FRAMES_PROMPT,
    MAX_IMAGES_PER_PROMPT,
    image_only_processor_class,
)
from captionkit.errors import ConfigError  # noqa: E402
from captionkit.models.options import GenerationOptions, ModelOptions  # noqa: E402
from tiny_vlms import BUILDERS  # noqa: E402

# PaliGemma's processor builds its (unused) labels with np.array(copy=False) on a list: numpy 2 warns, harmlessly.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ARCHS = list(BUILDERS)
CHAT = [a for a in ARCHS if a != "florence2"]
MULTI = [a for a in CHAT if MAX_IMAGES_PER_PROMPT[a] > 1]
SINGLE = [a for a in CHAT if MAX_IMAGES_PER_PROMPT[a] == 1]
DYNAMIC = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3"]  # image-size dependent number of image tokens
OPTIONS = ModelOptions(device="cpu", batch_size=3)
GREEDY = GenerationOptions(max_new_tokens=6)
QUESTION = "What is in the picture?"


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# Different sizes and aspect ratios: Qwen-VL gets 30, 28 and 32 image tokens, Idefics3 5 or 3 tiles.
IMAGES = [_image(48, 40, 1), _image(56, 32, 2), _image(30, 60, 3)]
FRAMES = [_image(40, 40, 10 + i) for i in range(3)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine waiting threads cost 4x the time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``tiny(arch)``: the folder of that architecture's tiny model, built on first use."""
    root = tmp_path_factory.mktemp("tiny_vlms")

    def get(arch: str) -> Path:
        folder = root / arch
        if not folder.exists():
            BUILDERS[arch](folder)
        return folder

    return get


@pytest.fixture(scope="session")
def direct(tiny):
    """``direct(arch)``: (model, processor) straight from transformers, for reference outputs."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            folder = tiny(arch)
            model_type = json.loads((folder / "config.json").read_text())["model_type"]
            cls = image_only_processor_class(getattr(transformers, PROCESSOR_MAPPING_NAMES[model_type]))
            processor = cls.from_pretrained(folder)
            processor.tokenizer.padding_side = "left"
            model = transformers.AutoModelForImageTextToText.from_pretrained(folder).eval()
            cache[arch] = (model, processor)
        return cache[arch]

    return get


def _captioner(tiny, arch: str, **extra) -> Captioner:
    options = ModelOptions(device="cpu", batch_size=3, extra=extra) if extra else OPTIONS
    return load_captioner(str(tiny(arch)), options)


def _chat_text(processor, arch: str, text: str, n_images: int = 1) -> str:
    """The prompt as a user of transformers would write it."""
    if arch == "paligemma":
        return "<image>" * n_images + text
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def _reference(direct, arch: str, images: list[Image.Image], text: str, max_new_tokens: int = 6) -> str:
    """Greedy generate for one prompt holding ``images``, decoded after the prompt."""
    model, processor = direct(arch)
    inputs = processor(images=images, text=[text], return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    new = ids[0, inputs["input_ids"].shape[1]:]
    return processor.tokenizer.decode(new, skip_special_tokens=True).strip()


def _florence_reference(direct, image: Image.Image, task: str) -> str:
    model, processor = direct("florence2")
    inputs = processor(images=[image], text=[task], return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0]
    return processor.post_process_generation(text, task=task, image_size=image.size)[task].strip()


# ---------------------------------------------------------------------------------------------- all architectures

@pytest.mark.parametrize("arch", ARCHS)
def test_backend_inferred_from_config(tiny, arch):
    captioner = _captioner(tiny, arch)
    assert isinstance(captioner, Captioner)
    assert captioner.backend == ("florence2" if arch == "florence2" else "chat_vlm")
    assert captioner.supports_prompt
    assert captioner.supports_questions == (arch != "florence2")
    assert captioner.max_images_per_prompt == (1 if arch == "florence2" else MAX_IMAGES_PER_PROMPT[arch])


def test_unknown_image_text_model_falls_back_to_chat_vlm():
    config = {"model_type": "llava_next", "architectures": ["LlavaNextForConditionalGeneration"]}
    assert backend_for_config(config, "x/y") == "chat_vlm"


@pytest.mark.parametrize("arch", CHAT)
def test_greedy_caption_matches_direct_generate(tiny, direct, arch):
    captioner = _captioner(tiny, arch)
    _, processor = direct(arch)
    text = _chat_text(processor, arch, "caption en" if arch == "paligemma" else DEFAULT_CAPTION_PROMPT)
    expected = _reference(direct, arch, [IMAGES[0]], text)
    assert expected  # the tiny model writes something (min_new_tokens), so the comparison means something
    assert captioner.caption([IMAGES[0]], gen=GREEDY) == [expected]
    # an instruction of the user's own
    prompt = "caption es" if arch == "paligemma" else "Describe the colours."
    expected = _reference(direct, arch, [IMAGES[1]], _chat_text(processor, arch, prompt))
    assert captioner.caption([IMAGES[1]], prompt, GREEDY) == [expected]


@pytest.mark.parametrize("arch", CHAT)
def test_batch_of_different_sizes_equals_one_at_a_time(tiny, direct, arch):
    captioner = _captioner(tiny, arch)
    _, processor = direct(arch)
    text = _chat_text(processor, arch, "caption en" if arch == "paligemma" else DEFAULT_CAPTION_PROMPT)
    if arch in DYNAMIC:  # the batch really is left-padded: rows have different numbers of image tokens
        mask = processor(images=IMAGES, text=[text] * 3, padding=True, return_tensors="pt")["attention_mask"]
        assert len(set(mask.sum(1).tolist())) > 1 and (mask[:, 0] == 0).any()
    batched = captioner.caption(IMAGES, gen=GREEDY)  # batch_size 3: one generate call
    singles = [captioner.caption([image], gen=GREEDY)[0] for image in IMAGES]
    assert batched == singles
    assert batched == [_reference(direct, arch, [image], text) for image in IMAGES]


@pytest.mark.parametrize("arch", CHAT)
def test_ask_matches_direct_generate(tiny, direct, arch):
    captioner = _captioner(tiny, arch)
    _, processor = direct(arch)
    question = f"answer en {QUESTION}" if arch == "paligemma" else QUESTION
    expected = [_reference(direct, arch, [image], _chat_text(processor, arch, question)) for image in IMAGES[:2]]
    assert captioner.ask(IMAGES[:2], QUESTION, GREEDY) == expected


@pytest.mark.parametrize("arch", MULTI)
def test_caption_frames_in_one_prompt_matches_direct_generate(tiny, direct, arch):
    captioner = _captioner(tiny, arch)
    _, processor = direct(arch)
    text = _chat_text(processor, arch, DEFAULT_FRAMES_PROMPT.format(n=3), n_images=3)
    assert text.count(processor.image_token) == 3
    assert captioner.caption_frames(FRAMES, gen=GREEDY) == _reference(direct, arch, FRAMES, text)
    # a question about the video goes in the prompt's place
    text = _chat_text(processor, arch, QUESTION, n_images=3)
    assert captioner.caption_frames(FRAMES, QUESTION, GREEDY) == _reference(direct, arch, FRAMES, text)


# ---------------------------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("arch", SINGLE)
def test_too_many_frames_for_a_single_image_model(tiny, arch):
    captioner = _captioner(tiny, arch)
    with pytest.raises(ConfigError, match=r"--frames 3:.*at most 1 image"):
        captioner.caption_frames(FRAMES)


def test_too_many_frames_for_a_multi_image_model(tiny):
    captioner = _captioner(tiny, "qwen2_vl")
    with pytest.raises(ConfigError, match=r"--frames 9:.*use --frames 8 or fewer"):
        captioner.caption_frames([FRAMES[0]] * 9)


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl", "florence2"])
def test_processor_files_missing(tiny, tmp_path, arch):
    folder = tmp_path / f"{arch}-weights-only"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(tiny(arch) / name, folder / name)
    with pytest.raises(ConfigError, match="processor") as err:
        load_captioner(str(folder), OPTIONS)
    assert str(folder) in str(err.value)


def test_processor_without_chat_template(tiny, tmp_path):
    folder = tmp_path / "llava-no-template"
    shutil.copytree(tiny("llava"), folder)
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match="has no chat template"):
        load_captioner(str(folder), OPTIONS)


def test_florence_task_flag_is_refused_by_chat_vlms(tiny):
    with pytest.raises(ConfigError, match="--task ocr: only Florence-2 takes a task"):
        _captioner(tiny, "qwen2_vl", task="ocr")


@pytest.mark.parametrize("arch", ["qwen2_vl", "llava"])
def test_prompt_with_the_image_placeholder_is_refused(tiny, arch, direct):
    captioner = _captioner(tiny, arch)
    token = direct(arch)[1].image_token
    with pytest.raises(ConfigError, match="--prompt: contains"):
        captioner.caption([IMAGES[0]], f"{token} describe", GREEDY)
    with pytest.raises(ConfigError, match="question is empty"):
        captioner.ask([IMAGES[0]], "  ", GREEDY)


# ---------------------------------------------------------------------------------------------- Florence-2

@pytest.mark.parametrize("task", ["caption", "detailed_caption", "more_detailed_caption", "ocr"])
def test_florence2_task_matches_direct_generate(tiny, direct, task):
    captioner = _captioner(tiny, "florence2", task=task)
    token = f"<{task.upper()}>"
    expected = [_florence_reference(direct, image, token) for image in IMAGES]
    assert expected[0]
    assert captioner.caption(IMAGES, gen=GREEDY) == expected


def test_florence2_default_task_is_detailed_caption(tiny, direct):
    captioner = _captioner(tiny, "florence2")
    assert captioner.task == "detailed_caption"
    assert captioner.caption([IMAGES[0]], gen=GREEDY) == [_florence_reference(direct, IMAGES[0], "<DETAILED_CAPTION>")]


def test_florence2_ocr_method_and_prompts(tiny, direct):
    captioner = _captioner(tiny, "florence2", task="caption")
    expected = [_florence_reference(direct, image, "<OCR>") for image in IMAGES]
    assert captioner.ocr(IMAGES, GREEDY) == expected  # <OCR> whatever --task says
    assert captioner.caption(IMAGES[:1], "<OCR>", GREEDY) == expected[:1]  # a task token as --prompt
    # free text is Florence-2's text input as it is
    model, processor = direct("florence2")
    inputs = processor(images=[IMAGES[0]], text=["what colour is it"], return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1)
    free = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
    assert captioner.caption(IMAGES[:1], "what colour is it", GREEDY) == [free]


def test_florence2_remote_code_checkpoint_is_refused(tmp_path):
    config = {"model_type": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
              "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config"},
              "vision_config": {"model_type": "davit"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"remote-code Florence-2.*florence-community/Florence-2-base"):
        load_captioner(str(tmp_path), OPTIONS)


def test_florence2_refusals(tiny):
    with pytest.raises(ConfigError, match="--task 'dense': Florence-2 tasks are caption"):
        _captioner(tiny, "florence2", task="dense")
    captioner = _captioner(tiny, "florence2")
    with pytest.raises(ConfigError, match="give boxes or regions"):
        captioner.caption([IMAGES[0]], "<OD>", GREEDY)
    with pytest.raises(ConfigError, match="give boxes or regions"):
        captioner.caption([IMAGES[0]], "<OCR> and more", GREEDY)
    with pytest.raises(ConfigError, match="cannot answer questions"):
        captioner.ask([IMAGES[0]], QUESTION, GREEDY)
    with pytest.raises(ConfigError, match="one image per prompt"):
        captioner.caption_frames(FRAMES)
