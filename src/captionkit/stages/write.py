"""``write`` stage: posts for each item from its description, visible text, transcript and metadata.

Prompts for a whole batch go to the writer in one call (local models batch them with left padding;
the HTTP writer sends them concurrently). Over-long posts are regenerated with the limit restated, up
to ``max_regenerations`` times, and then trimmed at a sentence or word boundary.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from captionkit.config import RunConfig
from captionkit.errors import MissingExtraError, ModelUnavailableError
from captionkit.io.results import described_of
from captionkit.models import catalog
from captionkit.models.settings import WriteSettings
from captionkit.pipeline.stage import Work, register_stage
from captionkit.postprocess import Post, finish_post
from captionkit.prompts.compose import build_context, render_prompt
from captionkit.prompts.platforms import get_platform
from captionkit.writers.base import Prompt, Writer, load_writer

log = logging.getLogger("captionkit")
DESCRIBED_KEYS = ("description", "ocr_text", "transcript", "language")


def load_writer_with_fallback(settings: WriteSettings) -> tuple[Writer, str | None]:
    """The configured writer; for the *default* one only, the fallback (with a notice) when it cannot be had."""
    spec = settings.writer or catalog.default("writer").name
    try:
        return load_writer(spec, settings), None
    except (ModelUnavailableError, MissingExtraError) as exc:
        if settings.writer is not None or not settings.fallback:
            raise
        notice = (
            f"the default writer {spec!r} could not be loaded ({exc}). Using the model-free "
            f"{settings.fallback!r} writer instead: posts follow a fixed pattern. For model-written posts, "
            f"run `captionkit models pull {spec}` where the model hub is reachable, or pass --writer with a "
            f"local model folder or the URL of an OpenAI-compatible server."
        )
        log.warning(notice)
        return load_writer(settings.fallback, settings), notice


def described_for(work: Work) -> dict[str, Any]:
    """From this run's describe stages when they ran, else from the item (``captionkit write`` input)."""
    if any(stage in work.outputs for stage in ("caption", "ocr", "transcribe")):
        return described_of(work.outputs)
    return {key: work.item.metadata.get(key) for key in DESCRIBED_KEYS}


@register_stage("write")
class WriteStage:
    name = "write"

    def __init__(self, config: RunConfig) -> None:
        self.settings = config.write
        self.batch_size = self.settings.batch_size
        self.rules = get_platform(self.settings.platform)  # an unknown --platform fails now, not per item
        self.writer: Writer | None = None
        self.notice: str | None = None
        self.index: Any = None

    def setup(self) -> None:
        if self.writer is None:
            self.writer, self.notice = load_writer_with_fallback(self.settings)
        if self.settings.examples and self.index is None:
            from captionkit.retrieval import ExampleIndex, load_examples

            self.index = ExampleIndex(load_examples(self.settings.examples), embedder=self.settings.embedder)

    def process(self, works: list[Work]) -> list[Any]:
        self.setup()
        assert self.writer is not None
        contexts = [self._context(w) for w in works]
        prompts = [render_prompt(ctx, self.settings) for ctx in contexts]
        n = self.settings.num_candidates
        raws = self.writer.write(prompts, self.settings.generation, n)
        posts = [[finish_post(r, self.rules, ctx) for r in rs] for rs, ctx in zip(raws, contexts)]
        regenerated = self._regenerate_long(prompts, contexts, posts)
        return [
            {
                "platform": self.rules.name,
                "prompt": {"system": p.system, "user": p.user},
                "posts": [post.to_dict() for post in ps],
                "model": self.writer.model_id,
                "examples": [e.get("id") for e in ctx.get("examples", [])],
                "regenerated": regenerated.get(i, 0),
                **({"fallback_from": self.settings.writer or catalog.default("writer").name} if self.notice else {}),
            }
            for i, (p, ps, ctx) in enumerate(zip(prompts, posts, contexts))
        ]

    def _context(self, work: Work) -> dict[str, Any]:
        described = described_for(work)
        examples: list[dict[str, Any]] = []
        if self.index is not None and self.settings.k:
            query = " ".join(filter(None, [described.get("description"), described.get("ocr_text")]))
            nearest = self.index.nearest(query, self.settings.k, exclude_id=work.item.id, reference=work.item.reference)
            examples = [dataclasses.asdict(e) for e in nearest]
        return build_context(work.item, described, self.settings, examples)

    def _regenerate_long(self, prompts: list[Prompt], contexts: list[dict[str, Any]],
                         posts: list[list[Post]]) -> dict[int, int]:
        """Ask again, with the limit restated, for prompts whose posts had to be trimmed."""
        assert self.writer is not None
        counts: dict[int, int] = {}
        limit = self.rules.max_chars
        for _ in range(self.settings.max_regenerations if limit else 0):
            todo = [i for i, ps in enumerate(posts) if any(p.trimmed for p in ps)]
            if not todo:
                break
            shorter = [dataclasses.replace(prompts[i], user=prompts[i].user + f"\n\nKeep the post under {limit} characters.")
                       for i in todo]
            again = self.writer.write(shorter, self.settings.generation, self.settings.num_candidates)
            for i, raws in zip(todo, again):
                counts[i] = counts.get(i, 0) + 1
                fresh = [finish_post(r, self.rules, contexts[i]) for r in raws]
                posts[i] = [new if old.trimmed and not new.trimmed else old for old, new in zip(posts[i], fresh)]
        return counts
