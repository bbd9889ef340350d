"""Built-in pipeline stages, one per file; importing this package registers them."""

from captionkit.stages import caption, facts, media, ocr, transcribe, write  # noqa: F401
