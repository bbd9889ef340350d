"""Platform presets, the prompt context, the trimming rule, and templates (built-in and the user's)."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from captionkit.errors import ConfigError
from captionkit.models.settings import WriteSettings
from captionkit.prompts import (
    PLATFORMS,
    TRIM_LIMITS,
    available_platforms,
    build_context,
    compose_prompt,
    get_platform,
    render_prompt,
    trim_text,
)
from captionkit.records import ROW_ERROR_KEY, Item, MediaRef

PRESETS = ["x", "instagram", "linkedin", "facebook", "alt-text", "adobe"]
REFERENCE = "THE REFERENCE TWEET, NEVER IN A PROMPT"


@pytest.fixture
def item() -> Item:
    return Item(
        id="t1",
        metadata={"date": "2020-12-12 00:47:00", "likes": 1234, "username": "acme", "company": "Acme",
                  "inferred company": "Acme", "campaign": "summer-24", ROW_ERROR_KEY: None, "location": "Austin"},
        media=[MediaRef(kind="photo", url="https://pbs.twimg.com/media/A.jpg")],
        reference=REFERENCE,
    )


DESCRIBED = {"description": "a red bicycle leaning on a white wall", "ocr_text": "50% OFF",
             "transcript": "come ride with us", "language": "en"}
EXAMPLES = [{"text": "Ride into summer with us! #bikes", "description": "a bike on a beach", "likes": 20},
            {"text": "New helmets are in. <hyperlink>", "likes": "7"}]


def render(item: Item, described: dict, examples=(), **kw) -> tuple[dict, object]:
    s = WriteSettings(**kw)
    ctx = build_context(item, described, s, examples)
    return ctx, render_prompt(ctx, s)


# --------------------------------------------------------------------------------------------- platforms


def test_presets_and_limits():
    assert available_platforms() == sorted(PRESETS)
    limits = {name: PLATFORMS[name].max_chars for name in PRESETS}
    assert limits == {"x": 280, "instagram": 2200, "linkedin": 3000, "facebook": 500, "alt-text": 125, "adobe": 280}
    assert 1 <= PLATFORMS["x"].hashtags <= 2
    assert PLATFORMS["instagram"].hashtags == 5 and PLATFORMS["instagram"].emoji
    assert PLATFORMS["linkedin"].hashtags == 3 and not PLATFORMS["linkedin"].emoji
    assert 0 <= PLATFORMS["facebook"].hashtags <= 2
    alt = PLATFORMS["alt-text"]
    assert (alt.hashtags, alt.emoji, alt.allow_hashtags, alt.allow_emoji) == (0, False, False, False)
    for name, rules in PLATFORMS.items():
        assert rules.name == name and rules.style and rules.template == f"{name}.j2"
        assert rules.to_dict()["max_chars"] == rules.max_chars


def test_get_platform_aliases_and_unknown():
    assert get_platform("Twitter") is PLATFORMS["x"]
    assert get_platform("ALT-TEXT") is PLATFORMS["alt-text"]
    with pytest.raises(ConfigError) as err:
        get_platform("tiktok")
    assert "--platform" in str(err.value) and "tiktok" in str(err.value)
    for name in PRESETS:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="did you mean instagram"):
        get_platform("instagarm")


# ----------------------------------------------------------------------------------------------- context


def test_context_fields(item):
    ctx = build_context(item, DESCRIBED, WriteSettings(platform="x", call_to_action=" Shop now "), EXAMPLES)
    assert ctx["description"] == DESCRIBED["description"] and ctx["ocr_text"] == "50% OFF"
    assert ctx["transcript"] == "come ride with us" and ctx["media_language"] == "en"
    assert (ctx["brand"], ctx["handle"], ctx["username"]) == ("Acme", "@acme", "acme")
    assert (ctx["date"], ctx["likes"], ctx["expected_likes"]) == ("2020-12-12 00:47:00", 1234, 1234)
    assert ctx["platform"]["name"] == "x" and ctx["max_chars"] == 280
    assert (ctx["tone"], ctx["language"], ctx["language_name"]) == ("friendly", "en", "English")
    assert (ctx["hashtags"], ctx["emoji"], ctx["call_to_action"]) == (2, True, "Shop now")
    assert ctx["media_kind"] == "image" and ctx["media_count"] == 1
    assert [e["text"] for e in ctx["examples"]] == [e["text"] for e in EXAMPLES]
    assert ctx["examples"][1]["description"] is None and ctx["examples"][1]["likes"] == 7
    # every column: under metadata and at top level, with an identifier alias for "inferred company"
    assert ctx["metadata"]["campaign"] == ctx["campaign"] == "summer-24"
    assert ctx["metadata"]["inferred company"] == ctx["inferred_company"] == "Acme"
    assert ctx["location"] == "Austin"
    assert ROW_ERROR_KEY not in ctx["metadata"]
    assert REFERENCE not in repr(ctx)


def test_context_settings_override_metadata(item):
    ctx = build_context(item, {}, WriteSettings(brand="Acme Bikes", handle="@@AcmeBikes ", hashtags=4, emoji=False))
    assert (ctx["brand"], ctx["handle"], ctx["username"]) == ("Acme Bikes", "@AcmeBikes", "AcmeBikes")
    assert (ctx["hashtags"], ctx["emoji"]) == (4, False)
    assert ctx["description"] is ctx["ocr_text"] is ctx["transcript"] is None


def test_context_platform_defaults_and_hard_rules(item):
    assert build_context(item, {}, WriteSettings(platform="linkedin"))["emoji"] is False
    assert build_context(item, {}, WriteSettings(platform="linkedin", emoji=True))["emoji"] is True
    assert build_context(item, {}, WriteSettings(platform="instagram"))["hashtags"] == 5
    alt = build_context(item, {}, WriteSettings(platform="alt-text", hashtags=5, emoji=True))
    assert (alt["hashtags"], alt["emoji"]) == (0, False)  # no flag turns them on for alt text
    assert build_context(item, {}, WriteSettings(hashtags=0))["hashtags"] == 0


def test_metadata_never_shadows_context_keys():
    item = Item(id="c", metadata={"description": "column text", "hashtags": "#x", "likes": "1,200"})
    ctx = build_context(item, {"description": "what the media shows"}, WriteSettings())
    assert ctx["description"] == "what the media shows" and ctx["metadata"]["description"] == "column text"
    assert ctx["hashtags"] == 2 and ctx["likes"] == 1200


def test_examples_from_retrieval_carry_their_metadata(item):
    ex = {"id": "e1", "text": "Old post", "description": "a shop", "metadata": {"likes": 55, "date": "2020-01-02"}}
    got = build_context(item, {}, WriteSettings(), [ex])["examples"][0]
    assert (got["text"], got["likes"], got["date"], got["username"]) == ("Old post", 55, "2020-01-02", None)
    _, prompt = render(item, {"description": "a bike"}, [ex], platform="adobe")
    assert "Caption: a shop, Expected Likes: 55, Username: acme, Company Name: Acme, Date Time: 2020-01-02" in prompt.user


def test_examples_capped_by_k(item):
    many = [{"text": f"post {i}"} for i in range(10)]
    assert len(build_context(item, {}, WriteSettings(k=3), many)["examples"]) == 3
    assert build_context(item, {}, WriteSettings(k=0), many)["examples"] == []
    assert build_context(item, {}, WriteSettings(), [{"text": "  "}, {"content": "from content"}])["examples"][0][
        "text"] == "from content"


# ---------------------------------------------------------------------------------------------- trimming


def test_trim_rule_examples():
    assert trim_text("  short   text \n ok ", 600) == "short text ok"
    assert trim_text(None, 10) is None and trim_text("   ", 10) is None
    assert trim_text("alpha beta gamma delta", 13) == "alpha beta…"
    assert trim_text("alpha beta, gamma", 13) == "alpha beta…"  # the comma before the cut goes too
    assert trim_text("x" * 50, 10) == "x" * 9 + "…"  # one giant word: a hard cut is all there is


@given(st.text(alphabet="ab cd\n.,", max_size=400), st.integers(min_value=5, max_value=120))
@settings(max_examples=200, deadline=None)
def test_trim_rule_property(text, limit):
    out = trim_text(text, limit)
    flat = " ".join(text.split())
    if not flat:
        assert out is None
        return
    assert len(out) <= limit
    if len(flat) <= limit:
        assert out == flat
    else:
        assert out.endswith("…")
        body = out[:-1]
        assert flat.startswith(body)
        if " " in flat[: limit - 1]:  # a word boundary was available: no partial word
            rest = flat[len(body):]  # only dropped punctuation before the next space: no partial word
            assert re.match(r"[ ,;:.\-–—…]*(?: |$)", rest), (body, rest)


def test_long_inputs_are_trimmed(item):
    long = "word " * 1000
    described = {"description": long, "ocr_text": long, "transcript": long}
    ctx = build_context(item, described, WriteSettings(), [{"text": long, "description": long}])
    for key in ("description", "ocr_text", "transcript"):
        assert len(ctx[key]) <= TRIM_LIMITS[key] and ctx[key].endswith("…")
    assert len(ctx["examples"][0]["text"]) <= 250 and len(ctx["examples"][0]["description"]) <= 250
    prompt = render_prompt(ctx, WriteSettings())
    assert len(prompt.user) < 3000


# --------------------------------------------------------------------------------------- built-in presets


@pytest.mark.parametrize("platform", PRESETS)
def test_preset_renders_full_context(item, platform):
    ctx, prompt = render(item, DESCRIBED, EXAMPLES, platform=platform, call_to_action="Shop now")
    assert prompt.system and prompt.user and prompt.context is ctx
    text = prompt.system + "\n" + prompt.user
    assert "None" not in text and "{{" not in text and "{%" not in text
    assert REFERENCE not in text
    assert DESCRIBED["description"] in prompt.user and "50% OFF" in prompt.user
    assert str(PLATFORMS[platform].max_chars) in text
    assert "English" in text or platform == "adobe"
    if platform != "alt-text":
        assert "Acme" in text and "1234" in prompt.user and "2020-12-12 00:47:00" in prompt.user
        assert "Ride into summer with us! #bikes" in prompt.user and "Shop now" in text
    if platform in ("x", "instagram", "linkedin", "facebook"):
        assert 'Text visible in the media: "50% OFF"' in prompt.user
        assert "Past posts by this brand" in prompt.user and "@acme" in prompt.user
        assert "Expected likes: 1234" in prompt.user and "friendly" in prompt.system
        assert "hashtag" in prompt.system


@pytest.mark.parametrize("platform", PRESETS)
def test_preset_renders_minimal_context(platform):
    _, prompt = render(Item(id="m"), {}, platform=platform)
    text = (prompt.system or "") + "\n" + prompt.user
    assert prompt.user and "None" not in text
    assert "Text visible" not in text and "Past posts" not in text and "What is said" not in text


@pytest.mark.parametrize("platform", ["x", "instagram", "linkedin", "facebook"])
def test_preset_hashtag_and_emoji_wording(item, platform):
    _, none = render(item, DESCRIBED, platform=platform, hashtags=0, emoji=False)
    assert "no hashtags" in none.system and "no emoji" in none.system
    _, some = render(item, DESCRIBED, platform=platform, hashtags=3, emoji=True)
    assert "3 " in some.system and "no hashtags" not in some.system and "no emoji" not in some.system


def test_alt_text_prompt(item):
    _, prompt = render(item, DESCRIBED, EXAMPLES, platform="alt-text")
    assert "125" in prompt.system and "image of" in prompt.system.lower() and "No hashtags, no emoji" in prompt.system
    assert "Past posts" not in prompt.user  # alt text describes; it does not imitate the brand


def test_adobe_format_matches_the_seed(item):
    _, prompt = render(item, DESCRIBED, EXAMPLES, platform="adobe")
    user = prompt.user
    assert "### Instruction:\nGenerate the tweet content given the expected likes and the other information." in user
    line = ("Caption: a red bicycle leaning on a white wall, Expected Likes: 1234, Username: acme, "
            "Company Name: Acme, Date Time: 2020-12-12 00:47:00")
    assert line in user
    fields = ["Caption:", "Expected Likes:", "Username:", "Company Name:", "Date Time:", "Location:",
              "Text In Media:", "Transcript:"]
    last = user.rfind("### Input:")
    positions = [user.index(f, last) for f in fields]
    assert positions == sorted(positions)  # the seed's order, extras after it
    assert user.endswith("### Response:")
    assert "<hyperlink>" in prompt.system and "<mention>" in prompt.system
    # retrieved examples come first, in the same format, each with its response
    assert "Caption: a bike on a beach, Expected Likes: 20" in user
    assert user.index("Ride into summer with us!") < last
    assert user.count("### Response:") == 3


def test_adobe_minimal_keeps_every_seed_field():
    _, prompt = render(Item(id="m", metadata={"likes": 0}), {"description": "a cat"}, platform="adobe")
    assert "Caption: a cat, Expected Likes: 0, Username: , Company Name: , Date Time:" in prompt.user


def test_compose_prompt_is_build_then_render(item):
    s = WriteSettings(platform="facebook")
    assert compose_prompt(item, DESCRIBED, s) == render_prompt(build_context(item, DESCRIBED, s), s)


# ---------------------------------------------------------------------------------------- user templates


def user_template(tmp_path, text: str, name: str = "mine.j2") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_any_metadata_column_in_a_user_template(tmp_path, item):
    path = user_template(tmp_path, (
        "{% block system %}You write for {{ brand }}.{% endblock %}\n"
        "{% block user %}\n{{ metadata.campaign }} | {{ campaign }} | {{ metadata['inferred company'] }}"
        " | {{ inferred_company }} | {{ location }}\n{% endblock %}\n"
    ))
    _, prompt = render(item, DESCRIBED, template=path)
    assert prompt.system == "You write for Acme."
    assert prompt.user == "summer-24 | summer-24 | Acme | Acme | Austin"


def test_user_template_without_blocks_is_the_user_message(tmp_path, item):
    path = user_template(tmp_path, "Describe: {{ description }}\n{% if campaign is defined %}({{ campaign }}){% endif %}\n")
    _, prompt = render(item, DESCRIBED, template=path)
    assert prompt.system is None and prompt.user == f"Describe: {DESCRIBED['description']}\n(summer-24)"
    assert prompt.messages() == [{"role": "user", "content": prompt.user}]


def test_user_template_can_include_builtin_parts(tmp_path, item):
    path = user_template(tmp_path, "{% block user %}Post for {{ brand }}.\n{% include '_facts.j2' %}{% endblock %}")
    _, prompt = render(item, DESCRIBED, template=path)
    assert 'Text visible in the media: "50% OFF"' in prompt.user and prompt.system is None


@pytest.mark.parametrize(("expr", "field"), [("{{ campaign2 }}", "campaign2"),
                                             ("{{ metadata.campaign2 }}", "metadata.campaign2")])
def test_missing_field_names_field_file_and_line(tmp_path, item, expr, field):
    path = user_template(tmp_path, f"{{% block system %}}ok{{% endblock %}}\n{{% block user %}}\nline two\n{expr}\n{{% endblock %}}\n")
    with pytest.raises(ConfigError) as err:
        render(item, DESCRIBED, template=path)
    msg = str(err.value)
    assert f"'{field}'" in msg and path in msg and "line 4" in msg and "--template" in msg


def test_missing_field_in_a_template_without_blocks(tmp_path, item):
    path = user_template(tmp_path, "a\nb\nc {{ nope }}\n")
    with pytest.raises(ConfigError, match=r"line 3: field 'nope'"):
        render(item, DESCRIBED, template=path)


def test_missing_field_for_this_item_only(tmp_path, item):
    path = user_template(tmp_path, "{{ campaign }}")
    render(item, DESCRIBED, template=path)  # this item has the column ...
    with pytest.raises(ConfigError, match="field 'campaign' is not defined for item 'other'"):
        render(Item(id="other"), DESCRIBED, template=path)  # ... this one does not


def test_syntax_error_names_file_and_line(tmp_path, item):
    path = user_template(tmp_path, "{% block user %}\nfine\n{{ description }\n{% endblock %}\n")
    with pytest.raises(ConfigError) as err:
        render(item, DESCRIBED, template=path)
    msg = str(err.value)
    assert path in msg and "line 3" in msg and "syntax error" in msg


def test_bad_template_path(tmp_path, item):
    missing = str(tmp_path / "nope.j2")
    with pytest.raises(ConfigError, match="--template") as err:
        render(item, DESCRIBED, template=missing)
    assert missing in str(err.value) and "does not exist" in str(err.value)
    with pytest.raises(ConfigError, match="folder"):
        render(item, DESCRIBED, template=str(tmp_path))


def test_syntax_error_in_an_included_file(tmp_path, item):
    user_template(tmp_path, "ok\n{% if %}\n", name="part.j2")
    path = user_template(tmp_path, "{% block user %}\n{% include 'part.j2' %}\n{% endblock %}")
    with pytest.raises(ConfigError, match=r"part\.j2, line 2: syntax error"):
        render(item, DESCRIBED, template=path)


def test_template_may_name_a_builtin(item):
    _, prompt = render(item, DESCRIBED, platform="x", template="linkedin")
    assert "LinkedIn" in prompt.user and prompt.context["max_chars"] == 280  # x's rules, linkedin's wording
    with pytest.raises(ConfigError, match=r"built-in templates: adobe\.j2, alt-text\.j2"):
        render(item, DESCRIBED, template="tiktok")


def test_system_block_without_user_block(tmp_path, item):
    path = user_template(tmp_path, "{% block system %}only{% endblock %}")
    with pytest.raises(ConfigError, match=re.escape("no {% block user %}")):
        render(item, DESCRIBED, template=path)


def test_edited_template_is_reloaded(tmp_path, item):
    path = user_template(tmp_path, "first {{ brand }}")
    assert render(item, {}, template=path)[1].user == "first Acme"
    user_template(tmp_path, "second {{ brand }}")
    st_ = os.stat(path)
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10_000_000))
    assert render(item, {}, template=path)[1].user == "second Acme"


def test_autoescape_is_off(tmp_path):
    path = user_template(tmp_path, "{{ description }}")
    _, prompt = render(Item(id="e"), {"description": "Tom & Jerry <mention> \"quoted\""}, template=path)
    assert prompt.user == "Tom & Jerry <mention> \"quoted\""
