"""``facts`` stage: model-free facts about each media file (size, orientation, duration, colours)."""

from __future__ import annotations

from typing import Any

from captionkit.config import RunConfig
from captionkit.errors import ConfigError
from captionkit.media.facts import media_facts
from captionkit.pipeline.stage import ItemStage, Work, register_stage


@register_stage("facts")
class FactsStage(ItemStage):
    name = "facts"

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def process_one(self, work: Work) -> list[dict[str, Any]]:
        loaded = work.scratch.get("media")
        if loaded is None:
            raise ConfigError("--stages: the 'facts' stage needs the 'media' stage before it")
        return [media_facts(m) for m in loaded]
