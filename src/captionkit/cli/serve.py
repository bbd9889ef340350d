"""``captionkit serve``: the HTTP API and the web UI over the pipeline (needs the ``serve`` extra)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from captionkit.cli import app
from captionkit.cli.common import (
    CAPTION,
    DECODING,
    FETCH,
    FRAMES,
    OCR,
    SPEECH,
    WRITE,
    WRITER_DECODING,
    ConfigOpt,
    build_config,
    options,
    split_csv,
)
from captionkit.config import RunConfig
from captionkit.errors import ConfigError
from captionkit.extras import require
from captionkit.serve.settings import KEYS_ENV, ServeSettings, load_config_file


@app.command(
    epilog="Examples:\n\n  captionkit serve                                   # http://127.0.0.1:8000/ui and /docs\n\n"
    "  captionkit serve --captioner basic --writer template --ocr none   # model-free, starts in seconds\n\n"
    "  captionkit serve --captioner blip-base --writer qwen2.5-0.5b-instruct --platform instagram -n 3\n\n"
    f"  {KEYS_ENV}=s3cret captionkit serve --host 0.0.0.0 --port 8080   # reachable from other machines: use keys\n\n"
    "  captionkit serve --config serve.yaml --api-key-file keys.txt --max-upload-mb 20 --queue-size 4\n\n"
    "  curl -F file=@photo.jpg -F brand=Acme -F num_candidates=3 http://127.0.0.1:8000/v1/posts\n\n"
    "The config file takes the keys of `captionkit run --config` plus a `serve:` section whose keys mirror\n"
    "these flags (see docs/serving.md). Stop with Ctrl-C: running requests get --shutdown-timeout seconds.",
)
@options(FRAMES, FETCH, CAPTION, DECODING, OCR, SPEECH, WRITE, WRITER_DECODING)
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on; anything but loopback lets other machines in. [default: 127.0.0.1]"),
    port: Optional[int] = typer.Option(None, "--port", min=0, max=65535, help="Port (0: any free port). [default: 8000]"),
    config: Optional[Path] = ConfigOpt,
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help=f"File with one API key per line; with ${KEYS_ENV} (comma-separated). No keys: the API is open."),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", min=0.001, help="Largest media upload or download. [default: 50]"),
    max_job_upload_mb: Optional[float] = typer.Option(None, "--max-job-upload-mb", min=0.001, help="Largest job request (dataset plus media). [default: 500]"),
    max_duration: Optional[float] = typer.Option(None, "--max-duration", min=0.1, help="Longest video accepted, in seconds. [default: 600]"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Requests using the models at once. [default: 1]"),
    queue_size: Optional[int] = typer.Option(None, "--queue-size", min=0, help="Requests that may wait; more get 503 with Retry-After. [default: 8]"),
    request_timeout: Optional[float] = typer.Option(None, "--request-timeout", min=0.1, help="Seconds a request may wait and work before 504. [default: 120]"),
    shutdown_timeout: Optional[float] = typer.Option(None, "--shutdown-timeout", min=0.1, help="Seconds running requests get to finish on shutdown. [default: 30]"),
    allow_private_urls: Optional[bool] = typer.Option(None, "--allow-private-urls/--no-allow-private-urls", help="Fetch URLs on loopback/private networks (turns the SSRF guard off). [default: no]"),
    cors_origin: Optional[list[str]] = typer.Option(None, "--cors-origin", help="Browser origin allowed to call the API (repeatable). [default: none, CORS off]"),
    allowed_host: Optional[list[str]] = typer.Option(None, "--allowed-host", help="Host header to accept (repeatable). [default: loopback names on loopback, else any]"),
    jobs_dir: Optional[Path] = typer.Option(None, "--jobs-dir", help="Where batch jobs keep uploads, results and state. [default: ~/.cache/captionkit/jobs]"),
    ui: Optional[bool] = typer.Option(None, "--ui/--no-ui", help="Mount the web UI at /ui. [default: on]"),
    warmup: Optional[bool] = typer.Option(None, "--warmup/--no-warmup", help="Run one small image through the models at start-up. [default: on]"),
    *,
    opts: dict[str, Any],
) -> None:
    """Serve the pipeline: an HTTP API (/v1/describe, /v1/posts, /v1/jobs; docs at /docs) and a web UI at /ui.

    Models load once at start-up and are shared by every request; /readyz says when they are ready and which
    defaults fell back to model-free ones (offline: the basic captioner and the template writer, as with run).
    """
    run_config, settings = load_config_file(config) if config else (RunConfig(), ServeSettings())
    cfg = build_config(run_config, opts=opts)
    settings = settings.replace(
        host=host, port=port, api_key_file=str(api_key_file) if api_key_file else None, max_upload_mb=max_upload_mb,
        max_job_upload_mb=max_job_upload_mb, max_duration_s=max_duration, concurrency=workers, queue_size=queue_size,
        request_timeout_s=request_timeout, shutdown_timeout_s=shutdown_timeout, allow_private_urls=allow_private_urls,
        cors_origins=tuple(split_csv(cors_origin) or ()) or None, allowed_hosts=tuple(split_csv(allowed_host) or ()) or None,
        jobs_dir=str(jobs_dir) if jobs_dir else None, ui=ui, warmup=warmup,
    )
    run_server(cfg, settings, Console(stderr=True))


def run_server(cfg: RunConfig, settings: ServeSettings, console: Console) -> None:
    """Build the app and run it with uvicorn until Ctrl-C or SIGTERM."""
    uvicorn = require("uvicorn", "serve", "captionkit serve")
    from captionkit.serve import create_app

    keys = settings.resolve_api_keys()
    try:
        settings.jobs_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"--jobs-dir {settings.jobs_path}: cannot create it ({exc.strerror or exc})") from None
    if not keys and not settings.loopback:
        console.print(f"[bold yellow]warning:[/] listening on {settings.host} with no API key: anyone who can reach "
                      f"this machine can use the server. Set ${KEYS_ENV} or --api-key-file.", highlight=False)
    application = create_app(cfg, settings, api_keys=keys)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    console.print(f"captionkit serving on http://{shown}:{settings.port} (API docs /docs"
                  f"{', web UI /ui' if settings.ui else ''}); API keys: "
                  f"{len(keys) if keys else 'none, the API is open'}; jobs in {settings.jobs_path}", highlight=False)
    server_config = uvicorn.Config(
        application, host=settings.host, port=settings.port, log_level="info", server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout_s),
        limit_concurrency=max(64, 4 * (settings.concurrency + settings.queue_size)),
    )
    try:
        uvicorn.Server(server_config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly: nothing to resume
        pass
    console.print("captionkit server stopped", highlight=False)
