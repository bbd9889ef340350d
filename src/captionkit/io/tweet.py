"""Parse the ``media`` cell of tweet datasets into :class:`~captionkit.records.MediaRef` lists.

Tweet datasets scraped with snscrape store each tweet's media as the Python repr of snscrape's dataclasses::

    [Photo(previewUrl='https://pbs.twimg.com/media/ID?format=jpg&name=small', fullUrl='https://...&name=large')]
    [Video(thumbnailUrl='...', variants=[VideoVariant(contentType='video/mp4', url='...', bitrate=832000)],
           duration=12.345, views=1234)]

The repr is parsed with :mod:`ast` and only literal nodes and calls of the known class names are accepted, so a
cell can never execute code. Other datasets hold a JSON list, a single URL or path, or several of them joined
with ``|``, ``;`` or newlines; :func:`parse_media_cell` accepts all of these.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from captionkit.errors import MediaStringError
from captionkit.media.kinds import kind_from_suffix
from captionkit.records import MEDIA_KINDS, MediaRef, VideoVariant

# snscrape class name -> MediaRef kind. AnimatedGif is what older snscrape versions called Gif.
SNSCRAPE_KINDS: dict[str, str] = {"Photo": "photo", "Video": "video", "Gif": "gif", "AnimatedGif": "gif"}
VARIANT_CLASS = "VideoVariant"
ALLOWED_CLASSES = frozenset(SNSCRAPE_KINDS) | {VARIANT_CLASS}

# A URL or path whose suffix says nothing (e.g. twimg ...?format=jpg) is most likely an image.
DEFAULT_KIND = "image"
_EMPTY_CELLS = frozenset({"", "[]", "()", "nan", "none", "null", "na", "n/a"})
_SEPARATORS = re.compile(r"\s*(?:\||;|\r\n|\r|\n)\s*")
# Text that is meant as a Python/JSON structure rather than a path: it must then parse, or it is an error.
# "[2020] photo.jpg" is a path; "[Photo(..." or "[Pho" (a cell cut short) is a broken structure.
_STRUCTURED_START = re.compile(
    r"""\[\s*(?:[A-Za-z_][\w.]*\s*(?:\(|$)|['"\[\]{(]|$)|\{|\(\s*[A-Za-z_][\w.]*\s*\("""
)
_CALL_START = re.compile(r"([A-Za-z_][\w.]*)\s*\(")
_EXCERPT = 24  # characters of context on each side of an error position


@dataclass(frozen=True)
class _Call:
    """A ``Name(key=value, ...)`` node, reduced to plain data."""

    name: str
    kwargs: dict[str, Any]
    # (line, UTF-8 byte column) as ast reports it; turned into a character offset only for an error message,
    # which keeps the common, valid case fast.
    pos: tuple[int, int]


# --------------------------------------------------------------------------------------------------- public API


def parse_media_cell(value: Any) -> list[MediaRef]:
    """Parse one media cell: an snscrape repr, a JSON list, URLs/paths, or an already-parsed list.

    Missing values (None, NaN, ``""``, ``"[]"``) give an empty list. Relative paths are returned as given:
    the dataset reader resolves them against the dataset's folder. Raises :class:`MediaStringError` when the
    cell is a structure (snscrape repr or JSON) that cannot be parsed.
    """
    if value is None or isinstance(value, MediaRef):
        return [value] if value is not None else []
    if isinstance(value, float):
        if math.isnan(value):
            return []
        raise MediaStringError(f"a media cell must be text or a list, got the number {value!r}")
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return parse_media_text(value)
    if isinstance(value, Mapping):
        return [_ref_from_mapping(value)]
    tolist = getattr(value, "tolist", None)  # numpy arrays from pyarrow-backed frames
    if callable(tolist) and not isinstance(value, (list, tuple)):
        return parse_media_cell(tolist())
    if isinstance(value, (list, tuple)):
        return _refs_from_sequence(value)
    raise MediaStringError(f"a media cell must be text or a list, got {type(value).__name__}")


def parse_media_text(text: str) -> list[MediaRef]:
    """Parse the text of a media cell (see :func:`parse_media_cell`)."""
    text = text.strip()
    if text.lower() in _EMPTY_CELLS:
        return []
    if text[0] in "[{":
        data = _try_json(text)
        if data is not None:
            return _refs_from_json(data)
    if _looks_structured(text):
        return parse_snscrape(text)
    return [ref_from_location(part) for part in _SEPARATORS.split(text) if part]


def parse_snscrape(text: str) -> list[MediaRef]:
    """Parse an snscrape media repr (a list of ``Photo``/``Video``/``Gif``, or one of them) without eval."""
    tree = _parse_expression(text)
    value = _LiteralReader(text).read(tree.body)
    items = value if isinstance(value, list) else [value]
    refs = []
    for item in items:
        if isinstance(item, _Call):
            refs.append(_ref_from_call(item, text))
        elif isinstance(item, str) and item:  # ['a.jpg', 'b.mp4']: a Python list of locations
            refs.append(ref_from_location(item))
        else:
            raise _error(text, 0, f"expected Photo(...), Video(...) or Gif(...) items, got {item!r:.40}")
    return refs


def best_variant(variants: Sequence[VideoVariant]) -> VideoVariant | None:
    """The mp4 variant with the highest bitrate (None counts as 0), else the best of the others.

    Ties keep the first variant listed. HLS playlists (``.m3u8``) are only chosen when nothing else exists.
    """
    if not variants:
        return None
    pool = [v for v in variants if is_mp4(v)] or list(variants)
    return max(pool, key=lambda v: v.bitrate or 0)


def is_mp4(variant: VideoVariant) -> bool:
    content_type = (variant.content_type or "").split(";", 1)[0].strip().lower()
    path = variant.url.split("?", 1)[0].split("#", 1)[0].lower()
    return content_type == "video/mp4" or path.endswith(".mp4")


def ref_from_location(location: str) -> MediaRef:
    """A MediaRef for a URL or path, its kind guessed from the suffix."""
    return MediaRef(kind=kind_from_suffix(location) or DEFAULT_KIND, url=location)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- snscrape reprs


def _looks_structured(text: str) -> bool:
    if _STRUCTURED_START.match(text) or (text[0] == "[" and text[-1] == "]"):
        return True
    call = _CALL_START.match(text)
    # A bare call: known class names always count (so a cut-off "Photo(previewUrl='..." is an error); other
    # names only when the text ends like a call, so "photo(1).jpg" stays a path.
    return bool(call) and (call.group(1) in ALLOWED_CLASSES or text.endswith(")"))


def _parse_expression(text: str) -> ast.Expression:
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" warnings are noise about data, not code
            warnings.simplefilter("ignore")
            return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        pos = _char_pos(text, exc.lineno or 1, (exc.offset or 1) - 1, in_bytes=False)
        raise _error(text, pos, exc.msg or "syntax error") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:  # NUL bytes, absurd nesting
        raise _error(text, 0, str(exc) or type(exc).__name__) from None


class _LiteralReader:
    """Walks an expression tree accepting only literals and calls of :data:`ALLOWED_CLASSES`."""

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, node: ast.AST) -> Any:
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.read(element) for element in node.elts]
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self._signed(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self._fail(node, _describe(node))

    def _constant(self, node: ast.Constant) -> Any:
        if node.value is None or isinstance(node.value, (str, int, float, bool)):
            return node.value
        raise self._fail(node, f"unsupported literal {node.value!r:.20}")

    def _signed(self, node: ast.UnaryOp) -> int | float:
        operand = node.operand
        if isinstance(operand, ast.Constant) and type(operand.value) in (int, float):
            return -operand.value if isinstance(node.op, ast.USub) else operand.value
        raise self._fail(node, "a sign is only allowed before a number")

    def _call(self, node: ast.Call) -> _Call:
        func = node.func
        if not isinstance(func, ast.Name):
            raise self._fail(node, "only calls of Photo, Video, Gif and VideoVariant are allowed")
        if func.id not in ALLOWED_CLASSES:
            allowed = ", ".join(sorted(ALLOWED_CLASSES))
            raise self._fail(node, f"unknown media class {func.id!r} (expected one of {allowed})")
        if node.args:
            raise self._fail(node.args[0], f"{func.id}(...) takes keyword arguments only")
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self._fail(keyword.value, "**kwargs is not allowed")
            kwargs[keyword.arg] = self.read(keyword.value)
        return _Call(func.id, kwargs, _node_pos(node))

    def _fail(self, node: ast.AST, reason: str) -> MediaStringError:
        return _error(self.text, _node_pos(node), reason)


def _node_pos(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 1), getattr(node, "col_offset", 0)


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"unexpected name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return "attribute access is not allowed"
    return f"{type(node).__name__} expressions are not allowed"


def _ref_from_call(call: _Call, text: str) -> MediaRef:
    kind = SNSCRAPE_KINDS.get(call.name)
    if kind is None:
        raise _error(text, call.pos, f"{call.name} is only allowed inside variants=[...]")
    fields = _Fields(call, text)
    if kind == "photo":
        preview = fields.text("previewUrl")
        url = fields.text("fullUrl") or preview
        if not url:
            raise _error(text, call.pos, "Photo has neither fullUrl nor previewUrl")
        return MediaRef(kind="photo", url=url, preview_url=preview, alt_text=fields.text("altText"))
    variants = [_variant_from_call(v, text) for v in fields.list("variants")]
    best = best_variant(variants)
    if best is None:
        raise _error(text, call.pos, f"{call.name} has no variants to play")
    return MediaRef(
        kind=kind,  # type: ignore[arg-type]
        url=best.url,
        thumbnail_url=fields.text("thumbnailUrl"),
        duration=fields.number("duration"),
        variants=variants,
        views=fields.integer("views"),
        alt_text=fields.text("altText"),
    )


def _variant_from_call(value: Any, text: str) -> VideoVariant:
    if not isinstance(value, _Call) or value.name != VARIANT_CLASS:
        raise _error(
            text, getattr(value, "pos", 0), f"variants must hold VideoVariant(...), got {value!r:.40}"
        )
    fields = _Fields(value, text)
    url = fields.text("url")
    if not url:
        raise _error(text, value.pos, "VideoVariant has no url")
    return VideoVariant(url=url, content_type=fields.text("contentType"), bitrate=fields.integer("bitrate"))


class _Fields:
    """Typed access to a call's keyword arguments; unknown keys are ignored so newer snscrape still parses."""

    def __init__(self, call: _Call, text: str) -> None:
        self.call, self.text_ = call, text

    def _bad(self, key: str, expected: str) -> MediaStringError:
        value = self.call.kwargs[key]
        return _error(
            self.text_, self.call.pos, f"{self.call.name}.{key} must be {expected}, got {value!r:.40}"
        )

    def text(self, key: str) -> str | None:
        value = self.call.kwargs.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._bad(key, "a string")

    def number(self, key: str) -> float | None:
        value = self.call.kwargs.get(key)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise self._bad(key, "a number")

    def integer(self, key: str) -> int | None:
        value = self.call.kwargs.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise self._bad(key, "an integer")

    def list(self, key: str) -> list[Any]:
        value = self.call.kwargs.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        raise self._bad(key, "a list")


# ------------------------------------------------------------------------------------------ JSON and lists


def _try_json(text: str) -> Any:
    """The decoded JSON, or None when the text is not JSON (it may still be a Python repr)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _refs_from_json(data: Any) -> list[MediaRef]:
    if isinstance(data, Mapping):
        return [_ref_from_mapping(data)]
    if isinstance(data, list):
        return _refs_from_sequence(data)
    raise MediaStringError(f"a JSON media cell must be a list or an object, got {type(data).__name__}")


def _refs_from_sequence(items: Sequence[Any]) -> list[MediaRef]:
    refs = []
    for item in items:
        if isinstance(item, MediaRef):
            refs.append(item)
        elif isinstance(item, Mapping):
            refs.append(_ref_from_mapping(item))
        elif isinstance(item, str):
            if item.strip():
                refs.append(ref_from_location(item.strip()))
        elif item is not None:
            raise MediaStringError(f"media list items must be URLs, paths or objects, got {item!r:.40}")
    return refs


def _ref_from_mapping(data: Mapping[str, Any]) -> MediaRef:
    """An object such as ``{"kind": "video", "url": "clip.mp4"}`` or a full :meth:`MediaRef.to_dict`."""
    variants = [_variant_from_mapping(v) for v in _get(data, "variants") or []]
    url = _get(data, "url", "path") or getattr(best_variant(variants), "url", None)
    if not isinstance(url, str) or not url.strip():
        raise MediaStringError(f"media object has no 'url': {dict(data)!r:.80}")
    kind = _get(data, "kind", "type") or kind_from_suffix(url) or DEFAULT_KIND
    if kind not in MEDIA_KINDS:
        raise MediaStringError(f"unknown media kind {kind!r} (expected one of {', '.join(MEDIA_KINDS)})")
    return MediaRef(
        kind=kind,
        url=url.strip(),
        thumbnail_url=_get(data, "thumbnail_url", "thumbnailUrl"),
        preview_url=_get(data, "preview_url", "previewUrl"),
        duration=_as_number(_get(data, "duration"), "duration", float),
        variants=variants,
        views=_as_number(_get(data, "views"), "views", int),
        alt_text=_get(data, "alt_text", "altText"),
    )


def _variant_from_mapping(data: Any) -> VideoVariant:
    if isinstance(data, VideoVariant):
        return data
    if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
        raise MediaStringError(f"a video variant must be an object with a 'url', got {data!r:.60}")
    return VideoVariant(
        url=data["url"],
        content_type=_get(data, "content_type", "contentType"),
        bitrate=_as_number(_get(data, "bitrate"), "bitrate", int),
    )


def _get(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _as_number(value: Any, name: str, kind: type) -> Any:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MediaStringError(f"media {name} must be a number, got {value!r:.40}") from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        raise MediaStringError(
            f"media {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        )
    return int(number) if kind is int else number


# ------------------------------------------------------------------------------------------------ errors


def _char_pos(text: str, lineno: int, col: int, *, in_bytes: bool) -> int:
    """Character offset of (1-based line, 0-based column); ast columns count UTF-8 bytes, SyntaxError's chars."""
    lines = text.split("\n")
    lineno = min(max(lineno, 1), len(lines))
    line = lines[lineno - 1]
    if in_bytes:
        col = len(line.encode("utf-8", "surrogatepass")[: max(col, 0)].decode("utf-8", errors="ignore"))
    start = sum(len(previous) + 1 for previous in lines[: lineno - 1])
    return min(start + max(col, 0), len(text))


def _error(text: str, pos: int | tuple[int, int], reason: str) -> MediaStringError:
    """A MediaStringError naming the position (a character offset, or an ast (line, byte column))."""
    if isinstance(pos, tuple):
        pos = _char_pos(text, pos[0], pos[1], in_bytes=True)
    lo, hi = max(pos - _EXCERPT, 0), min(pos + _EXCERPT, len(text))
    excerpt = ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")
    excerpt = excerpt.replace("\n", "\\n").replace("\r", "\\r")
    return MediaStringError(f"cannot parse media cell at column {pos + 1}: {reason}: {excerpt}")
