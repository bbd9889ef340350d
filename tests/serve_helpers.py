"""Helpers for the serving tests: a real uvicorn server on 127.0.0.1 in a thread, and a test captioner.

The ``serve-test`` captioner is a real backend registered through the captioner registry (no mock of any
local component): it captions from the image size, sleeps for images of ``SLOW_WIDTH`` / ``STUCK_WIDTH``
pixels and raises for ``FAIL_WIDTH``, so the load, timeout and failure tests can pick behaviour by image.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from PIL import Image

from captionkit.captioners.base import CaptionerBase, register_captioner
from captionkit.config import RunConfig
from captionkit.media.generate import write_image
from captionkit.models.settings import CaptionSettings, OCRSettings, SpeechSettings, WriteSettings
from captionkit.serve import ServeSettings, create_app

SLOW_WIDTH, SLOW_SECONDS = 43, 0.6
STUCK_WIDTH, STUCK_SECONDS = 47, 3.5
FAIL_WIDTH = 41


@register_captioner("serve-test", description="Test captioner: sleeps or fails for some image widths.")
class ServeTestCaptioner(CaptionerBase):
    backend = "serve-test"

    def _caption_batch(self, images: list[Image.Image], prompt: str | None, gen: Any) -> list[str]:
        out = []
        for image in images:
            if image.width == SLOW_WIDTH:
                time.sleep(SLOW_SECONDS)
            elif image.width == STUCK_WIDTH:
                time.sleep(STUCK_SECONDS)
            elif image.width == FAIL_WIDTH:
                raise RuntimeError("the test model failed on this image")
            out.append(f"a test picture of {image.width} by {image.height} pixels")
        return out


def pipeline_config(captioner: str = "serve-test", ocr: str = "none") -> RunConfig:
    """Offline and quick: no model download, one item per batch (so jobs stop between items)."""
    return RunConfig(
        caption=CaptionSettings(model=captioner, batch_size=1),
        ocr=OCRSettings(engine=ocr),
        speech=SpeechSettings(model="none"),
        write=WriteSettings(writer="template", batch_size=1),
    )


class LiveServer:
    """``create_app(...)`` served by uvicorn on a free port of 127.0.0.1 until :meth:`stop`."""

    def __init__(self, config: RunConfig, settings: ServeSettings, api_keys: Sequence[str] = ()) -> None:
        self.app = create_app(config, settings, api_keys=tuple(api_keys))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, ready: bool = True, headers: dict[str, str] | None = None, timeout: float = 60) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            assert self.thread.is_alive(), "the server thread died while starting"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        if ready:
            wait_ready(self.url, headers, deadline - time.monotonic())
        return self

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the server did not shut down"
        self.sock.close()


def wait_ready(url: str, headers: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/readyz", headers=headers, timeout=5)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 503 and r.json()["status"] == "loading", r.text
        assert time.monotonic() < deadline, "the models did not load in time"
        time.sleep(0.05)


@contextlib.contextmanager
def live_server(config: RunConfig, settings: ServeSettings, api_keys: Sequence[str] = (),
                headers: dict[str, str] | None = None) -> Iterator[LiveServer]:
    server = LiveServer(config, settings, api_keys).start(headers=headers)
    try:
        yield server
    finally:
        server.stop()


def image_bytes(folder: Path, name: str = "photo.png", size: tuple[int, int] = (160, 120), text: str | None = None,
                seed: int = 1) -> bytes:
    return write_image(folder / name, size=size, text=text, seed=seed).read_bytes()
