"""captionkit: media and metadata in, captions, visible text, transcripts and posts out."""

from captionkit.errors import CaptionkitError
from captionkit.records import Item, ItemResult, MediaRef, StageError, VideoVariant

__version__ = "0.1.0"
__all__ = ["CaptionkitError", "Item", "ItemResult", "MediaRef", "StageError", "VideoVariant", "__version__"]
