"""Per-platform rules: how long a post may be, how many hashtags, whether emoji fit, and the template.

The presets are data; :func:`get_platform` looks one up by the ``--platform`` value. Lengths are counted in
characters (code points) by :func:`captionkit.postprocess.is_too_long`; X weighs URLs as 23 and most emoji as 2,
which we do not model, so leave a little room when posting real links.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any

from captionkit.errors import ConfigError


@dataclass(frozen=True)
class PlatformRules:
    """What a post for one platform must look like.

    ``hashtags`` and ``emoji`` are the defaults that ``--hashtags`` / ``--emoji`` override; ``allow_hashtags`` and
    ``allow_emoji`` are hard rules that no flag overrides (alt text never carries either).
    """

    name: str
    max_chars: int | None  # None: no limit
    hashtags: int  # default number of hashtags (the most a post keeps)
    emoji: bool  # emoji on by default
    allow_hashtags: bool = True
    allow_emoji: bool = True
    style: str = ""  # one line for the prompt, e.g. "punchy, conversational"
    template: str = ""  # built-in template file in captionkit/prompts/templates/

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PLATFORMS: dict[str, PlatformRules] = {
    rules.name: rules
    for rules in (
        PlatformRules(
            name="x", max_chars=280, hashtags=2, emoji=True,  # X's own advice: one or two hashtags
            style="punchy and conversational, one idea, the hook first",
            template="x.j2",
        ),
        PlatformRules(
            name="instagram", max_chars=2200, hashtags=5, emoji=True,  # 2,200 is the hard limit; 30 tags at most
            # the feed shows about 125 characters before "more", so the first line has to carry the post
            style="warm and visual, a strong first line, short paragraphs",
            template="instagram.j2",
        ),
        PlatformRules(
            name="linkedin", max_chars=3000, hashtags=3, emoji=False,
            # the feed folds after about 210 characters: the opening sentence decides whether anyone reads on
            style="professional and insightful, a clear opening sentence, short paragraphs, no slang",
            template="linkedin.j2",
        ),
        PlatformRules(
            # Facebook accepts 63,206 characters, but the feed folds posts after about 480 behind "See more"
            # and short posts get the most engagement, so 500 is the practical limit.
            name="facebook", max_chars=500, hashtags=2, emoji=True,  # 0-2 hashtags; more reads as spam there
            style="friendly and conversational, practical, easy to skim",
            template="facebook.j2",
        ),
        PlatformRules(
            # Screen readers (JAWS among them) have long cut alt text at about 125 characters; WebAIM and most
            # accessibility guides keep to that. Hashtags and emoji are read out symbol by symbol: never.
            name="alt-text", max_chars=125, hashtags=0, emoji=False, allow_hashtags=False, allow_emoji=False,
            style='plain, literal description of what is visible; no "image of", no opinions',
            template="alt-text.j2",
        ),
        PlatformRules(
            # The Adobe content-simulation task (seed 000): brand tweets, with links and mentions written as the
            # placeholders <hyperlink> and <mention>, as in the dataset. Tweets, hence 280.
            name="adobe", max_chars=280, hashtags=2, emoji=True,
            style="the brand's own tweet voice",
            template="adobe.j2",
        ),
    )
}

_ALIASES = {"twitter": "x", "tweet": "x", "ig": "instagram", "fb": "facebook", "alt": "alt-text",
            "alttext": "alt-text", "alt_text": "alt-text"}


def available_platforms() -> list[str]:
    return sorted(PLATFORMS)


def get_platform(name: str) -> PlatformRules:
    """The preset for ``name`` (case-insensitive; ``twitter`` is ``x``); an unknown name names ``--platform``."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in PLATFORMS:
        return PLATFORMS[key]
    close = difflib.get_close_matches(key, [*PLATFORMS, *_ALIASES], n=1)
    hint = f" (did you mean {_ALIASES.get(close[0], close[0])}?)" if close else ""
    raise ConfigError(f"--platform: unknown platform {name!r}{hint}; presets: {', '.join(available_platforms())}")
