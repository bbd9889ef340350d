"""The model-free template writer: deterministic, distinct candidates, alt-text rules, length limits."""

from __future__ import annotations

import re

import pytest

from captionkit.models.options import GenerationOptions
from captionkit.models.settings import WriteSettings
from captionkit.writers.base import Prompt, load_writer
from captionkit.writers.template import EMOJI, TemplateWriter, compose, first_sentence, hashtags

CONTEXT = {
    "description": "A red sneaker on a wooden table next to a red shoe box. The sneaker has white laces.",
    "ocr_text": "RUN FASTER",
    "transcript": None,
    "brand": "Acme",
    "handle": "acme",
    "hashtags": 2,
    "emoji": True,
    "call_to_action": "Shop now",
    "platform": {"name": "x", "max_chars": 280},
    "tone": "friendly",
    "metadata": {"company": "Acme", "username": "acme"},
    "examples": [],
}
GEN = GenerationOptions()


def _write(context: dict, n: int = 1) -> list[str]:
    return TemplateWriter().write([Prompt(None, "ignored", context)], GEN, n)[0]


def test_load_writer_template():
    writer = load_writer("template", WriteSettings(writer="template"))
    assert isinstance(writer, TemplateWriter)
    assert (writer.backend, writer.model_id) == ("template", "template")


def test_post_uses_description_tagline_cta_handle_and_hashtags():
    post = _write(CONTEXT)[0]
    assert post.startswith("New from Acme: a red sneaker on a wooden table next to a red shoe box.")
    assert '"RUN FASTER"' in post
    assert "Shop now." in post and "@acme" in post
    assert re.findall(r"#\w+", post) == ["#Red", "#Sneaker"]  # most frequent non-stopwords, CamelCased
    assert EMOJI[0] in post
    assert "white laces" not in post  # first sentence only


def test_deterministic_and_n_distinct_candidates():
    first = _write(CONTEXT, n=4)
    assert first == _write(CONTEXT, n=4)
    assert len(first) == 4 and len(set(first)) == 4
    assert _write(CONTEXT, n=1) == first[:1]
    prompts = [Prompt(None, "", CONTEXT), Prompt(None, "", {**CONTEXT, "description": "a dog on a beach"})]
    both = TemplateWriter().write(prompts, GEN, 2)
    assert [len(c) for c in both] == [2, 2] and both[0] == first[:2]
    assert "a dog on a beach" in both[1][0]


@pytest.mark.parametrize("name", ["alt-text", "alt_text"])
def test_alt_text_is_plain_description(name):
    context = {**CONTEXT, "platform": {"name": name, "max_chars": 1000}}
    candidates = _write(context, n=3)
    assert candidates[0] == CONTEXT["description"]
    for text in candidates:
        assert "#" not in text and "@" not in text and "Shop now" not in text
        assert not any(e in text for e in EMOJI)
        assert not text.startswith(("New from", "Just in", "Take a look"))
    assert len(set(candidates)) == 3  # full, with the visible text, first sentence only
    assert 'Text in the image reads: "RUN FASTER".' in candidates[1]


@pytest.mark.parametrize("limit", [280, 140, 80, 40])
def test_within_max_chars(limit):
    long = {**CONTEXT, "description": "A " + "very long and detailed description of a sunny beach " * 8,
            "platform": {"name": "x", "max_chars": limit}, "hashtags": 5}
    for context in (CONTEXT | {"platform": {"name": "x", "max_chars": limit}}, long):
        for post in _write(context, n=4):
            assert 0 < len(post) <= limit, post
    if limit >= 140:  # a long sentence is shortened to keep a short call to action and handle
        assert _write(long)[0].endswith("… Shop now. @acme")
    # the core sentence is kept before the optional parts
    assert _write(CONTEXT | {"platform": {"name": "x", "max_chars": 80}})[0].startswith("New from Acme: a red")


def test_missing_ocr_and_transcript_and_sparse_context():
    context = {"description": "a dog running on a beach at sunset", "platform": {"name": "instagram"}}
    post = _write(context, n=2)
    assert post == ["Just in: a dog running on a beach at sunset.", "A dog running on a beach at sunset."]
    # nothing but a transcript: its first sentence is the post
    said = _write({"transcript": "Welcome back to the channel. Today we cook pasta.", "brand": "Acme"})[0]
    assert said == "New from Acme: Welcome back to the channel."
    assert _write({}) == [""]
    assert _write({"brand": "Acme", "platform": "x"}) == ["New from Acme."]


def test_platform_rules_and_real_context():
    """With the platform dict build_context puts in the context (hard rules included)."""
    from captionkit.prompts.platforms import get_platform

    no_tags = {**CONTEXT, "platform": {**get_platform("x").to_dict(), "allow_hashtags": False, "allow_emoji": False}}
    post = _write(no_tags)[0]
    assert "#" not in post and not any(e in post for e in EMOJI) and "@acme" in post
    alt = {**CONTEXT, "platform": get_platform("alt-text").to_dict(), "handle": "@acme"}
    for text in _write(alt, n=3):
        assert len(text) <= 125 and "#" not in text and "@" not in text
    assert _write({"description": "a cat " * 40, "max_chars": 50})[0].endswith("…")


def test_formal_tone_openers_and_handle_with_at():
    context = {"description": "the new office in Berlin", "tone": "professional", "brand": "Acme",
               "handle": "@acme_co"}
    posts = _write(context, n=2)
    assert posts[0] == "Introducing from Acme: the new office in Berlin. @acme_co"
    assert posts[1] == "The new office in Berlin. @acme_co"


def test_helpers():
    assert first_sentence("Hello world. More text.") == "Hello world"
    assert first_sentence("Is it? Yes.") == "Is it?"
    assert first_sentence("") == ""
    assert hashtags("a cat and a cat and a dog on a mat", 2) == ["#Cat", "#Dog"]
    assert hashtags("acme shoes by acme", 3, exclude=["Acme"]) == ["#Shoes"]
    assert hashtags("anything", 0) == []
    assert compose(CONTEXT, 4) == compose(CONTEXT, 0)  # four patterns, cycling
