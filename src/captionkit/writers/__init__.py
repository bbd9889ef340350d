"""Post writers, one backend per file behind the :class:`~captionkit.writers.base.Writer` protocol."""

from captionkit.writers.base import Prompt, Writer, available_writers, load_writer, register_writer

__all__ = ["Prompt", "Writer", "available_writers", "load_writer", "register_writer"]
