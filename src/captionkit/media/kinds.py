"""File-name conventions for media. Content is always sniffed before decoding; suffixes only pick files."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".ppm", ".pgm"}
)
GIF_SUFFIXES = frozenset({".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".3gp"})
MEDIA_SUFFIXES = IMAGE_SUFFIXES | GIF_SUFFIXES | VIDEO_SUFFIXES


def kind_from_suffix(path: str | Path) -> str | None:
    """Guess a :class:`~captionkit.records.MediaRef` kind from a file name or URL path, or None."""
    suffix = Path(str(path).split("?", 1)[0]).suffix.lower()
    if suffix in GIF_SUFFIXES:
        return "gif"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return None


def is_media_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in MEDIA_SUFFIXES and not path.name.startswith(".")
