"""From an item to a writer prompt: :func:`build_context` gathers the facts, :func:`render_prompt` renders them.

The context
    One flat dict per item. Always present (``None`` when unknown, so templates can test them):
    ``id, description, ocr_text, transcript, media_language, media_kind, media_count, brand, handle, username,
    date, likes, expected_likes, platform, max_chars, tone, language, language_name, hashtags, emoji,
    call_to_action, examples, metadata``. Every metadata column is there too, as ``metadata.NAME`` (or
    ``metadata["a name"]``) and at top level as ``NAME`` unless that name is one of the keys above. A column
    whose name is not an identifier (``inferred company``) also gets an alias (``inferred_company``). The item's
    reference text is never in the context: it is the answer.

Trimming rule (prompts stay bounded whatever the media held)
    Whitespace runs collapse to one space, then a text longer than its limit is cut to at most ``limit``
    characters: at the last space before ``limit - 1`` characters (never inside a word; a single word longer
    than that is cut hard), trailing punctuation dropped, and ``…`` appended. Limits (:data:`TRIM_LIMITS`):
    description 600, ocr_text 300, transcript 800, each example's text 250 (the seed's in-context recipe cut
    its inputs at 250) and its description 250.

Templates
    One Jinja2 file (StrictUndefined, no autoescaping) with two blocks, ``{% block system %}`` and
    ``{% block user %}``; each is rendered on its own and stripped. A user file (``--template``) without blocks
    is the whole user message, with no system message. Built-in templates live in ``prompts/templates/``; a
    user template may ``{% include %}`` them (e.g. ``_facts.j2``). Blocks are rendered alone, so put
    ``{% set %}`` and ``{% macro %}`` inside the block that uses them. A field the item lacks is an error that
    names the field, file and line; use ``{% if NAME is defined %}`` for optional columns.
"""

from __future__ import annotations

import datetime as _dt
import re
import traceback
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, MissingExtraError
from captionkit.models.settings import WriteSettings
from captionkit.prompts.platforms import PlatformRules, get_platform
from captionkit.records import Item
from captionkit.writers.base import Prompt

TRIM_LIMITS: dict[str, int] = {"description": 600, "ocr_text": 300, "transcript": 800, "example": 250}
ELLIPSIS = "…"

# Keys build_context always sets; metadata columns of the same name stay reachable as metadata.NAME.
RESERVED_KEYS: tuple[str, ...] = (
    "id", "description", "ocr_text", "transcript", "media_language", "media_kind", "media_count", "brand",
    "handle", "username", "date", "likes", "expected_likes", "platform", "max_chars", "tone", "language",
    "language_name", "hashtags", "emoji", "call_to_action", "examples", "metadata",
)

_LANGUAGES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "pl": "Polish",
    "cs": "Czech", "tr": "Turkish", "ru": "Russian", "uk": "Ukrainian", "el": "Greek", "ar": "Arabic",
    "he": "Hebrew", "hi": "Hindi", "bn": "Bengali", "ja": "Japanese", "ko": "Korean", "zh": "Chinese",
    "id": "Indonesian", "vi": "Vietnamese", "th": "Thai",
}
_TRAILING_PUNCT = " \t\n,;:-–—.…"


# ---------------------------------------------------------------------------------------------- trimming


def trim_text(text: Any, limit: int) -> str | None:
    """``text`` with whitespace collapsed, cut to at most ``limit`` characters by the module's trimming rule."""
    if text is None:
        return None
    text = " ".join(str(text).split())
    if not text:
        return None
    if len(text) <= limit:
        return text
    head = text[: limit - 1]  # room for the ellipsis
    if not text[limit - 1].isspace() and " " in head:
        head = head[: head.rfind(" ")]  # the cut fell inside a word: back to the last whole word
    head = head.rstrip(_TRAILING_PUNCT) or head.rstrip() or text[: limit - 1]
    return head + ELLIPSIS


# ----------------------------------------------------------------------------------------------- context


def _slug(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip()).strip("_").lower()


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value.strip() if isinstance(value, str) else value
    return None


def _likes(value: Any) -> int | float | str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        digits = value.strip().replace(",", "").replace("_", "")
        return int(digits) if digits.isdigit() else (value.strip() or None)
    return value


def _date(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes" if not value.second else "seconds")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return value


def _example(raw: Any) -> dict[str, Any] | None:
    """One few-shot example as ``{text, description, likes, date, username, company, ...}`` or None.

    Accepts plain dicts and :class:`captionkit.retrieval.Example` as a dict (``likes`` etc. under ``metadata``);
    missing keys are None so that templates can test them.
    """
    data = dict(raw) if isinstance(raw, dict) else {"text": raw}
    text = trim_text(_first(data.get("text"), data.get("content"), data.get("reference")), TRIM_LIMITS["example"])
    if not text:
        return None
    data.update(text=text, description=trim_text(data.get("description"), TRIM_LIMITS["example"]))
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    for key in ("likes", "date", "username", "company"):  # retrieval's Example keeps these in its metadata
        if data.get(key) is None:
            data[key] = _date(meta.get(key))
    data["likes"] = _likes(data["likes"])
    return data


def build_context(item: Item, described: dict[str, Any] | None, settings: WriteSettings,
                  examples: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Everything a template may use for ``item`` (see the module docstring for the keys and trimming).

    ``described`` is the describe stage's output: ``description, ocr_text, transcript, language`` (any may be
    missing or None). ``examples`` are past posts (``{text, description?, ...}``); at most ``settings.k`` are kept.
    """
    rules = get_platform(settings.platform)
    described = described or {}
    meta = {k: _date(v) for k, v in item.metadata.items() if not str(k).startswith("_")}  # _row_error & co.
    for key in list(meta):
        alias = _slug(str(key))
        if alias and alias != key and alias.isidentifier():
            meta.setdefault(alias, meta[key])

    username = _first(settings.handle, meta.get("username"), meta.get("handle"))
    if username is not None:
        username = str(username).strip().lstrip("@").strip() or None
    likes = _likes(meta.get("likes"))
    hashtags = (settings.hashtags if settings.hashtags is not None else rules.hashtags) if rules.allow_hashtags else 0
    emoji = (settings.emoji if settings.emoji is not None else rules.emoji) and rules.allow_emoji
    kinds = [m.kind for m in item.media]

    context: dict[str, Any] = {
        "id": item.id,
        "description": trim_text(described.get("description"), TRIM_LIMITS["description"]),
        "ocr_text": trim_text(described.get("ocr_text"), TRIM_LIMITS["ocr_text"]),
        "transcript": trim_text(described.get("transcript"), TRIM_LIMITS["transcript"]),
        "media_language": described.get("language"),
        "media_kind": ("image" if kinds[0] == "photo" else kinds[0]) if kinds else "image",
        "media_count": len(kinds),
        "brand": _first(settings.brand, meta.get("company"), meta.get("brand")),
        "handle": f"@{username}" if username else None,
        "username": username,
        "date": _first(meta.get("date")),
        "likes": likes,
        "expected_likes": likes,
        "platform": rules.to_dict(),
        "max_chars": rules.max_chars,
        "tone": settings.tone,
        "language": settings.language,
        "language_name": _LANGUAGES.get(str(settings.language).lower().split("-")[0], settings.language),
        "hashtags": int(hashtags),
        "emoji": bool(emoji),
        "call_to_action": _first(settings.call_to_action),
        "examples": [ex for ex in map(_example, list(examples)[: settings.k]) if ex],
        "metadata": meta,
    }
    for key, value in meta.items():
        context.setdefault(key, value)
    return context


# --------------------------------------------------------------------------------------------- templates

_BUILTIN_DIR = "templates"


def _builtin_path(name: str) -> Path | None:
    ref = resources.files("captionkit.prompts").joinpath(_BUILTIN_DIR, name)
    return Path(str(ref)) if ref.is_file() else None


def builtin_templates() -> list[str]:
    """The template files shipped in ``captionkit/prompts/templates`` (``_``-prefixed ones are parts)."""
    folder = resources.files("captionkit.prompts").joinpath(_BUILTIN_DIR)
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".j2") and not p.name.startswith("_"))


def _jinja() -> Any:
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - jinja2 is a core dependency
        raise MissingExtraError("writing posts needs jinja2: pip install 'jinja2>=3.1'") from exc
    return jinja2


@lru_cache(maxsize=16)
def _environment(user_dir: str | None) -> Any:
    """A Jinja2 environment whose loader looks in ``user_dir`` (a --template file's folder) then the built-ins."""
    jinja2 = _jinja()

    def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
        candidates = [Path(user_dir) / name] if user_dir else []
        builtin = _builtin_path(name) if "/" not in name and "\\" not in name else None
        candidates += [builtin] if builtin else []
        for path in candidates:
            if path.is_file():
                mtime = path.stat().st_mtime_ns
                return path.read_text(encoding="utf-8"), str(path), lambda p=path, m=mtime: p.stat().st_mtime_ns == m
        return None

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load), undefined=jinja2.StrictUndefined, autoescape=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, auto_reload=True,
    )


def _template_ref(settings: WriteSettings, context: dict[str, Any]) -> tuple[str | None, str, str]:
    """``(user_dir, name, shown)``: where the template is, and how error messages call it."""
    if settings.template:
        path = Path(settings.template).expanduser()
        if not path.is_file():
            for builtin in (settings.template, f"{settings.template}.j2"):  # --template linkedin: a built-in
                if "/" not in builtin and "\\" not in builtin and _builtin_path(builtin):
                    return None, builtin, f"built-in template {builtin}"
            what = "is a folder, not a template file" if path.is_dir() else "does not exist"
            raise ConfigError(f"--template {settings.template}: {what} (built-in templates: "
                              f"{', '.join(builtin_templates())})")
        return str(path.resolve().parent), path.name, str(settings.template)
    platform = context.get("platform")
    name = platform["template"] if isinstance(platform, dict) and platform.get("template") else None
    name = name or get_platform(settings.platform).template
    return None, name, f"built-in template {name}"


def _shown(filename: str | None, fallback: str) -> str:
    if not filename:
        return fallback
    builtin = _builtin_path(Path(filename).name)
    if builtin is not None and Path(filename) == builtin:
        return f"built-in template {builtin.name}"
    return filename


def _template_line(exc: BaseException) -> tuple[str | None, int | None]:
    """The innermost template frame of ``exc``'s traceback (Jinja2 rewrites frames to template lines)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and not frame.filename.endswith(".py") and frame.lineno:
            return frame.filename, frame.lineno
    return None, None


def _source_line(filename: str | None, lineno: int | None) -> str:
    try:
        line = Path(filename).read_text(encoding="utf-8").splitlines()[lineno - 1].strip()  # type: ignore[arg-type,operator]
    except (OSError, IndexError, TypeError, ValueError):
        return ""
    return f": {line[:120]}" if line else ""


def _missing_name(message: str) -> str:
    for pattern in (r"'([^']+)' is undefined", r"has no attribute '([^']+)'", r"has no element '?([^']+?)'?$"):
        if found := re.search(pattern, message):
            return found.group(1)
    return message


def _render_error(exc: BaseException, env: Any, shown: str, context: dict[str, Any]) -> ConfigError:
    jinja2 = _jinja()
    try:
        env.handle_exception()  # re-raises exc with its traceback rewritten to template file and line
    except Exception as rewritten:  # the same error, now with template frames
        exc = rewritten
    filename, lineno = _template_line(exc)
    if isinstance(exc, jinja2.TemplateSyntaxError):  # in an {% include %}d file, found while rendering
        filename, lineno = exc.filename or filename, exc.lineno
    where = f"{_shown(filename, shown)}, line {lineno}" if lineno else _shown(filename, shown)
    source = _source_line(filename, lineno)
    if isinstance(exc, jinja2.UndefinedError):
        name = _missing_name(str(exc))
        if "has no attribute" in str(exc) and (dotted := re.search(rf"([\w.]+)\.{re.escape(name)}\b", source)):
            name = f"{dotted.group(1)}.{name}"  # metadata.campaign rather than campaign
        fields = sorted(k for k in context if k.isidentifier())
        return ConfigError(
            f"--template {where}: field {name!r} is not defined for item {context.get('id')!r}{source} "
            f"(fields: {', '.join(fields)}; test optional ones with `is defined`)"
        )
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return ConfigError(f"--template {where}: syntax error: {exc.message}{source}")
    return ConfigError(f"--template {where}: {type(exc).__name__}: {exc}{source}")


def _load(env: Any, name: str, shown: str) -> Any:
    jinja2 = _jinja()
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        file = _shown(exc.filename, shown)
        raise ConfigError(f"--template {file}, line {exc.lineno}: syntax error: {exc.message}"
                          f"{_source_line(exc.filename, exc.lineno)}") from None
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"--template {shown}: template {exc.name!r} not found") from None


def _render_block(template: Any, block: str | None, context: dict[str, Any], env: Any, shown: str) -> str:
    try:
        if block is None:
            text = template.render(context)
        else:
            text = "".join(template.blocks[block](template.new_context(context)))
    except Exception as exc:
        raise _render_error(exc, env, shown, context) from None
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.splitlines())).strip()


def render_prompt(context: dict[str, Any], settings: WriteSettings) -> Prompt:
    """Render ``settings.template`` (a user's file) or the platform's built-in template into a :class:`Prompt`."""
    user_dir, name, shown = _template_ref(settings, context)
    env = _environment(user_dir)
    template = _load(env, name, shown)
    blocks = template.blocks
    if "user" in blocks:
        system = _render_block(template, "system", context, env, shown) if "system" in blocks else None
        user = _render_block(template, "user", context, env, shown)
    elif "system" in blocks:
        raise ConfigError(f"--template {shown}: has a system block but no {{% block user %}}")
    else:
        system, user = None, _render_block(template, None, context, env, shown)
    if not user:
        raise ConfigError(f"--template {shown}: the user message rendered empty for item {context.get('id')!r}")
    return Prompt(system=system or None, user=user, context=context)


def compose_prompt(item: Item, described: dict[str, Any] | None, settings: WriteSettings,
                   examples: Sequence[dict[str, Any]] = ()) -> Prompt:
    """:func:`build_context` then :func:`render_prompt`."""
    return render_prompt(build_context(item, described, settings, examples), settings)


def platform_rules(context: dict[str, Any], settings: WriteSettings) -> PlatformRules:
    """The rules a context was built for (its ``platform`` dict), else the settings' platform."""
    platform = context.get("platform")
    return PlatformRules(**platform) if isinstance(platform, dict) else get_platform(settings.platform)


__all__ = [
    "ELLIPSIS",
    "RESERVED_KEYS",
    "TRIM_LIMITS",
    "build_context",
    "builtin_templates",
    "compose_prompt",
    "platform_rules",
    "render_prompt",
    "trim_text",
]
