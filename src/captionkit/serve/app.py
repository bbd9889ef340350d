"""The HTTP API (FastAPI) and the web UI (Gradio, at /ui) over one shared pipeline.

Imported only through :func:`captionkit.serve.create_app`, which checks the ``serve`` extra first.
``create_app(run_config, serve_settings)`` builds the app; ``captionkit serve`` runs it with uvicorn. Models
load once, in the background, when the server starts (``/readyz`` says when they are ready); every request
that needs them goes through one bounded :class:`~captionkit.serve.queue.Admission`.

Routes: ``GET /healthz`` (open), ``GET /readyz``, ``POST /v1/describe``, ``POST /v1/posts``, ``POST /v1/jobs``,
``GET /v1/jobs``, ``GET|DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/results?format=jsonl|csv``; the OpenAPI
document at ``/openapi.json`` and its pages at ``/docs``. Errors are ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from captionkit import __version__
from captionkit.config import RunConfig
from captionkit.extras import available, require
from captionkit.serve.errors import ServiceError, bad_request, unsupported
from captionkit.serve.intake import MediaInput
from captionkit.serve.jobs import FORMATS, JobManager
from captionkit.serve.queue import Admission
from captionkit.serve.schemas import (
    DescribeRequest,
    DescribeResponse,
    ErrorResponse,
    JobOptions,
    JobStatus,
    PostsRequest,
    PostsResponse,
)
from captionkit.serve.security import COOKIE, GuardMiddleware, KeyRing, ui_token
from captionkit.serve.service import CaptionService
from captionkit.serve.settings import ServeSettings

log = logging.getLogger("captionkit.serve")

_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (401, "Missing or wrong API key."),
    (413, "Upload, video or request too large."),
    (415, "Not an image, GIF or video (the content is sniffed), or an unsupported request body."),
    (422, "Invalid request, URL refused or not fetchable, or the pipeline failed on this media."),
    (503, "Models still loading, or the queue is full (see Retry-After)."),
    (504, "The request took longer than the server's request timeout."),
)}
_JOB_ERRORS = {**{s: _ERRORS[s] for s in (401, 413, 415, 422, 503)},
               404: {"model": ErrorResponse, "description": "No such job."},
               409: {"model": ErrorResponse, "description": "Results not ready yet, or the job is running."}}


def create_app(config: RunConfig, settings: ServeSettings, *, api_keys: tuple[str, ...] | None = None) -> Any:
    """The FastAPI app serving ``config``'s pipeline under ``settings``; keys default to the configured ones."""
    if not available("python_multipart"):  # the module's name before python-multipart 0.0.13
        require("multipart", "serve", "uploads (python-multipart)")
    keyring = KeyRing(settings.resolve_api_keys() if api_keys is None else tuple(api_keys))
    service = CaptionService(config, settings)
    admission = Admission(settings.concurrency, settings.queue_size, settings.request_timeout_s)
    jobs = JobManager(settings.jobs_path, service)

    @asynccontextmanager
    async def lifespan(app: Any):
        # Load in the background: /healthz answers at once, /readyz says when the models are in.
        threading.Thread(target=service.load, name="captionkit-load", daemon=True).start()
        jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(jobs.stop, settings.shutdown_timeout_s)
            admission.close()

    app = FastAPI(
        title="captionkit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Describe images, GIFs and videos (caption, visible text, speech) and write social posts "
                    "for them. Send `Authorization: Bearer KEY` or `X-API-Key: KEY` when the server has API keys.",
    )
    app.state.service, app.state.admission, app.state.jobs = service, admission, jobs
    _install_error_handlers(app)
    guarded = [Depends(_key_checker(keyring))]
    app.include_router(_health_routes(service, admission, settings, guarded))
    app.include_router(_media_routes(service, admission, guarded))
    app.include_router(_job_routes(service, jobs, guarded))
    app.include_router(_login_routes(keyring, settings))
    _mount_docs(app)

    if settings.ui:
        from captionkit.serve.ui import mount_ui

        mount_ui(app, service, admission, settings)

    # Outermost last: Host check, then CORS (only when configured), then the guard.
    app.add_middleware(GuardMiddleware, keyring=keyring, upload_limit=settings.max_upload_bytes,
                       job_limit=settings.max_job_upload_bytes, ui_prefix="/ui" if settings.ui else None,
                       strip_cors=not settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["authorization", "x-api-key", "content-type"], allow_credentials=False)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts(), www_redirect=False)
    return app


def _install_error_handlers(app: Any) -> None:
    """One JSON shape for every error, never a stack trace."""
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Any:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return JSONResponse({"error": str(exc.detail), "detail": None}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        return JSONResponse(bad_request("invalid request", _issues(exc.errors())).body(), status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Any:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (logged on the server)", "detail": None}, status_code=500)


def _key_checker(keyring: KeyRing) -> Any:
    """The dependency that checks the API key (Bearer or X-API-Key) when the server has keys."""
    x_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
    bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")

    async def require_key(key: str | None = Security(x_api_key),
                          token: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if keyring.enabled and not (keyring.check(key) or (token is not None and keyring.check(token.credentials))):
            raise ServiceError(401, "missing or wrong API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                               headers={"WWW-Authenticate": "Bearer"})

    return require_key


def _health_routes(service: CaptionService, admission: Admission, settings: ServeSettings, guarded: list) -> Any:
    """GET /healthz (open) and /readyz."""
    router = APIRouter()

    @router.get("/healthz", tags=["health"], summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", tags=["health"], dependencies=guarded, response_model=None,
             responses={401: _ERRORS[401], 503: _ERRORS[503]},
             summary="Readiness: the models are loaded (notices say which fell back to model-free ones).")
    async def readyz() -> Any:
        body = {"status": service.state, "error": service.error, "models": service.models(),
                "notices": service.notices, "load_seconds": service.load_seconds, "queue": admission.stats(),
                "ui": settings.ui}
        headers = {"Retry-After": "5"} if service.state == "loading" else None
        return JSONResponse(body, status_code=200 if service.state == "ready" else 503, headers=headers)
    return router


def _media_routes(service: CaptionService, admission: Admission, guarded: list) -> Any:
    """POST /v1/describe and /v1/posts, through the admission queue."""
    router = APIRouter()

    @router.post("/v1/describe", tags=["media"], dependencies=guarded, response_model=DescribeResponse,
              responses=_ERRORS, openapi_extra=_media_body(DescribeRequest),
              summary="Describe one image, GIF or video: caption, visible text, speech, facts.")
    async def describe(request: Request) -> Any:
        service.require_ready()
        media, _options, form = await _read_media_request(request, DescribeRequest)
        try:
            return await admission.run(functools.partial(service.handle, media))
        finally:
            if form is not None:
                await form.close()

    @router.post("/v1/posts", tags=["media"], dependencies=guarded, response_model=PostsResponse,
              responses=_ERRORS, openapi_extra=_media_body(PostsRequest),
              summary="Describe one media file and write post candidates for it.")
    async def posts(request: Request) -> Any:
        service.require_ready()
        media, options, form = await _read_media_request(request, PostsRequest)
        try:
            return await admission.run(functools.partial(service.handle, media, options, write=True))
        finally:
            if form is not None:
                await form.close()
    return router


def _job_routes(service: CaptionService, jobs: JobManager, guarded: list) -> Any:
    """Batch jobs: submit, list, status, results, delete."""
    router = APIRouter()

    @router.post("/v1/jobs", tags=["jobs"], dependencies=guarded, status_code=202, response_model=JobStatus,
              responses=_JOB_ERRORS, openapi_extra=_job_body(),
              summary="Start a batch job: a dataset (CSV, XLSX, JSONL, JSON, Parquet) and the media files it names.")
    async def submit_job(request: Request) -> Any:
        service.require_ready()
        if _content_type(request) != "multipart/form-data":
            raise unsupported("send the dataset as multipart/form-data (field `dataset`, media files as `media`)")
        form = await request.form(max_files=1001, max_fields=100)
        try:
            dataset = form.get("dataset")
            if not isinstance(dataset, UploadFile):
                raise bad_request("the `dataset` field must be a file upload (CSV, XLSX, JSONL, JSON or Parquet)")
            media = form.getlist("media")
            if any(not isinstance(m, UploadFile) for m in media):
                raise bad_request("every `media` field must be a file upload")
            fields = _fields(form, skip=("dataset", "media"))
            fields["map"] = [v for v in form.getlist("map") if isinstance(v, str) and v.strip()]
            options = _validate(JobOptions, fields)
            status = await run_in_threadpool(jobs.submit, dataset.file, dataset.filename,
                                             [(m.file, m.filename) for m in media], options)
            return JSONResponse(status, status_code=202)
        finally:
            await form.close()

    @router.get("/v1/jobs", tags=["jobs"], dependencies=guarded, responses={401: _ERRORS[401]},
             summary="The latest jobs (newest first).")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": await run_in_threadpool(jobs.list)}

    @router.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=guarded, response_model=JobStatus,
             responses=_JOB_ERRORS, summary="A job's status and progress, with links to its results.")
    async def job_status(job_id: str) -> Any:
        return await run_in_threadpool(jobs.status, job_id)

    @router.get("/v1/jobs/{job_id}/results", tags=["jobs"], dependencies=guarded, responses={**_JOB_ERRORS, 200: {
             "description": "The results file.", "content": {media: {} for media in FORMATS.values()}}},
             response_class=StreamingResponse, response_model=None,
             summary="Download results: JSON Lines (grows while the job runs) or CSV (when it is done).")
    async def job_results(job_id: str, format: Literal["jsonl", "csv"] = "jsonl") -> Any:
        path = await run_in_threadpool(jobs.results, job_id, format)
        return StreamingResponse(jobs.stream(job_id, path), media_type=FORMATS[format],
                                 headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"'})

    @router.delete("/v1/jobs/{job_id}", tags=["jobs"], dependencies=guarded, status_code=204, response_class=Response, response_model=None,
                responses=_JOB_ERRORS,
                summary="Delete a job that is not running, with its uploads and results.")
    async def delete_job(job_id: str) -> Any:
        await run_in_threadpool(jobs.delete, job_id)
        return Response(status_code=204)
    return router


def _mount_docs(app: Any) -> None:
    """Swagger UI at ``/docs`` from files installed with the serve extra (the fastapi-offline package ships
    Swagger UI 5), so that the page works without the internet; FastAPI's own page loads them from a CDN, which
    stays the fallback when the package is missing."""
    from fastapi.openapi.docs import get_swagger_ui_html

    spec = importlib.util.find_spec("fastapi_offline")
    static = Path(spec.submodule_search_locations[0]) / "static" if spec and spec.submodule_search_locations else None
    kw: dict[str, str] = {}
    if static is not None and (static / "swagger-ui-bundle.js").is_file():
        from fastapi.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=static), name="docs-assets")
        kw = {"swagger_js_url": "/docs-assets/swagger-ui-bundle.js", "swagger_css_url": "/docs-assets/swagger-ui.css",
              "swagger_favicon_url": "/docs-assets/favicon.png"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="captionkit API", **kw)


def _login_routes(keyring: KeyRing, settings: ServeSettings) -> Any:
    """The root redirect and the web UI's login/logout (a cookie holding an HMAC of the key)."""
    router = APIRouter()

    @router.get("/", include_in_schema=False, response_model=None)
    async def root() -> Any:
        return RedirectResponse("/ui/" if settings.ui else "/docs", status_code=307)

    @router.get("/login", include_in_schema=False, response_model=None)
    async def login_page() -> Any:
        if not keyring.enabled:
            return RedirectResponse("/ui/", status_code=303)
        return HTMLResponse(_LOGIN.format(message=""))

    @router.post("/login", include_in_schema=False, response_model=None)
    async def login(request: Request) -> Any:
        form = await request.form(max_files=0, max_fields=5)
        key = str(form.get("key") or "")
        if not keyring.check(key):
            return HTMLResponse(_LOGIN.format(message=html.escape("Wrong key.")), status_code=401)
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(COOKIE, ui_token(key), httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @router.get("/logout", include_in_schema=False, response_model=None)
    async def logout() -> Any:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response
    return router


# --- request parsing ------------------------------------------------------------------------------------------------


def _content_type(request: Any) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_media_request(request: Any, model: type) -> tuple[MediaInput, Any, Any]:
    """(media, options, form to close) from a multipart form (``file`` or ``url``) or a JSON body (``url``)."""
    ctype = _content_type(request)
    if ctype == "application/json":
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise bad_request("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise bad_request("the JSON body must be an object, e.g. {\"url\": \"https://...\"}")
        options = _validate(model, data)
        return _media_of(None, options), options, None
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise unsupported("send multipart/form-data (a `file`, or a `url` field) or application/json (with `url`)")
    form = await request.form(max_files=1, max_fields=40)
    try:
        options = _validate(model, _fields(form, skip=("file",)))
        return _media_of(form.get("file"), options), options, form
    except BaseException:
        await form.close()
        raise


def _media_of(upload: Any, options: Any) -> MediaInput:
    url = getattr(options, "url", None)
    if upload is not None and not isinstance(upload, UploadFile):
        raise bad_request("`file` must be a file upload (or send `url` instead)")
    if upload is not None and url:
        raise bad_request("give either a `file` or a `url`, not both")
    if upload is not None:
        return MediaInput(upload=upload.file, filename=upload.filename)
    if url:
        return MediaInput(url=url)
    raise bad_request("send the media as a `file` upload or give its `url`")


def _fields(form: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    """Text fields of a form; empty ones count as not given (HTML forms send every field)."""
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key in skip or key == "map":
            continue
        if not isinstance(value, str):
            raise bad_request(f"unexpected file in field `{key}`")
        if value.strip():
            fields[key] = value
    return fields


def _validate(model: type, data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise bad_request("invalid request", _issues(exc.errors())) from None


def _issues(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the rejected input (which may be large or sensitive)."""
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors]


# --- OpenAPI: bodies read by hand (multipart or JSON) --------------------------------------------------------------


def _media_body(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema()
    form = {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "The image, GIF or video (or give `url`)."},
        **schema["properties"]}}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": form},
        "application/json": {"schema": schema},
    }}}


def _job_body() -> dict[str, Any]:
    schema = JobOptions.model_json_schema()
    props = {
        "dataset": {"type": "string", "format": "binary", "description": "CSV, TSV, XLSX, JSONL, JSON or Parquet."},
        "media": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "Media files the dataset names by file name."},
        **schema["properties"],
    }
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["dataset"], "properties": props}}}}}


_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>captionkit: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.msg{{color:#b00020}}</style></head>
<body><h1>captionkit</h1><p>This server needs an API key.</p><p class="msg">{message}</p>
<form method="post" action="/login"><label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button></form></body></html>
"""
