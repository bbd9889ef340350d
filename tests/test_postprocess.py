"""From raw writer output to a post: cleaning, hashtags/mentions/emoji, length, and contradiction flags."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captionkit.postprocess import (
    Post,
    clean_text,
    contradictions,
    finish_post,
    fit_length,
    is_too_long,
    normalise_tags,
    strip_alt_opener,
)
from captionkit.prompts import get_platform

X, ALT, ADOBE, INSTAGRAM = (get_platform(n) for n in ("x", "alt-text", "adobe", "instagram"))
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")


# ------------------------------------------------------------------------------------------------ cleaning


@pytest.mark.parametrize(("raw", "expected"), [
    ("Big news today!<|im_end|>\n<|im_start|>user\nmore", "Big news today!"),
    ("Big news today!<|eot_id|>", "Big news today!"),
    ("Big news today!</s>", "Big news today!"),
    ("<|start_header_id|>assistant<|end_header_id|>\n\nBig news today!<|eot_id|>", "Big news today!"),
    ("[INST] write a tweet [/INST] Big news today!", "Big news today!"),
    ("assistant: Big news today!", "Big news today!"),
    ("Assistant: Big news today!", "Big news today!"),
    ("assistant\nBig news today!", "Big news today!"),
    ("Here is a post:\nBig news today!", "Big news today!"),
    ("Sure! Here's a tweet for Acme's summer sale:\n\nBig news today!", "Big news today!"),
    ("Certainly! Here is a possible caption: Big news today!", "Big news today!"),
    ("Sure!\nBig news today!", "Big news today!"),
    ('Sure! Here\'s a post:\n"Big news today!"', "Big news today!"),
    ("```\nBig news today!\n```", "Big news today!"),
    ("```text\nBig news today!\n```", "Big news today!"),
    ('"Big news today!"', "Big news today!"),
    ("“Big news today!”", "Big news today!"),
    ("‘Big news today!’", "Big news today!"),
    ("'It's big news today!'", "It's big news today!"),
    ('"Big news today!" #news', "Big news today! #news"),
    ("Big news today!\nHashtags: #news #today", "Big news today!\n#news #today"),
    ("Big news today! Hashtags: #news", "Big news today! #news"),
    ("Big news today!\n\nHashtags:", "Big news today!"),
    ("**Big** news   today!  ", "Big news today!"),
    ("Big news today!\n\n\n\nSee you there.", "Big news today!\n\nSee you there."),
    ("Big news today!\n\nLet me know if you'd like any changes.", "Big news today!"),
    ("Big news today!\n\nNote: this post is 15 characters.", "Big news today!"),
    ("Big news today!\n\n(16 characters)", "Big news today!"),
    ("### Response:\nBig news today!\n### Input: more", "Big news today!"),
])
def test_clean_text_strips_residue(raw, expected):
    assert clean_text(raw) == expected


@pytest.mark.parametrize("text", [
    "Here's what's new: our store opens Monday.",  # a real opener, not a preamble
    "Of course we're open on Sunday!\nCome by.",
    "Great day at the beach!\nSee you soon.",
    'She said "hi" and "bye"',  # quotes inside, not around
    "Tell us your favourite in the comments!\n\nLet me know in the replies 👇",
    "Caption contest: <mention> wins! <hyperlink>",
])
def test_clean_text_leaves_real_posts_alone(text):
    assert clean_text(text) == text


def test_placeholders_survive_every_step():
    raw = 'Sure! Here\'s a tweet:\n"Thanks <mention> for the ride! Details: <hyperlink> #bikes"<|im_end|>'
    assert clean_text(raw) == "Thanks <mention> for the ride! Details: <hyperlink> #bikes"
    post = finish_post(raw, ADOBE, {"hashtags": 0, "emoji": False})
    assert post.text == "Thanks <mention> for the ride! Details: <hyperlink>"
    assert "&lt;" not in post.text


# ------------------------------------------------------------------------------------- hashtags and emoji


def test_hashtags_collapse_dedupe_and_cap():
    ctx = {"hashtags": 2, "emoji": True}
    assert normalise_tags("Ride on! # summer #Bikes #summer #bikes #fun", X, ctx) == "Ride on! #summer #Bikes"
    assert normalise_tags("Ride on! ##summer", X, ctx) == "Ride on! #summer"
    assert normalise_tags("We're # 1 in town", X, ctx) == "We're # 1 in town"  # '#1' is no tag
    # over the cap inside a sentence: the word stays, the '#' goes
    assert normalise_tags("Our #summer #sale starts #today at noon! #bikes", X, ctx) == (
        "Our #summer #sale starts today at noon!")


def test_hashtags_removed_when_zero_or_disallowed():
    assert normalise_tags("A #sunny day at the #beach. #summer #fun", X, {"hashtags": 0}) == "A sunny day at the beach."
    # alt text never keeps hashtags, whatever the context asks for
    assert normalise_tags("A dog on a beach #dog #beach", ALT, {"hashtags": 5}) == "A dog on a beach"


def test_hashtag_count_defaults_to_the_platform():
    tags = " ".join(f"#t{i}" for i in range(10))
    assert normalise_tags(f"Hi {tags}", INSTAGRAM, {}).count("#") == 5
    assert normalise_tags(f"Hi {tags}", X, None).count("#") == X.hashtags


def test_mentions_normalised_for_own_handle_only():
    ctx = {"handle": "@acme", "hashtags": 2}
    assert normalise_tags("Ride with @ acme today", X, ctx) == "Ride with @acme today"
    assert normalise_tags("Ride with @@acme today", X, ctx) == "Ride with @acme today"
    assert normalise_tags("Meet us @ the store", X, ctx) == "Meet us @ the store"
    assert normalise_tags("Thanks <mention>!", X, ctx) == "Thanks <mention>!"


def test_emoji_removed_when_off_kept_when_on():
    text = "Summer is here 🌞! Grab yours 🚲🔥 ❤️ #summer"
    assert normalise_tags(text, X, {"emoji": True, "hashtags": 1}) == text
    off = normalise_tags(text, X, {"emoji": False, "hashtags": 1})
    assert off == "Summer is here! Grab yours #summer" and not EMOJI.search(off)
    assert normalise_tags("Acme® Bikes™ © 2024", X, {"emoji": False}) == "Acme® Bikes™ © 2024"
    assert not EMOJI.search(normalise_tags("Flags 🇺🇸 and families 👨‍👩‍👧 and 1️⃣", X, {"emoji": False}))


def test_alt_text_post():
    raw = ('Sure! Here is the alt text: "Image of a red bicycle 🚲 leaning against a white brick wall in '
           'bright afternoon sun, under a large sign that reads 50% OFF, with a long shadow on the pavement" #bike #sale')
    post = finish_post(raw, ALT, {"ocr_text": "50% OFF", "hashtags": 3, "emoji": True})
    assert post.chars == len(post.text) <= 125
    assert "#" not in post.text and not EMOJI.search(post.text) and "\n" not in post.text
    assert not post.text.lower().startswith(("image of", "a image", "an image"))
    assert post.text.startswith("A red bicycle") and post.trimmed and post.flags == []


@pytest.mark.parametrize(("text", "expected"), [
    ("Image of a dog.", "A dog."), ("A photo of a dog.", "A dog."), ("This picture shows a dog.", "A dog."),
    ("Photograph depicting two cats.", "Two cats."), ("A dog in a photo of a park.", "A dog in a photo of a park."),
])
def test_strip_alt_opener(text, expected):
    assert strip_alt_opener(text) == expected


# ------------------------------------------------------------------------------------------------- length


def test_fit_length_examples():
    assert fit_length("Short.", 280) == ("Short.", False)
    assert fit_length("Anything", None) == ("Anything", False)
    text = "First sentence here. Second sentence is quite a bit longer than the first one."
    assert fit_length(text, 40) == ("First sentence here.", True)  # a sentence end keeping >= half the limit
    assert fit_length("Hi. " + "word " * 20, 40) == ("Hi. word word word word word word word…", True)
    assert fit_length("one two, three four", 10) == ("one two…", True)  # the comma goes before the ellipsis
    assert fit_length("one two three", 7) == ("one two", True)  # no room for the ellipsis: none
    assert fit_length("supercalifragilistic", 5) == ("", True)  # never mid-word


def test_fit_length_never_cuts_tags_or_placeholders():
    text = "Big news from the shop today, see <hyperlink> #summersale"
    for limit in range(1, len(text)):
        out, trimmed = fit_length(text, limit)
        assert trimmed and len(out) <= limit
        assert "<" not in out or "<hyperlink>" in out
        assert "#" not in out or "#summersale" in out
        assert not re.search(r"(^|\s)[#@]$", out)
    assert fit_length("Great day! Shop now #a #b #c", 25) == ("Great day! Shop now #a #b", True)
    assert fit_length("Go see it # now and more words", 12) == ("Go see it…", True)  # no dangling '#'


WORDS = st.sampled_from(["sale", "Summer", "#deal", "<hyperlink>", "<mention>", "@acme", "50%", "$19.99",
                         "go!", "now.", "well,", "—", "-", "#", "a", "Wow?!", "x" * 30, "é", "“quoted”"])
SEPS = st.sampled_from([" ", "  ", "\n", " \n\n", "\t"])
_DROPPABLE = ",;:-–—/&+|"


@st.composite
def posts(draw) -> str:
    words = draw(st.lists(WORDS, max_size=60))
    seps = draw(st.lists(SEPS, min_size=len(words), max_size=len(words)))
    return "".join(w + s for w, s in zip(words, seps)).strip()


@given(st.one_of(posts(), st.text(alphabet="ab c.,!?#@<>—…\n", max_size=300)), st.integers(1, 300))
@settings(max_examples=400, deadline=None)
def test_fit_length_property(text, limit):
    out, trimmed = fit_length(text, limit)
    assert len(out) <= limit
    if not trimmed:
        assert out == text and len(text) <= limit
        return
    body = out[:-1] if out.endswith("…") and not text.startswith(out) else out
    assert text.startswith(body)
    if body:
        # the cut is at a word boundary: before the next whitespace there is only punctuation that was dropped
        rest = text[len(body):]
        assert set(re.match(r"\S*", rest).group()) <= set(_DROPPABLE), (body, rest)
        assert not re.search(r"(^|\s)[#@]$", body)
    else:  # nothing fits: no word-boundary prefix with a letter or digit is within the limit
        assert not any(m.end() <= limit and any(c.isalnum() for c in text[: m.end()])
                       for m in re.finditer(r"\S+", text))


def test_is_too_long():
    assert is_too_long("x" * 281, X) and not is_too_long("x" * 280, X)
    assert is_too_long("x" * 126, ALT)
    assert not is_too_long("x" * 10_000, get_platform("x").__class__("free", None, 0, False))


# ----------------------------------------------------------------------------------------- contradictions


@pytest.mark.parametrize(("post", "ocr", "kind", "value", "says"), [
    ("Now 30% off everything!", "SUMMER SALE 50% OFF", "price/percent", "30%", "50%"),
    ("Only $19.99 this week", "NOW $24.99", "price/percent", "$19.99", "$24.99"),
    ("Just €5 a ride", "RIDES 7€", "price/percent", "€5", "7€"),
    ("Sale ends 12 June!", "ENDS 14 JUNE", "date", "12 June", "14 JUNE"),
    ("Sale ends June 12!", "ENDS 2024-06-14", "date", "June 12", "2024-06-14"),
    ("Doors open at 7pm", "DOORS 8 PM", "time", "7pm", "8 PM"),
])
def test_contradiction_flags(post, ocr, kind, value, says):
    assert contradictions(post, ocr) == [f"{kind} '{value}' not in the text of the media (which says {says})"]


@pytest.mark.parametrize(("post", "ocr"), [
    ("Now 50% off everything!", "SUMMER SALE 50% OFF"),
    ("Now 50 percent off!", "50 % OFF"),
    ("Only $20 this week", "NOW $20.00"),
    ("Only 20 USD", "$20"),
    ("Just €5,50", "5.50 €"),
    ("Sale ends June 14th!", "ENDS 14 JUNE"),
    ("Sale ends 14 June 2024", "ENDS 2024-06-14"),
    ("Sale ends 14/06/2024", "ENDS JUNE 14"),
    ("Open at 8pm", "OPEN 20:00"),
    ("Only $19.99 this week", "SUMMER SALE 50% OFF"),  # a price, and the media shows only a percent
    ("Sale ends 12 June", "BIG SALE"),  # the media has no date at all
    ("Now 30% off", None),
    ("Now 30% off", ""),
    ("A great day for a ride", "50% OFF 12 JUNE $5"),
])
def test_no_false_positives(post, ocr):
    assert contradictions(post, ocr) == []


def test_values_from_other_sources_are_not_contradictions():
    assert contradictions("Use code RIDE for 20% off", "50% OFF", also=["20% off with code RIDE"]) == []
    assert contradictions("Use code RIDE for 20% off", "50% OFF", also=[None, "no numbers"]) != []


def test_several_flags_each_once():
    flags = contradictions("30% off, then 30% off again, and $5 until 1 May", "50% OFF $7 ENDS 2 MAY")
    assert len(flags) == 3 and all("not in the text of the media" in f for f in flags)


# ------------------------------------------------------------------------------------------------ together


def test_finish_post_runs_every_step():
    raw = ('Sure! Here\'s a post:\n"Summer is here 🌞 Ride with @ acme and save 30% on every bike this weekend only, '
           'while stocks last, at all our stores downtown, uptown and everywhere in between, plus free helmets for '
           'the first hundred riders through the door on Saturday morning. Come early, bring friends and enjoy! '
           '#Summer #bikes #summer #deals #fun"<|im_end|>')
    ctx = {"hashtags": 2, "emoji": False, "handle": "@acme", "ocr_text": "50% OFF"}
    post = finish_post(raw, X, ctx)
    assert isinstance(post, Post) and post.chars == len(post.text) <= 280
    assert "@acme" in post.text and "🌞" not in post.text and "<|" not in post.text
    assert post.flags == ["price/percent '30%' not in the text of the media (which says 50%)"]
    assert len(clean_text(raw)) > 280 and post.trimmed
    assert post.to_dict() == {"text": post.text, "chars": post.chars, "flags": post.flags, "trimmed": post.trimmed}


def test_finish_post_flags_empty_and_respects_call_to_action():
    assert finish_post("<|im_end|>", X, {}).flags == ["empty"]
    assert finish_post('""', X, {}).to_dict() == {"text": "", "chars": 0, "flags": ["empty"], "trimmed": False}
    ctx = {"ocr_text": "50% OFF", "call_to_action": "Use code RIDE for 20% off"}
    assert finish_post("Use code RIDE for 20% off today!", X, ctx).flags == []
    ctx = {"ocr_text": "NOW $24.99", "metadata": {"price": "$19.99"}}
    assert finish_post("Now only $19.99!", X, ctx).flags == []  # the item's own data says so


def test_finish_post_trims_to_the_platform():
    raw = " ".join(["word"] * 100) + "."
    post = finish_post(raw, X, {})
    assert post.trimmed and len(post.text) <= 280 and post.text.endswith("…")
    post = finish_post("Short post.", X, {})
    assert not post.trimmed and post.text == "Short post."
