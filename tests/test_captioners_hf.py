"""The BLIP, BLIP-2, GIT and vision encoder-decoder captioners, on tiny random models saved by the tests.

Each caption is checked against what the model's own ``generate`` returns for the same pixels, computed
here straight from transformers, so the backends add nothing to and lose nothing from the model's output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch  # noqa: E402

from captionkit.captioners.base import Captioner, load_captioner  # noqa: E402
from captionkit.errors import ConfigError  # noqa: E402
from captionkit.models.options import GenerationOptions, ModelOptions  # noqa: E402
from tiny_captioners import BUILDERS, save_text_only  # noqa: E402

CASES = list(BUILDERS)  # one tiny model each; BLIP-2 twice, with an OPT and with a Flan-T5 language model
PROMPTED = [case for case in CASES if case != "vision_encoder_decoder"]
MODEL_CLASS = {"blip": "BlipForConditionalGeneration", "blip2": "Blip2ForConditionalGeneration",
               "git": "GitForCausalLM", "vision_encoder_decoder": "VisionEncoderDecoderModel"}
OPTIONS = ModelOptions(device="cpu", batch_size=3)
GREEDY = GenerationOptions(max_new_tokens=6)
PROMPT = "a photo of"


@pytest.fixture(scope="module", autouse=True)
def offline_one_thread():
    """No hub (so no probe of it either), and one thread: tiny models gain nothing from more, and on a busy
    2-core machine spinning threads cost double."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny_captioners")


@pytest.fixture(scope="session")
def tiny(tiny_root):
    """``tiny(case)``: the folder of that case's tiny model, built on first use."""

    def get(case: str) -> Path:
        folder = tiny_root / case
        if not folder.exists():
            BUILDERS[case][1](folder)
        return folder

    return get


@pytest.fixture(scope="session")
def direct(tiny):
    """``direct(case)``: (model, processor, tokenizer) loaded straight from transformers, for reference."""
    cache: dict[str, tuple] = {}

    def get(case: str):
        if case not in cache:
            folder = tiny(case)
            model = getattr(transformers, MODEL_CLASS[backend_of(case)]).from_pretrained(folder).eval()
            if case == "vision_encoder_decoder":
                processor = transformers.AutoImageProcessor.from_pretrained(folder)
                tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
            else:
                processor = transformers.AutoProcessor.from_pretrained(folder)
                tokenizer = processor.tokenizer
            cache[case] = (model, processor, tokenizer)
        return cache[case]

    return get


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Three noise pictures of different sizes and shapes."""
    sizes = [(48, 32), (64, 64), (23, 71)]
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def backend_of(case: str) -> str:
    return BUILDERS[case][0]


def captioner(tiny, case: str):
    return load_captioner(str(tiny(case)), OPTIONS)


def reference(direct, case: str, images, prompt: str | None = None, seed: int | None = None, **gen) -> list[str]:
    """What the model's own generate writes, decoded, following the backends' documented rules.

    GIT takes a prompt as [CLS] + its tokens; decoder-only models (GIT, BLIP-2 with OPT) return the prompt
    first, and it is dropped; BLIP-2 with Flan-T5 reads an empty prompt when given none.
    """
    model, processor, tokenizer = direct(case)
    backend = backend_of(case)
    if backend == "blip2" and model.config.is_encoder_decoder:
        prompt = prompt or ""
    if backend == "vision_encoder_decoder":
        inputs = processor(images, return_tensors="pt")
    elif backend == "git" and prompt:
        ids = [tokenizer.cls_token_id, *tokenizer(prompt, add_special_tokens=False).input_ids]  # no [SEP]
        inputs = {"pixel_values": processor(images=images, return_tensors="pt").pixel_values,
                  "input_ids": torch.tensor([ids] * len(images))}
    else:
        inputs = processor(images=images, text=None if prompt is None else [prompt] * len(images),
                           return_tensors="pt")
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**inputs, **gen)
    if prompt and (backend == "git" or (backend == "blip2" and not model.config.is_encoder_decoder)):
        out = out[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]


@pytest.mark.parametrize("case", CASES)
def test_backend_picked_from_config(tiny, case):
    cap = captioner(tiny, case)
    assert isinstance(cap, Captioner)
    assert cap.backend == backend_of(case)
    assert cap.model_id == str(tiny(case))
    assert cap.supports_prompt is (cap.backend != "vision_encoder_decoder")
    assert cap.supports_questions is (cap.backend == "blip2")


@pytest.mark.parametrize("case", CASES)
def test_greedy_matches_generate(tiny, direct, images, case):
    got = captioner(tiny, case).caption(images, gen=GREEDY)
    assert got == reference(direct, case, images, max_new_tokens=6, num_beams=1, do_sample=False)
    assert len(set(got)) > 1, "captions should depend on the image (the tiny models are built to make them)"


@pytest.mark.parametrize("case", CASES)
def test_batch_equals_one_at_a_time(tiny, images, case):
    cap = captioner(tiny, case)
    assert cap.options.batch_size == 3
    assert cap.caption(images, gen=GREEDY) == [cap.caption([image], gen=GREEDY)[0] for image in images]


@pytest.mark.parametrize("case", CASES)
def test_beam_search_matches_generate(tiny, direct, images, case):
    gen = GenerationOptions(max_new_tokens=6, num_beams=2)
    got = captioner(tiny, case).caption(images, gen=gen)
    assert got == reference(direct, case, images, max_new_tokens=6, num_beams=2, do_sample=False)


@pytest.mark.parametrize("case", CASES)
def test_sampling_is_reproducible_with_a_seed(tiny, direct, images, case):
    cap = captioner(tiny, case)
    gen = GenerationOptions(max_new_tokens=6, do_sample=True, top_p=0.9, seed=7)
    first = cap.caption(images, gen=gen)
    assert cap.caption(images, gen=gen) == first
    assert first == reference(direct, case, images, seed=7, max_new_tokens=6, do_sample=True, top_p=0.9,
                              num_beams=1)


@pytest.mark.parametrize("case", PROMPTED)
def test_prompt_matches_conditional_generate(tiny, direct, images, case):
    got = captioner(tiny, case).caption(images, prompt=PROMPT, gen=GREEDY)
    assert got == reference(direct, case, images, prompt=PROMPT, max_new_tokens=6, num_beams=1, do_sample=False)
    if case == "blip":  # BLIP continues the prompt, which stays at the start of the caption
        assert all(text.startswith(PROMPT) for text in got)
    assert got != captioner(tiny, case).caption(images, gen=GREEDY)


@pytest.mark.parametrize("case", CASES)
def test_grey_and_transparent_images(tiny, case):
    pictures = [Image.new("L", (40, 30), 128), Image.new("RGBA", (30, 40), (200, 0, 0, 100))]
    assert [type(text) for text in captioner(tiny, case).caption(pictures, gen=GREEDY)] == [str, str]


@pytest.mark.parametrize("case", CASES)
def test_half_precision_on_cpu(tiny, images, case):
    """A bfloat16 model captions end to end (the backends cast pixel_values to its dtype)."""
    cap = load_captioner(str(tiny(case)), ModelOptions(device="cpu", dtype="bfloat16", batch_size=3))
    assert len(cap.caption(images, gen=GenerationOptions(max_new_tokens=3))) == 3


def test_vision_encoder_decoder_refuses_a_prompt(tiny, images):
    with pytest.raises(ConfigError, match="--prompt"):
        captioner(tiny, "vision_encoder_decoder").caption(images, prompt=PROMPT)


@pytest.mark.parametrize("case", ["blip2", "blip2-flan-t5"])
def test_blip2_answers_questions_in_its_format(tiny, direct, images, case):
    got = captioner(tiny, case).ask(images, " what is this? ", gen=GREEDY)
    assert got == reference(direct, case, images, prompt="Question: what is this? Answer:", max_new_tokens=6,
                            num_beams=1, do_sample=False)


@pytest.mark.parametrize("backend", ["blip", "git", "vision_encoder_decoder"])
def test_captioning_only_backends_refuse_questions(tiny, images, backend):
    with pytest.raises(ConfigError, match="cannot answer questions"):
        captioner(tiny, backend).ask(images, "what is this?")


def _copy_without(src: Path, dst: Path, keep: set[str] | None = None, drop: set[str] | None = None) -> Path:
    dst.mkdir()
    for file in src.iterdir():
        if (keep is None or file.name in keep) and file.name not in (drop or set()):
            shutil.copy(file, dst / file.name)
    return dst


@pytest.mark.parametrize("case", CASES)
def test_folder_without_processor_files(tiny, tmp_path, case):
    folder = _copy_without(tiny(case), tmp_path / "weights-only", keep={"config.json", "model.safetensors"})
    with pytest.raises(ConfigError, match=str(folder)):
        load_captioner(str(folder), OPTIONS)


@pytest.mark.parametrize("case", CASES)
def test_folder_without_tokenizer_files(tiny, tmp_path, case):
    # transformers 5 quietly builds an empty tokenizer here; the captioner must not run with it
    folder = _copy_without(tiny(case), tmp_path / "no-tokenizer", drop={"tokenizer.json", "tokenizer_config.json"})
    with pytest.raises(ConfigError, match=rf"{folder}.*tokenizer"):
        load_captioner(str(folder), OPTIONS)


def test_text_only_model_is_not_a_captioner(tmp_path):
    folder = save_text_only(tmp_path / "bert")
    with pytest.raises(ConfigError, match="not an image captioner"):
        load_captioner(str(folder), OPTIONS)


@pytest.mark.parametrize("spec", ["/no/such/model/folder", "no-such-model-or-id", "./missing-model"])
def test_missing_path_that_is_no_hub_id(spec):
    with pytest.raises(ConfigError, match="no such folder"):
        load_captioner(spec, OPTIONS)
