"""Prompts for the writer: platform presets, the context built from an item, and Jinja2 templates.

``platforms`` holds the per-platform rules (length, hashtags, emoji, style); ``compose`` turns an item, what the
describe stage found and the write settings into a context dict and renders it through a template into a
:class:`~captionkit.writers.base.Prompt`. Jinja2 is imported only when a template is rendered.
"""

from captionkit.prompts.compose import TRIM_LIMITS, build_context, compose_prompt, render_prompt, trim_text
from captionkit.prompts.platforms import PLATFORMS, PlatformRules, available_platforms, get_platform

__all__ = [
    "PLATFORMS",
    "TRIM_LIMITS",
    "PlatformRules",
    "available_platforms",
    "build_context",
    "compose_prompt",
    "get_platform",
    "render_prompt",
    "trim_text",
]
