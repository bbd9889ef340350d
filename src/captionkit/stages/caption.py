"""``caption`` stage: a caption per still image, one merged description per video or GIF.

All frames of all items in a batch go to the captioner in one call, so model backends batch across items.
Chat VLMs that take several images see a video's frames together in one prompt instead.
"""

from __future__ import annotations

import logging
from typing import Any

from captionkit.captioners.base import Captioner, load_captioner
from captionkit.captioners.video import merge_frame_captions
from captionkit.config import RunConfig
from captionkit.errors import ConfigError, MissingExtraError, ModelUnavailableError
from captionkit.media.types import LoadedMedia
from captionkit.models import catalog
from captionkit.models.settings import CaptionSettings
from captionkit.pipeline.stage import Work, register_stage

log = logging.getLogger("captionkit")


def load_with_fallback(settings: CaptionSettings) -> tuple[Captioner, str | None]:
    """The configured captioner; for the *default* one only, the fallback (with a notice) when it cannot be had."""
    spec = settings.model or catalog.default("captioner").name
    try:
        return load_captioner(spec, settings.model_options), None
    except (ModelUnavailableError, MissingExtraError) as exc:
        if settings.model is not None or not settings.fallback:
            raise
        notice = (
            f"the default captioner {spec!r} could not be loaded ({exc}). Using the model-free "
            f"{settings.fallback!r} captioner instead: captions describe shape, colours, faces and text only. "
            f"For full captions, install captionkit[models] and run `captionkit models pull` where the model "
            f"hub is reachable, or pass --captioner with a local model folder."
        )
        log.warning(notice)
        return load_captioner(settings.fallback, settings.model_options), notice


@register_stage("caption")
class CaptionStage:
    name = "caption"

    def __init__(self, config: RunConfig) -> None:
        self.settings = config.caption
        self.batch_size = self.settings.batch_size
        self.captioner: Captioner | None = None
        self.notice: str | None = None

    def setup(self) -> None:
        if self.captioner is None:
            self.captioner, self.notice = load_with_fallback(self.settings)

    @property
    def prompt(self) -> str | None:
        # A prompt meant for the configured model is dropped when the fallback cannot take one.
        return self.settings.prompt if self.captioner and self.captioner.supports_prompt else None

    def process(self, works: list[Work]) -> list[Any]:
        self.setup()
        assert self.captioner is not None
        if self.settings.prompt and not self.notice and not self.captioner.supports_prompt:
            raise ConfigError(f"--prompt: the {self.captioner.backend} captioner ({self.captioner.model_id}) "
                              "cannot take a prompt; drop --prompt or choose BLIP, GIT, Florence-2 or a chat VLM")
        media = [_media_of(w) for w in works]
        # One captioner call for every frame that is captioned on its own.
        singles = [(w, m, f) for w, ms in enumerate(media) for m, lm in enumerate(ms) if not self._together(lm)
                   for f in range(len(lm.frames))]
        texts = self.captioner.caption([media[w][m].frames[f].image for w, m, f in singles], self.prompt,
                                       self.settings.generation) if singles else []
        per_frame: dict[tuple[int, int], list[tuple[float, str]]] = {}
        for (w, m, f), text in zip(singles, texts):
            per_frame.setdefault((w, m), []).append((media[w][m].frames[f].time, text))
        return [[self._describe(lm, per_frame.get((w, m), [])) for m, lm in enumerate(ms)] for w, ms in enumerate(media)]

    def _together(self, lm: LoadedMedia) -> bool:
        assert self.captioner is not None
        return (lm.info.kind != "image" and len(lm.frames) > 1 and self.settings.frames_together
                and self.captioner.max_images_per_prompt > 1)

    def _describe(self, lm: LoadedMedia, timed: list[tuple[float, str]]) -> dict[str, Any]:
        assert self.captioner is not None
        out: dict[str, Any] = {"model": self.captioner.model_id, "backend": self.captioner.backend}
        if self.notice:
            out["fallback_from"] = self.settings.model or catalog.default("captioner").name
        if lm.info.kind == "image":
            out["caption"] = timed[0][1] if timed else ""
            return out
        if self._together(lm):
            frames = [f.image for f in lm.frames][: self.captioner.max_images_per_prompt]
            body = self.captioner.caption_frames(frames, self.prompt, self.settings.generation)
            out["caption"] = merge_frame_captions([(0.0, body)], lm.info.kind, lm.info.duration)
            out["frames_in_prompt"] = len(frames)
            return out
        out["caption"] = merge_frame_captions(timed, lm.info.kind, lm.info.duration)
        out["frames"] = [{"time": round(t, 3), "caption": c} for t, c in timed]
        return out


def _media_of(work: Work) -> list[LoadedMedia]:
    loaded = work.scratch.get("media")
    if loaded is None:
        raise ConfigError("--stages: the 'caption' stage needs the 'media' stage before it")
    return loaded
