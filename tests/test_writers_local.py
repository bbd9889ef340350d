"""The local (transformers causal LM) writer against direct ``generate`` calls on tiny random models."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from captionkit.errors import ConfigError
from captionkit.models.options import GenerationOptions
from captionkit.models.settings import WriteSettings
from captionkit.writers.base import Prompt, load_writer
from captionkit.writers.local import LocalWriter, PromptTooLongError, plain_prompt, prepare_tokenizer
from tiny_lm import MAX_POSITIONS, build_lora_adapter, build_tiny_lm, build_vision_folder, train_tokenizer

PROMPTS = [
    Prompt("You are a social media writer.", "Write a post: a red sneaker on a wooden table."),
    Prompt(None, "dog on a beach"),
    Prompt("Keep it short.", "Description: a dog running on a sandy beach at sunset with waves. "
                             "Visible text: summer sale, fifty percent off everything this weekend."),
    Prompt("sys", "new from acme"),
]
GREEDY = GenerationOptions(max_new_tokens=10)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("writers")
    lm = build_tiny_lm(root / "lm")
    return {
        "lm": lm,
        "adapter": build_lora_adapter(lm, root / "adapter"),
        "plain": build_tiny_lm(root / "plain", chat_template=False),
        "vit": build_vision_folder(root / "vit"),
        "root": root,
    }


@pytest.fixture(scope="module")
def writer(models) -> LocalWriter:
    spec = str(models["lm"])
    return load_writer(spec, WriteSettings(writer=spec, batch_size=4))


@pytest.fixture(scope="module")
def direct(models):
    tok = AutoTokenizer.from_pretrained(models["lm"])
    model = AutoModelForCausalLM.from_pretrained(models["lm"]).eval()
    return tok, model


def _generate(tok, model, text: str, add_special_tokens: bool = False, seed: int | None = None, **kw) -> list[str]:
    inputs = tok(text, return_tensors="pt", add_special_tokens=add_special_tokens)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.inference_mode():
        ids = model.generate(**inputs, **kw)
    new = ids[:, inputs["input_ids"].shape[1]:]
    return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


def _chat(tok, prompt: Prompt) -> str:
    return tok.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)


def test_load_writer_picks_local_for_a_folder(writer, models):
    assert isinstance(writer, LocalWriter)
    assert writer.backend == "local"
    assert writer.model_id == str(models["lm"])
    assert writer.context == MAX_POSITIONS
    assert writer.chat_template
    assert writer.tokenizer.padding_side == "left"


def test_greedy_equals_direct_generate_token_for_token(writer, direct):
    tok, model = direct
    for prompt in PROMPTS:
        text = _chat(tok, prompt)
        assert writer.render(prompt) == text
        inputs = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            ids = model.generate(**inputs, max_new_tokens=10, do_sample=False, num_beams=1)
        expected = ids[0, inputs["input_ids"].shape[1]:].tolist()
        assert writer._generate_ids([text], GREEDY, 1) == [expected]
        assert len(expected) >= 2  # min_new_tokens keeps the random model writing
        assert writer.write([prompt], GREEDY) == [[tok.decode(expected, skip_special_tokens=True).strip()]]


def test_batched_with_left_padding_equals_one_at_a_time(writer, models):
    lengths = {len(writer.tokenizer(writer.render(p), add_special_tokens=False)["input_ids"]) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # different lengths: the batch really is padded
    spec = str(models["lm"])
    single = LocalWriter(spec, WriteSettings(writer=spec, batch_size=1))
    batched = writer.write(PROMPTS, GREEDY)
    assert batched == single.write(PROMPTS, GREEDY)
    assert len({texts[0] for texts in batched}) > 1  # the random model does not say the same for everything
    # batches of 3 then 1 as well
    three = LocalWriter(spec, WriteSettings(writer=spec, batch_size=3))
    assert three.write(PROMPTS, GREEDY) == batched


def test_sampled_candidates_are_reproducible_with_a_seed(writer, direct):
    tok, model = direct
    gen = GenerationOptions(max_new_tokens=8, do_sample=True, seed=7)
    first = writer.write(PROMPTS[:2], gen, n=3)
    assert first == writer.write(PROMPTS[:2], gen, n=3)
    assert [len(c) for c in first] == [3, 3]
    assert len(set(first[0])) > 1  # three samples, not one answer three times
    assert first != writer.write(PROMPTS[:2], GenerationOptions(max_new_tokens=8, do_sample=True, seed=8), n=3)
    # one prompt alone: the same as sampling directly with num_return_sequences
    alone = writer.write(PROMPTS[:1], gen, n=3)[0]
    assert alone == _generate(tok, model, _chat(tok, PROMPTS[0]), seed=7, max_new_tokens=8, do_sample=True,
                              num_return_sequences=3)


def test_greedy_candidates_are_beams(writer, direct):
    tok, model = direct
    assert writer.generate_kwargs(GREEDY, 2)["num_beams"] == 2
    assert writer.generate_kwargs(GenerationOptions(num_beams=4), 2)["num_beams"] == 4
    assert "num_return_sequences" not in writer.generate_kwargs(GREEDY, 1)
    got = writer.write(PROMPTS[:2], GREEDY, n=2)
    for prompt, candidates in zip(PROMPTS[:2], got):
        assert candidates == _generate(tok, model, _chat(tok, prompt), max_new_tokens=10, do_sample=False,
                                       num_beams=2, num_return_sequences=2)


def test_adapter_via_settings_and_via_writer_folder(models, writer):
    from peft import PeftModel

    lm, adapter = str(models["lm"]), str(models["adapter"])
    via_settings = LocalWriter(lm, WriteSettings(writer=lm, adapter=adapter))
    via_folder = load_writer(adapter, WriteSettings(writer=adapter))
    assert isinstance(via_folder, LocalWriter)
    assert via_settings.model_id == via_folder.model_id == f"{lm}+{adapter}"
    assert via_folder.base_model == lm and via_folder.adapter == adapter

    tok = AutoTokenizer.from_pretrained(lm)
    with warnings.catch_warnings():  # peft still asks transformers 5 for is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lm), adapter).eval()
    expected = [_generate(tok, peft_model, _chat(tok, p), max_new_tokens=10, do_sample=False) for p in PROMPTS]
    got = via_settings.write(PROMPTS, GREEDY)
    assert got == expected
    assert via_folder.write(PROMPTS, GREEDY) == expected
    assert got != writer.write(PROMPTS, GREEDY)  # the adapter changes what the model writes

    with pytest.raises(ConfigError, match="adapter"):
        LocalWriter(adapter, WriteSettings(writer=adapter, adapter=adapter))
    with pytest.raises(ConfigError, match=r"--adapter .*adapter_config\.json"):
        LocalWriter(lm, WriteSettings(writer=lm, adapter=str(models["vit"])))


def test_prompt_too_long_names_length_context_and_fix(writer):
    long = Prompt(None, "a dog running on a sandy beach at sunset " * 40)
    length = len(writer.tokenizer(writer.render(long), add_special_tokens=False)["input_ids"])
    assert length > MAX_POSITIONS
    with pytest.raises(PromptTooLongError) as err:
        writer.write([PROMPTS[0], long], GREEDY)
    message = str(err.value)
    assert f"prompt 2 is {length} tokens" in message
    assert f"context is {MAX_POSITIONS} tokens" in message
    assert "--max-new-tokens 10" in message and "--k" in message
    assert (err.value.index, err.value.length, err.value.context) == (1, length, MAX_POSITIONS)
    assert isinstance(err.value, ConfigError)
    # fits only with fewer new tokens
    mid = Prompt(None, "sandy beach " * 20)
    n_mid = len(writer.tokenizer(writer.render(mid), add_special_tokens=False)["input_ids"])
    assert n_mid < MAX_POSITIONS - 10
    with pytest.raises(PromptTooLongError, match="--max-new-tokens"):
        writer.write([mid], GenerationOptions(max_new_tokens=MAX_POSITIONS - n_mid + 1))
    with pytest.raises(PromptTooLongError, match=f"below {MAX_POSITIONS}"):
        writer.write([mid], GenerationOptions(max_new_tokens=MAX_POSITIONS))


def test_not_a_causal_lm_or_missing_folder_names_writer(models, tmp_path):
    vit = str(models["vit"])
    with pytest.raises(ConfigError, match=r"--writer .*'vit' model, not a text-generation"):
        load_writer(vit, WriteSettings(writer=vit))
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match=r"--writer .*no such folder"):
        load_writer(missing, WriteSettings(writer=missing))
    with pytest.raises(ConfigError, match=r"--writer .*config\.json"):
        LocalWriter(str(tmp_path), WriteSettings(writer=str(tmp_path)))
    with pytest.raises(ConfigError, match="--writer"):  # a hub id that is not cached, offline
        LocalWriter("nobody/no-such-writer", WriteSettings(writer="nobody/no-such-writer"))


def test_missing_tokenizer_files(models, tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (folder / name).write_bytes((models["lm"] / name).read_bytes())
    with pytest.raises(ConfigError, match=r"--writer .*tokenizer"):
        LocalWriter(str(folder), WriteSettings(writer=str(folder)))


def test_no_chat_template_falls_back_to_plain_text(models):
    spec = str(models["plain"])
    plain = LocalWriter(spec, WriteSettings(writer=spec))
    assert not plain.chat_template
    prompt = PROMPTS[0]
    assert plain.render(prompt) == plain_prompt(prompt) == prompt.text() + "\n\n"
    tok = AutoTokenizer.from_pretrained(spec)
    model = AutoModelForCausalLM.from_pretrained(spec).eval()
    expected = _generate(tok, model, prompt.text() + "\n\n", add_special_tokens=True, max_new_tokens=10,
                         do_sample=False)
    assert plain.write([prompt], GREEDY) == [expected]
    assert plain.write(PROMPTS, GREEDY)[0] == expected  # batched too


def test_pad_token_falls_back_to_eos():
    tok = train_tokenizer(pad_token=False)
    assert tok.pad_token is None
    prepared = prepare_tokenizer(tok, "x")
    assert prepared.pad_token == prepared.eos_token == "<|im_end|>"
    assert prepared.padding_side == "left"


def test_empty_prompts_and_bad_n(writer):
    assert writer.write([], GREEDY) == []
    with pytest.raises(ConfigError, match="--num-candidates"):
        writer.write(PROMPTS[:1], GREEDY, n=0)


def test_chat_template_without_system_role_gets_system_in_the_user_turn(models):
    spec = str(models["lm"])
    w = LocalWriter(spec, WriteSettings(writer=spec))
    w.tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    rendered = w.render(PROMPTS[0])
    assert rendered == f"<|im_start|>user\n{PROMPTS[0].text()}<|im_end|>\n<|im_start|>assistant\n"
    assert w.render(PROMPTS[1]) == f"<|im_start|>user\n{PROMPTS[1].user}<|im_end|>\n<|im_start|>assistant\n"
    w.tokenizer.chat_template = "{{ raise_exception('broken') }}"
    with pytest.raises(ConfigError, match=r"chat template fails.*broken"):
        w.render(PROMPTS[0])
