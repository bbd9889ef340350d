"""The pipeline as a service: models loaded once, shared by the API, the web UI and batch jobs.

Describing runs the run config's describe stages (one :func:`captionkit.api.pipeline_for` pipeline, loaded at
start-up); writing runs the ``write`` stage with the request's options (platform, tone, number of posts). Write
pipelines are kept per option set (a few, least recently used first out) and share the loaded writer, so a
request with a new tone costs no model load. ``gate`` lets ``concurrency`` callers use the models at once,
whether they are requests or job batches.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from captionkit import api
from captionkit.config import DESCRIBE_STAGES, RunConfig
from captionkit.errors import CaptionkitError, ConfigError
from captionkit.io.results import described_of
from captionkit.media.generate import write_image
from captionkit.models.settings import WriteSettings
from captionkit.pipeline.core import Pipeline
from captionkit.records import Item, ItemResult, MediaRef
from captionkit.serve.errors import ServiceError, bad_request, not_ready
from captionkit.serve.intake import MediaInput, check_media, materialise
from captionkit.serve.schemas import PostOptions
from captionkit.serve.settings import ServeSettings

log = logging.getLogger("captionkit.serve")
WRITERS_KEPT = 32  # write pipelines per option set kept alive (each is small: the writer itself is shared)
StageHook = Callable[[str], None]


def server_config(config: RunConfig, settings: ServeSettings) -> RunConfig:
    """The run config as the server uses it: downloads under the SSRF rule and the upload size limit."""
    fetch = dataclasses.replace(config.fetch, allow_private=settings.allow_private_urls,
                                max_bytes=min(config.fetch.max_bytes, settings.max_upload_bytes))
    return dataclasses.replace(config, fetch=fetch)


class CaptionService:
    """Loads the models once; describes media and writes posts for requests and jobs."""

    def __init__(self, config: RunConfig, settings: ServeSettings) -> None:
        self.settings = settings
        self.config = server_config(config, settings)
        describe = [s for s in self.config.stages if s != "write"] or list(DESCRIBE_STAGES)
        self.describe_config = dataclasses.replace(self.config, stages=describe)
        self.write_base: WriteSettings = self.config.write
        self.state = "loading"  # loading | ready | failed
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.ready = threading.Event()
        self.gate = threading.BoundedSemaphore(settings.concurrency)
        self.describer: Pipeline | None = None
        self._writers: OrderedDict[WriteSettings, Pipeline] = OrderedDict()
        self._writers_lock = threading.Lock()
        self._base_writer: Pipeline | None = None

    # --- start-up ------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load every model (and warm them up with one small image); sets ``state``."""
        start = time.perf_counter()
        try:
            self.describer = api.pipeline_for(self.describe_config)
            self.describer.setup()
            self._base_writer = self._writer_pipeline(self.write_base)
            stage = self._base_writer.stages[0]
            if getattr(stage, "notice", None) and self.write_base.writer is None:
                # The default writer could not be had: later option sets use the fallback directly,
                # instead of trying (and failing) to load the default again.
                self.write_base = dataclasses.replace(self.write_base, writer=self.write_base.fallback)
            if self.settings.warmup:
                self._warm_up()
            self.state = "ready"
        except Exception as exc:
            self.state, self.error = "failed", _reason(exc)
            log.error("the models could not be loaded: %s", self.error, exc_info=not isinstance(exc, CaptionkitError))
        finally:
            self.load_seconds = time.perf_counter() - start
            self.ready.set()

    def _warm_up(self) -> None:
        with tempfile.TemporaryDirectory(prefix="captionkit-warmup-") as tmp:
            image = write_image(Path(tmp) / "warmup.png", size=(64, 48), seed=3)
            item = Item(id="warmup", media=[MediaRef(kind="image", url=str(image))])
            self.process([item], self._base_writer)

    def require_ready(self) -> None:
        if self.state == "loading":
            raise not_ready()
        if self.state == "failed":
            raise ServiceError(503, f"the models could not be loaded: {self.error}")

    @property
    def notices(self) -> list[str]:
        """What the operator should know, e.g. that a default model fell back to a model-free one."""
        found = list(self.describer.notices) if self.describer else []
        if self._base_writer:
            found += self._base_writer.notices
        return found

    def models(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for stage in [*(self.describer.stages if self.describer else []), *(self._base_writer.stages if self._base_writer else [])]:
            for attr, name in (("captioner", "caption"), ("engine", "ocr"), ("transcriber", "speech"), ("writer", "writer")):
                model = getattr(stage, attr, None)
                if model is not None:
                    out[name] = getattr(model, "model_id", None) or getattr(model, "name", None) or type(model).__name__
        return out

    # --- pipelines ------------------------------------------------------------------------------------------
    def write_settings(self, options: PostOptions | None) -> WriteSettings:
        """The server's write settings with this request's options laid over them."""
        changes = options.write_overrides() if options else {}
        n = changes.get("num_candidates")
        if n is not None and n > self.settings.max_candidates:
            raise bad_request(f"num_candidates is {n}; this server writes at most {self.settings.max_candidates}")
        if options and options.brand and self.write_base.brand:
            changes["brand"] = options.brand  # a brand fixed in the config yields to the request's
        if options and options.handle and self.write_base.handle:
            changes["handle"] = options.handle
        try:
            return dataclasses.replace(self.write_base, **changes)
        except (ConfigError, TypeError, ValueError) as exc:
            raise bad_request(str(exc).replace("--", "")) from None

    def writer_for(self, settings: WriteSettings) -> Pipeline:
        return self._writer_pipeline(settings)

    def _writer_pipeline(self, settings: WriteSettings) -> Pipeline:
        with self._writers_lock:
            if settings in self._writers:
                self._writers.move_to_end(settings)
                return self._writers[settings]
        try:
            pipeline = Pipeline.from_config(dataclasses.replace(self.config, write=settings, stages=["write"]))
        except ConfigError as exc:
            raise bad_request(str(exc).replace("--", "")) from None
        base = self._base_writer.stages[0] if self._base_writer else None
        stage = pipeline.stages[0]
        if base is not None and getattr(base, "index", None) is not None and \
                (settings.examples, settings.embedder) == (base.settings.examples, base.settings.embedder):
            stage.index = base.index  # type: ignore[attr-defined]  # the few-shot index is built once
        pipeline.setup()
        with self._writers_lock:
            self._writers[settings] = pipeline
            while len(self._writers) > WRITERS_KEPT:
                self._writers.popitem(last=False)
        return pipeline

    def process(self, items: Sequence[Item], writer: Pipeline | None, attempts: Sequence[int] | None = None,
                on_stage: StageHook | None = None) -> list[ItemResult]:
        """Describe ``items``, then write posts for those that succeeded: results like a full run's."""
        assert self.describer is not None
        with self.gate:
            results = self.describer.process(items, attempts)
            todo = [r for r in results if r.ok]
            if writer is None or not todo:
                return results
            if on_stage:
                on_stage("write")
            written = writer.process([_for_writing(r) for r in todo])
        for result, w in zip(todo, written):
            result.timings.update(w.timings)
            if w.ok:
                result.outputs.update(w.outputs)
            else:
                result.error = w.error
        return results

    # --- one request -------------------------------------------------------------------------------------
    def handle(self, media: MediaInput, options: PostOptions | None = None, *, write: bool = False,
               on_stage: StageHook | None = None) -> dict[str, Any]:
        """Check ``media``, describe it and (with ``write``) write posts: the API's and the UI's one entry point.

        Raises :class:`ServiceError`: 413/415/422 for bad input, 422 when a stage fails on this media.
        """
        self.require_ready()
        writer = self.writer_for(self.write_settings(options)) if write else None
        with tempfile.TemporaryDirectory(prefix="captionkit-request-") as tmp:
            if on_stage:
                on_stage("fetch" if media.url else "check")
            path = materialise(media, Path(tmp), self.settings, self.config.fetch)
            checked = check_media(path, media.shown, self.settings, self.config.limits)
            item = Item(id=uuid.uuid4().hex, metadata=options.metadata() if options else {},
                        media=[MediaRef(kind=checked.kind, url=str(path))])  # type: ignore[arg-type]
            if on_stage:
                on_stage("describe")
            [result] = self.process([item], writer, on_stage=on_stage)
            hide = {str(path): media.shown, tmp: "<upload>"}
            if result.error:
                raise ServiceError(422, f"{result.error.stage} failed: {_hide(result.error.reason, hide)}",
                                   {"stage": result.error.stage, "type": result.error.type})
            return self.record(result, write)

    def record(self, result: ItemResult, write: bool) -> dict[str, Any]:
        """The response body: headline fields, facts, models, timings, and per-stage details (no server paths)."""
        rec = api.describe_record(result)
        out: dict[str, Any] = {
            "id": result.id, "kind": rec["kind"], "description": rec["caption"], "ocr_text": rec["ocr_text"],
            "transcript": rec["transcript"], "language": rec["language"], "facts": rec["facts"],
            "models": rec["models"], "timings": rec["timings"],
            "details": {k: v for k, v in rec["details"].items() if k not in ("media", "write")},
            "notices": self.notices,
        }
        if write:
            written = result.outputs.get("write") or {}
            out["posts"] = written.get("posts") or []
            out["platform"] = written.get("platform")
            out["models"] = {**out["models"], "writer": written.get("model")}
        return out


def _for_writing(result: ItemResult) -> Item:
    """The item with what was described, as the write stage reads a described item."""
    described = {k: v for k, v in described_of(result.outputs).items() if v}
    item = result.item
    return Item(id=item.id, metadata={**item.metadata, **described}, media=item.media, reference=item.reference)


def _hide(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CaptionkitError) else f"{type(exc).__name__}: {exc}"
