"""captionkit: media and metadata in, captions, visible text, transcripts and posts out."""

from __future__ import annotations

from typing import Any

from captionkit.errors import CaptionkitError
from captionkit.records import Item, ItemResult, MediaRef, StageError, VideoVariant

__version__ = "0.1.0"

# The API functions import the media and I/O stacks; load them on first use so `import captionkit` is cheap.
_API = {"describe", "run", "write", "read_dataset", "RunConfig", "Pipeline", "evaluate"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from captionkit import api

        if name == "Pipeline":
            from captionkit.pipeline.core import Pipeline

            return Pipeline
        if name == "evaluate":
            from captionkit.eval.evaluate import evaluate

            return evaluate
        return getattr(api, name)
    raise AttributeError(f"module 'captionkit' has no attribute {name!r}")


__all__ = [
    "CaptionkitError",
    "Item",
    "ItemResult",
    "MediaRef",
    "Pipeline",
    "RunConfig",
    "StageError",
    "VideoVariant",
    "__version__",
    "describe",
    "read_dataset",
    "run",
    "write",
]
