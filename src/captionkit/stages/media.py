"""``media`` stage: fetch (if remote), sniff, decode and sample every media file of an item."""

from __future__ import annotations

from typing import Any

from captionkit.config import RunConfig
from captionkit.errors import MediaError
from captionkit.media.fetch import MediaCache, resolve_media
from captionkit.media.loader import load_media
from captionkit.media.types import LoadedMedia
from captionkit.pipeline.stage import ItemStage, Work, register_stage
from captionkit.records import Item


@register_stage("media")
class MediaStage(ItemStage):
    """Leaves decoded frames in ``work.scratch["media"]`` for later stages; outputs where each file came from."""

    name = "media"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.cache: MediaCache | None = None

    def setup(self) -> None:
        self.cache = MediaCache()

    def process_one(self, work: Work) -> list[dict[str, Any]]:
        loaded = load_item_media(work.item, self.config, self.cache)
        work.scratch["media"] = loaded
        return [
            {"url": ref.url, "path": str(media.path), "kind": ref.kind, "frame_times": [round(f.time, 3) for f in media.frames]}
            for ref, media in zip(work.item.media, loaded)
        ]


def load_item_media(item: Item, config: RunConfig, cache: MediaCache | None = None) -> list[LoadedMedia]:
    """Every media file of ``item``: fetched if remote, sniffed, decoded, frames sampled by the frame policy."""
    if not item.media:
        raise MediaError(f"row {item.id!r} has no media")
    return [load_media(resolve_media(ref.url, config.fetch, cache), config.frames, config.limits) for ref in item.media]
