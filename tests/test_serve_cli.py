"""``captionkit serve`` as a user runs it: the real CLI in a subprocess, with real (tiny, random) transformers
models for the captioner and the writer, a config file with a ``serve:`` section, and a clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import CLI, run_cli
from serve_helpers import image_bytes
from tiny_captioners import save_blip
from tiny_lm import build_tiny_lm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_real_models_and_clean_shutdown(tmp_path_factory, tmp_path):
    blip = save_blip(tmp_path_factory.mktemp("blip") / "m")
    lm = build_tiny_lm(tmp_path_factory.mktemp("lm") / "m", max_positions=1024)
    config = tmp_path / "serve.yaml"
    config.write_text("write: {platform: linkedin}\nserve: {queue_size: 2, max_candidates: 4, request_timeout_s: 90}\n")
    port = _free_port()
    args = [*CLI, "serve", "--config", str(config), "--port", str(port), "--captioner", str(blip), "--max-new-tokens", "6",
            "--writer", str(lm), "--writer-max-new-tokens", "12", "--ocr", "none", "--speech-model", "none",
            "--no-ui", "--jobs-dir", str(tmp_path / "jobs")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "".join(log)
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "".join(log)
            time.sleep(0.2)
        body = ready.json()
        assert body["models"]["caption"] == str(blip) and body["models"]["writer"] == str(lm)
        assert body["queue"]["queue_size"] == 2 and body["notices"] == []

        r = httpx.post(f"{url}/v1/posts", files={"file": ("p.png", image_bytes(tmp_path, size=(64, 48)))},
                       data={"brand": "Acme", "num_candidates": "2"}, timeout=90)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["platform"] == "linkedin" and out["models"] == {"caption": str(blip), "writer": str(lm)}
        assert out["description"] and len(out["posts"]) == 2
        assert all(p["chars"] == len(p["text"]) for p in out["posts"])
        too_many = httpx.post(f"{url}/v1/posts", files={"file": ("p.png", image_bytes(tmp_path, size=(64, 48)))},
                              data={"num_candidates": "5"}, timeout=90)
        assert too_many.status_code == 422 and "at most 4" in too_many.json()["error"]
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(5)
    text = "".join(log)
    assert code == 0, text
    assert "captionkit serving on" in text and "Application shutdown complete" in text
    assert "captionkit server stopped" in text
    assert "Traceback" not in text


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("serve: {api_keys: [abc]}\n", "cannot be written in a config file"),
    ("serve: {prot: 80}\n", "unknown key(s) prot"),
    ("serve: {queue_size: -1}\n", "--queue-size"),
    ("serve: 3\n", "serve must be a mapping"),
    ("captioner: basic\n", "unknown key(s) captioner"),
])
def test_serve_config_errors_name_the_key(tmp_path, yaml_text, message):
    config = tmp_path / "serve.yaml"
    config.write_text(yaml_text)
    res = run_cli("serve", "--config", str(config), "--port", "0", timeout=60)
    assert res.returncode == 2 and message in res.stderr, res.stderr


def test_serve_help_lists_server_and_backend_flags():
    res = run_cli("serve", "--help")
    assert res.returncode == 0
    for flag in ("--host", "--port", "--api-key-file", "--max-upload-mb", "--queue-size", "--request-timeout",
                 "--allow-private-urls", "--cors-origin", "--jobs-dir", "--no-ui", "--captioner", "--writer", "--ocr",
                 "--writer-max-new-tokens", "--platform"):
        assert flag in res.stdout, flag
    assert sys.executable  # the CLI ran with this interpreter
