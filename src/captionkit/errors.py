"""Exceptions with messages meant for users: each names the file, flag, column or URL at fault."""

from __future__ import annotations


class CaptionkitError(Exception):
    """Base class. ``str(err)`` is a complete, user-facing explanation."""


class ConfigError(CaptionkitError):
    """A flag, YAML key or argument has a bad value."""


class MissingExtraError(CaptionkitError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class DatasetError(CaptionkitError):
    """A dataset file cannot be read, or its columns do not match the mapping."""


class MediaStringError(DatasetError):
    """A media cell (e.g. a snscrape ``[Photo(...)]`` repr) cannot be parsed."""


class MediaError(CaptionkitError):
    """A media file cannot be decoded, or is refused (bomb, absurd size, unknown format)."""


class FetchError(MediaError):
    """A media URL cannot be downloaded (HTTP error, timeout, oversize, wrong content type)."""


class ModelUnavailableError(ConfigError):
    """A model cannot be fetched: not cached locally and the hub is unreachable (or refuses access)."""
