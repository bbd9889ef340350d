"""Built-in pipeline stages, one per file; importing this package registers them."""

from captionkit.stages import facts, media  # noqa: F401
