"""Lazy imports of optional dependencies, with a message that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from captionkit.errors import MissingExtraError


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'captionkit[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"{module!r} is needed{what} but is not installed: pip install 'captionkit[{extra}]'"
        ) from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it twice on success)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
