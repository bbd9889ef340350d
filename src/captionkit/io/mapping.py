"""Which dataset column feeds which :class:`~captionkit.records.Item` field.

The defaults fit the Adobe tweet dataset (``id, date, likes, content, username, media, inferred company``), so
it needs no mapping at all. Columns the user names (YAML or ``--map FIELD=COLUMN``) must exist; default columns
that are absent are skipped, except the media column, without which there is nothing to caption.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError, DatasetError
from captionkit.records import MEDIA_ERROR_KEY, ROW_ERROR_KEY  # noqa: F401  (re-exported for readers)

# Item field -> column, for the fields that are not metadata.
CORE_FIELDS: tuple[str, ...] = ("id", "media", "reference")
DEFAULT_METADATA: dict[str, str] = {
    "date": "date",
    "likes": "likes",
    "username": "username",
    "company": "inferred company",
}
_MAP_HELP = "expected FIELD=COLUMN where FIELD is id, media, reference or metadata.NAME"


def _default_metadata() -> dict[str, str]:
    return dict(DEFAULT_METADATA)


@dataclass
class ColumnMapping:
    """Dataset columns for each item field. ``None`` means "no such column" (e.g. ``id=None`` numbers rows).

    Columns the user asked for are checked strictly by :meth:`resolve`: those set through :meth:`from_dict`,
    :meth:`from_yaml` or :meth:`with_overrides`, and any whose value differs from the default (so
    ``ColumnMapping(media="image_path")`` is checked too). ``asdict()`` of a mapping holds only its meaning, so
    it round-trips through :meth:`from_dict` and hashes the same however it was built.
    """

    id: str | None = "id"
    media: str | None = "media"
    reference: str | None = "content"
    metadata: dict[str, str] = field(default_factory=_default_metadata)
    keep_other_columns: bool = True  # unmapped columns go into metadata under their own names
    # Targets the user set ("media", "metadata.brand"). Deliberately not a dataclass field: see above.
    _explicit = frozenset()  # type: frozenset[str]

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "mapping") -> ColumnMapping:
        """Build from ``{id: ..., media: ..., reference: ..., metadata: {name: column}, keep_other_columns: ...}``.

        A ``metadata`` table replaces the default Adobe one (a config file says everything it wants); missing
        keys keep their defaults. Unknown keys raise :class:`ConfigError` naming ``source``.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{source}: a column mapping must be a table of FIELD: COLUMN, got {type(data).__name__}"
            )
        allowed = (*CORE_FIELDS, "metadata", "keep_other_columns")
        unknown = [str(k) for k in data if k not in allowed]
        if unknown:
            raise ConfigError(
                f"{source}: unknown mapping key(s) {', '.join(unknown)}; expected {', '.join(allowed)}"
            )
        mapping, explicit = cls(), set()
        for name in CORE_FIELDS:
            if name in data:
                setattr(mapping, name, _column(data[name], f"{source}: {name}"))
                explicit.add(name)
        if "metadata" in data:
            mapping.metadata = _metadata_table(data["metadata"], source)
            explicit.update(f"metadata.{key}" for key in mapping.metadata)
        if "keep_other_columns" in data:
            if not isinstance(data["keep_other_columns"], bool):
                raise ConfigError(f"{source}: keep_other_columns must be true or false")
            mapping.keep_other_columns = data["keep_other_columns"]
        mapping._explicit = frozenset(explicit)
        return mapping

    @classmethod
    def from_yaml(cls, path: str | Path) -> ColumnMapping:
        """Read a mapping file such as ``{id: tweet_id, media: media_urls, metadata: {brand: company}}``."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read mapping file {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"mapping file {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data or {}, source=str(path))

    def with_overrides(self, overrides: Iterable[str]) -> ColumnMapping:
        """Apply ``--map`` flag values: ``media=image_path``, ``metadata.brand=company``, ``id=`` (no column).

        ``metadata.NAME=`` with no column drops that metadata field. Returns a new mapping.
        """
        mapping = replace(self, metadata=dict(self.metadata))
        explicit = set(self._explicit)
        for flag in overrides:
            target, column = _split_override(flag)
            if target in CORE_FIELDS:
                setattr(mapping, target, column)
            elif column is None:
                mapping.metadata.pop(target.removeprefix("metadata."), None)
            else:
                mapping.metadata[target.removeprefix("metadata.")] = column
            explicit.add(target)
        mapping._explicit = frozenset(explicit)
        return mapping

    # ----------------------------------------------------------------------------------------- resolving

    def is_explicit(self, target: str) -> bool:
        """True when the user asked for ``target`` ("media", "metadata.brand"), so its column must exist."""
        if target in self._explicit:
            return True
        if target in CORE_FIELDS:
            return getattr(self, target) != getattr(ColumnMapping, target)
        name = target.removeprefix("metadata.")
        return DEFAULT_METADATA.get(name) != self.metadata.get(name)

    def resolve(
        self, columns: list[str], *, source: str = "the dataset", require_media: bool = True
    ) -> ResolvedMapping:
        """Match the mapping against a dataset's actual ``columns``.

        Raises :class:`DatasetError` for explicit columns that do not exist (with suggestions) and when the media
        column is missing and ``require_media`` is set.
        """
        matcher = _ColumnMatcher(columns)
        found: dict[str, str | None] = {}
        missing: list[tuple[str, str]] = []  # (target, column) the user asked for but the dataset lacks
        wanted = {name: getattr(self, name) for name in CORE_FIELDS}
        wanted.update({f"metadata.{key}": column for key, column in self.metadata.items()})
        for target, column in wanted.items():
            actual = matcher.find(column) if column else None
            if column and actual is None and self.is_explicit(target):
                missing.append((target, column))
            found[target] = actual
        if missing:
            raise DatasetError(_missing_message(missing, columns, source, matcher))
        if require_media and self.media and found["media"] is None:
            raise DatasetError(
                f"no media column {self.media!r} in {source}; columns are: {', '.join(columns) or '(none)'}; "
                "pick one with --map media=COLUMN"
            )
        return self._resolved(found, columns)

    def _resolved(self, found: dict[str, str | None], columns: list[str]) -> ResolvedMapping:
        metadata = {
            target.removeprefix("metadata."): column
            for target, column in found.items()
            if target.startswith("metadata.") and column is not None
        }
        used = {column for column in found.values() if column is not None}
        return ResolvedMapping(
            id=found["id"],
            media=found["media"],
            reference=found["reference"],
            metadata=metadata,
            keep_other_columns=self.keep_other_columns,
            used_columns=frozenset(used),
        )


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping checked against one dataset: every value is a column that exists (or None)."""

    id: str | None
    media: str | None
    reference: str | None
    metadata: dict[str, str]  # metadata field -> actual column name
    keep_other_columns: bool = True
    used_columns: frozenset[str] = frozenset()

    def other_columns(self, row_keys: Iterable[str]) -> list[str]:
        """Columns of a row that go into metadata under their own name (mapped fields win name clashes)."""
        if not self.keep_other_columns:
            return []
        return [key for key in row_keys if key not in self.used_columns and key not in self.metadata]


# ------------------------------------------------------------------------------------------------ helpers


def _column(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: a column name must be text, got {value!r}")


def _metadata_table(value: Any, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: metadata must be a table of NAME: COLUMN, got {type(value).__name__}")
    table = {}
    for key, column in value.items():
        resolved = _column(column, f"{source}: metadata.{key}")
        if resolved is not None:
            table[str(key)] = resolved
    return table


def _split_override(flag: str) -> tuple[str, str | None]:
    """``"metadata.brand=company"`` -> ``("metadata.brand", "company")``; bad syntax names the flag value."""
    target, sep, column = flag.partition("=")
    target = target.strip()
    valid_target = target in CORE_FIELDS or (target.startswith("metadata.") and target != "metadata.")
    if not sep or not valid_target:
        raise ConfigError(f"--map {flag!r}: {_MAP_HELP}")
    return target, column.strip() or None


def _normalise(name: str) -> str:
    """Case, surrounding space and the space/underscore/hyphen spelling do not distinguish columns."""
    return re.sub(r"[\s_\-]+", " ", name).strip().casefold()


class _ColumnMatcher:
    """Finds a column by exact name, then by normalised name (``Inferred_Company`` ~ ``inferred company``)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self.by_norm: dict[str, str] = {}
        for column in self.columns:
            self.by_norm.setdefault(_normalise(column), column)  # first wins when two spellings collide

    def find(self, name: str) -> str | None:
        if name in self.columns:
            return name
        return self.by_norm.get(_normalise(name))

    def suggest(self, name: str) -> list[str]:
        norms = difflib.get_close_matches(_normalise(name), list(self.by_norm), n=3, cutoff=0.6)
        return [self.by_norm[n] for n in norms]


def _missing_message(
    missing: list[tuple[str, str]], columns: list[str], source: str, matcher: _ColumnMatcher
) -> str:
    parts = []
    for target, column in missing:
        hint = matcher.suggest(column)
        did_you_mean = f" (did you mean {' or '.join(repr(h) for h in hint)}?)" if hint else ""
        parts.append(f"column {column!r} for {target}{did_you_mean}")
    return f"{'; '.join(parts)} not found in {source}; columns are: {', '.join(columns) or '(none)'}"
