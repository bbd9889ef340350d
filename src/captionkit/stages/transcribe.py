"""``transcribe`` stage: what is said in each video's audio track, with Whisper.

Needs the ``media`` stage before it. Per media file the output is the transcript
(``{"text", "language", "duration", "truncated", "model"}``) or why there is none
(``{"skipped": "not a video"}`` / ``{"skipped": "no audio track"}``). ``--speech-model none``
turns the stage off (output ``None``). When the *default* model (no --speech-model given) cannot be
had, ``speech.fallback`` decides: ``"none"`` turns the stage off with a notice, a model name loads
that one instead. An audio track that cannot be decoded fails the item.
"""

from __future__ import annotations

import logging
from typing import Any

from captionkit.config import RunConfig
from captionkit.errors import ConfigError, MissingExtraError, ModelUnavailableError
from captionkit.models import catalog
from captionkit.pipeline.stage import ItemStage, Work, register_stage
from captionkit.speech.audio import load_audio

log = logging.getLogger("captionkit")


@register_stage("transcribe")
class TranscribeStage(ItemStage):
    name = "transcribe"

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.settings = config.speech
        self.enabled = self.settings.model is None or str(self.settings.model).strip().lower() != "none"
        self.transcriber: Any = None
        self.language: str | None = None
        self.notice: str | None = None  # shown once per run by the runner (Pipeline.notices)
        if self.settings.max_seconds is not None and not self.settings.max_seconds > 0:
            raise ConfigError(f"speech: max_seconds must be > 0 (got {self.settings.max_seconds})")

    def setup(self) -> None:
        if not self.enabled or self.transcriber is not None:
            return
        from captionkit.speech.whisper import load_transcriber

        spec = self.settings.model or catalog.default("speech").name
        try:
            self.transcriber = load_transcriber(spec, self.settings.model_options)
        except (ModelUnavailableError, MissingExtraError) as exc:
            fallback = self.settings.fallback
            if self.settings.model is not None or not fallback:  # a model the user named must load
                raise
            if str(fallback).strip().lower() != "none":
                self.transcriber = load_transcriber(fallback, self.settings.model_options)
                self.notice = f"the default speech model {spec!r} could not be loaded ({exc}); transcribing with {fallback!r}"
            else:
                self.notice = (f"the default speech model {spec!r} could not be loaded ({exc}), so nothing was "
                               f"transcribed. Run `captionkit models pull {spec}` where the model hub is reachable, "
                               f"or pass --speech-model with a local Whisper folder")
                self.enabled = False
            log.warning(self.notice)
            if not self.enabled:
                return
        self.language = self.transcriber.language_code(self.settings.language)  # a bad language stops the run here

    def process_one(self, work: Work) -> list[dict[str, Any]] | None:
        if not self.enabled:
            return None
        loaded = work.scratch.get("media")
        if loaded is None:
            raise ConfigError("--stages: the 'transcribe' stage needs the 'media' stage before it")
        return [self._one(media) for media in loaded]

    def _one(self, media: Any) -> dict[str, Any]:
        if media.info.kind != "video":
            return {"skipped": "not a video"}
        if not media.info.has_audio:
            return {"skipped": "no audio track"}
        max_seconds = self.settings.max_seconds
        decoded = load_audio(media.path, max_seconds=max_seconds)
        if decoded is None:
            return {"skipped": "no audio track"}
        samples, duration = decoded
        t = self.transcriber.transcribe(samples, self.language, max_seconds=max_seconds, source_duration=duration)
        return {
            "text": t.text,
            "language": t.language,
            "duration": round(t.duration, 3),
            "truncated": t.truncated,
            "model": self.transcriber.model_id,
        }
