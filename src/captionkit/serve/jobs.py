"""Batch jobs: an uploaded dataset run by the resumable :class:`~captionkit.pipeline.runner.Runner`.

Layout of ``jobs_dir``::

    <id>/job.json          id, name, status, counts at submission, options, times, error
    <id>/input/<dataset>   the uploaded dataset, and the media files uploaded with it
    <id>/out/              the runner's output: results.jsonl/.csv, state.sqlite, summary.json/.md

Jobs run one after another on a background thread, sharing the server's models. Progress is read from the
runner's ``state.sqlite``, so it survives a restart; a job that was queued or running when the server
stopped is resumed when it starts again (finished items are skipped). Job ids are 32 hex digits, checked
before any path is built from them.

A job reads only http(s) URLs (under the server's SSRF rule) and the files uploaded with it: a dataset row
naming any other path fails with that reason, and nothing else on the server is ever opened.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import queue
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from rich.console import Console

from captionkit.errors import CaptionkitError
from captionkit.io.readers import READERS, read_dataset
from captionkit.pipeline.runner import STATE, Runner
from captionkit.records import MEDIA_ERROR_KEY, Item, ItemResult
from captionkit.serve.errors import ServiceError, bad_request, too_large, unsupported
from captionkit.serve.intake import check_media, safe_name, save_stream
from captionkit.serve.schemas import JobOptions
from captionkit.serve.service import CaptionService

log = logging.getLogger("captionkit.serve")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIVE = ("queued", "running", "interrupted")  # resumed when the server starts
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
MAX_MEDIA_FILES = 1000


class JobManager:
    """Submit, run (one at a time, in a background thread), report and resume batch jobs."""

    def __init__(self, root: Path, service: CaptionService) -> None:
        self.root = root
        self.service = service
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume unfinished jobs (oldest first) and start the worker."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # uploads are private to the server's user
        for stale in self.root.glob(".incoming-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a submission cut short by a crash
        unfinished = sorted((m for m in self._all() if m["status"] in ACTIVE), key=lambda m: m["created"])
        for meta in unfinished:
            self._queue.put(meta["id"])
        if unfinished:
            log.warning("resuming %d unfinished job(s)", len(unfinished))
        self._thread = threading.Thread(target=self._work, name="captionkit-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Let the running job finish its current batch (it resumes at the next start), then stop."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("a job batch is still running after %.0f s; it is resumed at the next start", timeout)

    # --- submit -------------------------------------------------------------------------------------------
    def submit(self, dataset: BinaryIO, filename: str | None, media: Sequence[tuple[BinaryIO, str | None]],
               options: JobOptions) -> dict[str, Any]:
        """Save the upload, check it (format, columns, media files, size), queue it; the job's status."""
        self.service.require_ready()
        name = safe_name(filename, "dataset")
        if Path(name).suffix.lower() not in READERS:
            raise unsupported(f"{name}: not a dataset format captionkit reads ({', '.join(sorted(READERS))})")
        if len(media) > MAX_MEDIA_FILES:
            raise too_large(f"at most {MAX_MEDIA_FILES} media files per job")
        config = self.job_config(options)
        job_id = uuid.uuid4().hex
        incoming = self.root / f".incoming-{job_id}"
        (incoming / "input").mkdir(parents=True)
        try:
            settings = self.service.settings  # the whole request is capped by the guard middleware
            path = incoming / "input" / name
            save_stream(dataset, path, settings.max_job_upload_bytes, name, "--max-job-upload-mb")
            for stream, media_name in media:
                shown = safe_name(media_name, "media")
                target = incoming / "input" / shown
                if target.exists():
                    raise bad_request(f"two files named {shown} in one job")
                save_stream(stream, target, settings.max_upload_bytes, shown)
                check_media(target, shown, settings, self.service.config.limits)
            try:
                total = read_dataset(path, config.mapping).count()
            except CaptionkitError as exc:
                raise bad_request(_hide(str(exc), incoming / "input")) from None
            if total > settings.max_job_items:
                raise too_large(f"{name} has {total} rows; a job takes at most {settings.max_job_items}")
            meta = {"id": job_id, "name": name, "status": "queued", "created": time.time(), "total": total,
                    "options": options.model_dump(exclude_none=True), "started": None, "finished": None,
                    "error": None, "notices": [], "failures": []}
            _write_json(incoming / "job.json", meta)
            os.replace(incoming, self.root / job_id)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        self._queue.put(job_id)
        return self.status(job_id)

    def job_config(self, options: JobOptions) -> Any:
        """The run config of a job: the server's, with the job's post options and column mapping."""
        service = self.service
        write = service.write_settings(options)
        write = dataclasses.replace(write, brand=options.brand or write.brand, handle=options.handle or write.handle)
        try:
            mapping = service.config.mapping.with_overrides(options.map) if options.map else service.config.mapping
        except CaptionkitError as exc:
            raise bad_request(str(exc)) from None
        return dataclasses.replace(service.config, write=write, mapping=mapping, formats=["jsonl", "csv"],
                                   stages=[*service.describe_config.stages, "write"])

    # --- report -------------------------------------------------------------------------------------------
    def status(self, job_id: str) -> dict[str, Any]:
        meta = self._meta(job_id)
        done, failed = _counts(self._folder(job_id) / "out" / STATE)
        total = max(int(meta["total"]), done + failed)
        links = {"self": f"/v1/jobs/{job_id}", "results_jsonl": f"/v1/jobs/{job_id}/results?format=jsonl",
                 "results_csv": f"/v1/jobs/{job_id}/results?format=csv"}
        inputs = self._folder(job_id) / "input"
        failures = [{**f, "reason": _hide(str(f.get("reason", "")), inputs)} for f in meta.get("failures") or []]
        return {**{k: meta.get(k) for k in ("id", "status", "name", "created", "started", "finished", "error")},
                "total": total, "done": done, "failed": failed, "pending": total - done - failed,
                "progress": round((done + failed) / total, 4) if total else 1.0,
                "notices": meta.get("notices") or [], "failures": failures, "links": links}

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        metas = sorted(self._all(), key=lambda m: m["created"], reverse=True)[:limit]
        return [self.status(m["id"]) for m in metas]

    def results(self, job_id: str, fmt: str) -> Path:
        """The results file of a job; JSON Lines grows while it runs, CSV is written when it is done."""
        if fmt not in FORMATS:
            raise bad_request(f"format must be one of {', '.join(FORMATS)}")
        meta = self._meta(job_id)
        path = self._folder(job_id) / "out" / f"results.{fmt}"
        if not path.is_file() or (fmt == "csv" and meta["status"] != "done"):
            raise ServiceError(409, f"results are not ready: the job is {meta['status']}",
                               {"status": meta["status"]}, headers={"Retry-After": "2"})
        return path

    def stream(self, job_id: str, path: Path) -> Iterator[bytes]:
        """The lines of a results file with the job's folder left out of paths (``red.png``, not where the
        server keeps it)."""
        inputs = self._folder(job_id) / "input"
        with path.open("r", encoding="utf-8", newline="") as fh:
            for line in fh:
                yield _hide(line, inputs).encode("utf-8")

    def delete(self, job_id: str) -> None:
        meta = self._meta(job_id)
        if meta["status"] == "running" or self.current == job_id:
            raise ServiceError(409, "the job is running; delete it when it has finished")
        shutil.rmtree(self._folder(job_id), ignore_errors=True)

    # --- paths ----------------------------------------------------------------------------------------------
    def _folder(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise ServiceError(404, "no such job", {"id": "job ids are 32 hexadecimal digits"})
        return self.root / job_id

    def _meta(self, job_id: str) -> dict[str, Any]:
        try:
            return json.loads((self._folder(job_id) / "job.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ServiceError(404, "no such job") from None

    def _all(self) -> Iterator[dict[str, Any]]:
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if JOB_ID.fullmatch(entry.name):
                try:
                    yield json.loads((entry / "job.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue

    def _update(self, job_id: str, **changes: Any) -> None:
        path = self._folder(job_id) / "job.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        meta.update(changes)
        _write_json(path, meta)

    # --- run ------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        self.service.ready.wait()
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stop.is_set():
                break
            if self.service.state != "ready" or not (self._folder(job_id) / "job.json").is_file():
                continue  # deleted while queued, or no models: it stays queued for the next start
            self.current = job_id
            try:
                self._run(job_id)
            finally:
                self.current = None

    def _run(self, job_id: str) -> None:
        meta = self._meta(job_id)
        folder = self._folder(job_id)
        self._update(job_id, status="running", started=meta.get("started") or time.time(), error=None)
        try:
            config = self.job_config(JobOptions.model_validate(meta["options"]))
            writer = self.service.writer_for(config.write)
            dataset = read_dataset(folder / "input" / meta["name"], config.mapping)
            pipeline = _JobPipeline(self.service, writer)
            runner = Runner(pipeline, folder / "out", config, progress=False, console=Console(file=io.StringIO()))
            summary = runner.run(_confined(dataset, folder / "input", self._stop), total=meta["total"], name=meta["name"])
        except Exception as exc:
            reason = _hide(str(exc), folder) if isinstance(exc, (CaptionkitError, ServiceError)) else "internal error"
            log.error("job %s failed: %s", job_id, reason, exc_info=not isinstance(exc, (CaptionkitError, ServiceError)))
            self._update(job_id, status="failed", finished=time.time(), error=reason)
            return
        finished = summary.done + summary.failed >= meta["total"]
        status = "done" if finished else "interrupted"
        self._update(job_id, status=status, finished=time.time() if finished else None,
                     notices=summary.notices, failures=summary.failures)


class _JobPipeline:
    """What the Runner needs of a pipeline, over the server's shared models."""

    def __init__(self, service: CaptionService, writer: Any) -> None:
        self.service = service
        self.writer = writer
        assert service.describer is not None
        self.batch_size = max(service.describer.batch_size, writer.batch_size)

    @property
    def notices(self) -> list[str]:
        return self.service.notices

    def process(self, items: Sequence[Item], attempts: Sequence[int] | None = None) -> list[ItemResult]:
        return self.service.process(items, self.writer, attempts)


def _confined(items: Iterable[Item], folder: Path, stop: threading.Event) -> Iterator[Item]:
    """The dataset's items, each allowed only http(s) URLs and files inside ``folder``; stops when asked."""
    root = folder.resolve()
    for item in items:
        if stop.is_set():
            return
        refused = [ref.url for ref in item.media if not _allowed(ref.url, root)]
        if refused:
            reason = (f"{_hide(refused[0], folder)!r} is not allowed: a job reads only http(s) URLs and the "
                      "media files uploaded with it")
            item = Item(id=item.id, metadata={**item.metadata, MEDIA_ERROR_KEY: reason}, media=[],
                        reference=item.reference)
        yield item


def _allowed(location: str, root: Path) -> bool:
    scheme = urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        return True
    if len(scheme) > 1:  # file:, data:, ftp:... (one letter would be a Windows drive)
        return False
    try:
        return Path(location).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _counts(state: Path) -> tuple[int, int]:
    """(done, failed) from a runner's state.sqlite, read-only (the runner may be writing it)."""
    if not state.is_file():
        return 0, 0
    try:
        db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
        try:
            rows = dict(db.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return 0, 0
    return int(rows.get("done", 0)), int(rows.get("failed", 0))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".job.", suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def _hide(text: str, folder: Path) -> str:
    """Messages name files as the client uploaded them, not where the server keeps them."""
    for prefix in (str(folder.resolve()) + os.sep, str(folder) + os.sep, str(folder.resolve()), str(folder)):
        text = text.replace(prefix, "")
    return text
