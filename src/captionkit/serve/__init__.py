"""``captionkit serve``: the pipeline behind an HTTP API and a web UI (the ``serve`` extra).

Parts: ``settings`` (ServeSettings, the ``serve:`` config section), ``service`` (models loaded once; describe
and write for requests and jobs), ``intake`` (uploads and URLs to checked media files), ``queue`` (bounded
admission with timeouts), ``jobs`` (batch jobs on the resumable runner), ``security`` (API keys, UI login,
body caps), ``app`` (FastAPI routes) and ``ui`` (the Gradio page). FastAPI, uvicorn and Gradio are imported
only by ``app``/``ui``, so ``import captionkit.serve`` stays light.
"""

from __future__ import annotations

from typing import Any

from captionkit.serve.settings import ServeSettings, load_config_file


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`captionkit.serve.app.create_app` (imported on use: it needs the ``serve`` extra)."""
    from captionkit.extras import require

    require("fastapi", "serve", "captionkit serve")
    from captionkit.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["ServeSettings", "create_app", "load_config_file"]
