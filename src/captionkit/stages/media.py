"""``media`` stage: fetch (if remote), sniff, decode and sample every media file of an item."""

from __future__ import annotations

from typing import Any

from captionkit.config import RunConfig
from captionkit.errors import MediaError
from captionkit.media.fetch import MediaCache, resolve_media
from captionkit.media.loader import load_media
from captionkit.pipeline.stage import ItemStage, Work, register_stage


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
        item = work.item
        if not item.media:
            raise MediaError(f"row {item.id!r} has no media")
        loaded, out = [], []
        for ref in item.media:
            path = resolve_media(ref.url, self.config.fetch, self.cache)
            media = load_media(path, self.config.frames, self.config.limits)
            loaded.append(media)
            out.append(
                {
                    "url": ref.url,
                    "path": str(path),
                    "kind": ref.kind,
                    "frame_times": [round(f.time, 3) for f in media.frames],
                }
            )
        work.scratch["media"] = loaded
        return out
