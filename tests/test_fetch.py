"""Tests for captionkit.media.fetch against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from captionkit.errors import ConfigError, FetchError, MediaError
from captionkit.media import fetch as fetchmod
from captionkit.media.fetch import FetchPolicy, MediaCache, default_cache_dir, fetch, resolve_media


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 90)).save(buf, format=fmt)
    return buf.getvalue()


PNG = _image_bytes("PNG")
JPEG = _image_bytes("JPEG")
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4  # the fetcher never decodes it
BIG = b"x" * 5000
SLOW_SECONDS = 1.0


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the shared client really reuses connections
    server: MediaServer

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        key = self.path  # per full path+query, so tests can use fresh counters via ?t=...
        with self.server.lock:
            self.server.hits[key] += 1
            self.server.hits_by_route[parts.path] += 1
            self.server.headers_seen[key] = self.headers
            count = self.server.hits[key]
        route = ROUTES.get(parts.path)
        if route is None and parts.path.startswith("/chain/"):
            route = chain
        if route is None:
            self.reply(404, b"not here", "text/plain")
            return
        route(self, count)

    def reply(
        self, status: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.reply(status, b"", "text/plain", {"Location": location})


def chain(h: Handler, count: int) -> None:
    """/chain/N redirects N times (relative Locations) before serving the PNG."""
    n = int(urlsplit(h.path).path.rsplit("/", 1)[1])
    if n == 0:
        h.reply(200, PNG, "image/png")
    else:
        h.redirect(f"/chain/{n - 1}", 301 if n % 2 else 307)


def no_length(h: Handler, count: int) -> None:
    # Close-delimited body: the client cannot know the size before reading.
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True
    h.wfile.write(BIG)


def chunked(h: Handler, count: int) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "video/mp4")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for i in range(0, len(BIG), 500):
        piece = BIG[i : i + 500]
        h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    h.wfile.write(b"0\r\n\r\n")


def truncated(h: Handler, count: int) -> None:
    # Announces 1000 bytes, sends 100 and hangs up.
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", "1000")
    h.end_headers()
    h.wfile.write(PNG[:100])
    h.close_connection = True


def slow(h: Handler, count: int) -> None:
    time.sleep(SLOW_SECONDS)
    h.reply(200, PNG, "image/png")


def drip(h: Handler, count: int) -> None:
    # Headers and a first chunk, then nothing for a long time: a download caught mid-way.
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.write(b"p" * 1000)
    h.wfile.flush()
    time.sleep(10)


def gzip_bomb(h: Handler, count: int) -> None:
    body = gzip.compress(b"\0" * 200_000)
    h.reply(200, body, "image/png", {"Content-Encoding": "gzip"})


def flaky(h: Handler, count: int) -> None:
    if count <= 2:
        h.reply(500, b"oops", "text/plain")
    else:
        h.reply(200, PNG, "image/png")


def rate_limited(h: Handler, count: int) -> None:
    if count == 1:
        h.reply(429, b"slow down", "text/plain", {"Retry-After": "2"})
    else:
        h.reply(200, PNG, "image/png")


def rate_limited_date(h: Handler, count: int) -> None:
    if count == 1:
        when = email.utils.formatdate(time.time() + 5, usegmt=True)
        h.reply(503, b"busy", "text/plain", {"Retry-After": when})
    else:
        h.reply(200, PNG, "image/png")


def rate_limited_forever(h: Handler, count: int) -> None:
    if count == 1:
        h.reply(429, b"go away", "text/plain", {"Retry-After": "86400"})
    else:
        h.reply(200, PNG, "image/png")


def request_timeout_once(h: Handler, count: int) -> None:
    if count == 1:
        h.reply(408, b"", "text/plain")
    else:
        h.reply(200, PNG, "image/png")


def redirect_private(h: Handler, count: int) -> None:
    h.redirect(f"http://localhost:{h.server.server_address[1]}/img.png")


ROUTES: dict[str, Callable[[Handler, int], None]] = {
    "/img.png": lambda h, c: h.reply(200, PNG, "image/png"),
    "/photo.jpg": lambda h, c: h.reply(200, JPEG, "image/jpeg; charset=binary"),
    "/clip": lambda h, c: h.reply(200, MP4, "video/mp4"),
    "/notype": lambda h, c: h.reply(200, PNG, None),
    "/octet": lambda h, c: h.reply(200, PNG, "Application/Octet-Stream"),
    "/page.html": lambda h, c: h.reply(200, b"<html>login</html>", "text/html; charset=utf-8"),
    "/forbidden": lambda h, c: h.reply(403, b"no", "text/plain"),
    "/always500": lambda h, c: h.reply(500, b"broken", "text/plain"),
    "/empty": lambda h, c: h.reply(200, b"", "image/png"),
    "/big-honest": lambda h, c: h.reply(200, BIG, "image/png"),
    "/big-no-length": no_length,
    "/big-chunked": chunked,
    "/truncated": truncated,
    "/slow": slow,
    "/drip": drip,
    "/gzip-bomb": gzip_bomb,
    "/flaky": flaky,
    "/rate-limited": rate_limited,
    "/rate-limited-date": rate_limited_date,
    "/rate-limited-forever": rate_limited_forever,
    "/408": request_timeout_once,
    "/loop-a": lambda h, c: h.redirect("/loop-b"),
    "/loop-b": lambda h, c: h.redirect("/loop-a"),
    "/to-ftp": lambda h, c: h.redirect("ftp://example.com/x.png"),
    "/to-file": lambda h, c: h.redirect("file:///etc/passwd"),
    "/to-private": redirect_private,
}


class MediaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.hits_by_route: Counter[str] = Counter()
        self.headers_seen: dict[str, Any] = {}  # email.message.Message: case-insensitive

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on slow routes is what several tests do on purpose

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.hits_by_route.clear()
            self.headers_seen.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[MediaServer]:
    srv = MediaServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def srv(server: MediaServer) -> MediaServer:
    server.reset()
    return server


@pytest.fixture
def cache(tmp_path: Path) -> MediaCache:
    return MediaCache(tmp_path / "cache")


@pytest.fixture
def policy() -> FetchPolicy:
    return FetchPolicy(timeout=2.0, retries=2, backoff=0.001, max_bytes=1000)


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff sleeps instead of waiting them."""
    seen: list[float] = []
    monkeypatch.setattr(fetchmod, "_sleep", seen.append)
    return seen


def cache_files(cache: MediaCache) -> list[Path]:
    return sorted(p for p in cache.root.rglob("*") if p.is_file()) if cache.root.exists() else []


def fetch_error(url: str, policy: FetchPolicy, cache: MediaCache, **kw: Any) -> str:
    with pytest.raises(FetchError) as info:
        fetch(url, policy, cache, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert url in message
    assert cache.get(url) is None
    return message


# --------------------------------------------------------------------------------------------
# Successful downloads and the cache
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "suffix"),
    [
        ("/img.png", PNG, ".png"),
        ("/photo.jpg", JPEG, ".jpg"),
        ("/clip", MP4, ".mp4"),
        ("/notype", PNG, ".bin"),  # a missing Content-Type is allowed: content is sniffed later
        ("/octet", PNG, ".bin"),
    ],
)
def test_downloads_body_with_suffix_and_sidecar(
    srv: MediaServer, cache: MediaCache, path: str, body: bytes, suffix: str
) -> None:
    url = srv.url(path)
    got = fetch(url, FetchPolicy(max_bytes=10_000), cache)
    assert got.read_bytes() == body
    assert got.suffix == suffix
    assert got.parent.parent == cache.root
    meta = cache.metadata(url)
    assert meta is not None
    assert meta["url"] == url and meta["bytes"] == len(body) and meta["suffix"] == suffix
    assert meta["fetched_at"].endswith("+00:00")


def test_downloaded_image_opens_with_pillow(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    with Image.open(fetch(srv.url("/photo.jpg"), policy, cache)) as im:
        assert im.size == (8, 6)


def test_cache_hit_makes_no_request(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/img.png")
    first = fetch(url, policy, cache)
    second = fetch(url, policy, cache)
    assert first == second
    assert srv.hits["/img.png"] == 1


def test_cache_keys_differ_per_url(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    a = fetch(srv.url("/img.png?v=1"), policy, cache)
    b = fetch(srv.url("/img.png?v=2"), policy, cache)
    assert a != b and a.read_bytes() == b.read_bytes() == PNG
    assert srv.hits_by_route["/img.png"] == 2
    assert cache.key("http://a/x") != cache.key("http://a/x?")


def test_sends_user_agent(srv: MediaServer, cache: MediaCache) -> None:
    fetch(srv.url("/img.png"), FetchPolicy(user_agent="tester/9"), cache)
    assert srv.headers_seen["/img.png"]["User-Agent"] == "tester/9"
    fetch(srv.url("/img.png?2"), FetchPolicy(), cache)
    assert srv.headers_seen["/img.png?2"]["User-Agent"].startswith("captionkit/")


def test_explicit_client_is_used(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    with httpx.Client(follow_redirects=True) as client:  # our hand-rolled redirects still apply
        got = fetch(srv.url("/chain/2"), policy, cache, client=client)
    assert got.read_bytes() == PNG


def test_default_cache_location_follows_environment(
    srv: MediaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTIONKIT_CACHE_DIR", str(tmp_path / "ck"))
    got = fetch(srv.url("/img.png"), FetchPolicy())
    assert got.is_relative_to(tmp_path / "ck" / "media")
    monkeypatch.delenv("CAPTIONKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "captionkit" / "media"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "captionkit" / "media"


def test_cache_put_get_clear(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "c")
    url = "https://example.com/a/b?format=jpg"
    assert cache.get(url) is None
    path = cache.put(url, JPEG, "image/jpeg")
    assert path == cache.path_for(url, "image/jpeg") and path.suffix == ".jpg"
    assert cache.get(url) == path and path.read_bytes() == JPEG
    assert cache.put("https://example.com/v.mp4", MP4).suffix == ".mp4"  # suffix from the URL
    keep = tmp_path / "c" / "README"  # clear() only removes what the cache created
    keep.write_text("mine")
    cache.clear()
    assert cache.get(url) is None and keep.exists()
    assert [p.name for p in cache_files(cache)] == ["README"]


def test_cache_treats_damaged_entries_as_misses(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path)
    url = "https://example.com/x.png"
    body = cache.put(url, PNG, "image/png")
    body.write_bytes(PNG[:10])  # truncated body (e.g. power loss before the data hit the disk)
    assert cache.get(url) is None
    cache.put(url, PNG, "image/png")
    sidecar = body.with_suffix(".json")
    sidecar.write_text("{not json")
    assert cache.get(url) is None
    sidecar.write_text(json.dumps({"url": "https://other/", "bytes": len(PNG), "suffix": ".png"}))
    assert cache.get(url) is None


def test_concurrent_fetches_of_one_url(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/img.png")
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: fetch(url, policy, cache), range(16)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == PNG
    # Racing writers each replace the entry atomically; no temporary file survives.
    assert [p.suffix for p in cache_files(cache)] == [".json", ".png"]


def test_shared_client_is_reused_and_renewed_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    client = fetchmod.shared_client()
    assert fetchmod.shared_client() is client
    monkeypatch.setattr(fetchmod, "_client_pid", -1)  # as if this process were a forked child
    renewed = fetchmod.shared_client()
    assert renewed is not client
    client.close()


# --------------------------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------------------------


def test_follows_redirect_chain(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/chain/5")
    assert fetch(url, policy, cache).read_bytes() == PNG
    assert cache.get(url) is not None  # cached under the URL asked for, not the final one


def test_too_many_redirects(srv: MediaServer, cache: MediaCache) -> None:
    url = srv.url("/chain/3")
    message = fetch_error(url, FetchPolicy(max_redirects=2), cache)
    assert "too many redirects (more than 2)" in message
    assert f"(redirected to {srv.url('/chain/0')})" in message  # the hop it would not follow


def test_redirect_loop(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/loop-a")
    message = fetch_error(url, policy, cache)
    assert f"redirect loop (back to {url})" in message
    assert srv.hits["/loop-a"] == 1  # detected, not retried


@pytest.mark.parametrize(("path", "scheme"), [("/to-ftp", "ftp"), ("/to-file", "file")])
def test_redirect_to_other_scheme_refused(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, path: str, scheme: str
) -> None:
    message = fetch_error(srv.url(path), policy, cache)
    assert f"unsupported URL scheme '{scheme}'" in message and "redirected to" in message


# --------------------------------------------------------------------------------------------
# HTTP errors and retries
# --------------------------------------------------------------------------------------------


def test_404_not_retried(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, delays: list[float]
) -> None:
    url = srv.url("/nope.jpg")
    assert fetch_error(url, policy, cache) == f"HTTP 404 Not Found: {url}"
    assert srv.hits["/nope.jpg"] == 1 and delays == []


def test_403_not_retried(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/forbidden")
    assert fetch_error(url, policy, cache) == f"HTTP 403 Forbidden: {url}"
    assert srv.hits["/forbidden"] == 1


def test_500_then_200_retries_and_succeeds(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, delays: list[float]
) -> None:
    got = fetch(srv.url("/flaky"), policy, cache)
    assert got.read_bytes() == PNG
    assert srv.hits["/flaky"] == 3  # two 500s, then success; retries=2 was just enough
    assert len(delays) == 2
    # Exponential backoff with at most 10 % jitter.
    assert 0.001 <= delays[0] <= 0.0011 and 0.002 <= delays[1] <= 0.0022


def test_always_500_gives_up(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/always500")
    message = fetch_error(url, policy, cache)
    assert message == f"HTTP 500 Internal Server Error (3 attempts): {url}"
    assert srv.hits["/always500"] == 3
    assert cache_files(cache) == []


def test_no_retries_means_one_attempt(srv: MediaServer, cache: MediaCache) -> None:
    url = srv.url("/always500")
    assert fetch_error(url, FetchPolicy(retries=0), cache) == f"HTTP 500 Internal Server Error: {url}"
    assert srv.hits["/always500"] == 1


def test_408_is_retried(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    assert fetch(srv.url("/408"), policy, cache).read_bytes() == PNG
    assert srv.hits["/408"] == 2


def test_429_honours_retry_after_seconds(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, delays: list[float]
) -> None:
    assert fetch(srv.url("/rate-limited"), policy, cache).read_bytes() == PNG
    assert srv.hits["/rate-limited"] == 2
    assert delays == [2.0]


def test_503_honours_retry_after_date(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, delays: list[float]
) -> None:
    fetch(srv.url("/rate-limited-date"), policy, cache)
    assert len(delays) == 1 and 3.0 <= delays[0] <= 5.0  # HTTP-dates have 1 s resolution


def test_retry_after_is_capped(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, delays: list[float]
) -> None:
    fetch(srv.url("/rate-limited-forever"), policy, cache)
    assert delays == [fetchmod.MAX_RETRY_AFTER]


def test_real_backoff_sleeps(srv: MediaServer, cache: MediaCache) -> None:
    start = time.monotonic()
    fetch_error(srv.url("/always500"), FetchPolicy(retries=2, backoff=0.05), cache)
    assert time.monotonic() - start >= 0.05 + 0.1


def test_connection_refused_is_retried_then_reported(cache: MediaCache, policy: FetchPolicy) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.png"
    message = fetch_error(url, policy, cache)
    assert message.startswith("connection failed (ConnectError") and "(3 attempts)" in message


# --------------------------------------------------------------------------------------------
# Timeouts, sizes, content types
# --------------------------------------------------------------------------------------------


def test_slow_response_times_out(srv: MediaServer, cache: MediaCache) -> None:
    url = srv.url("/slow")
    start = time.monotonic()
    message = fetch_error(url, FetchPolicy(timeout=0.2, retries=1, backoff=0.001), cache)
    assert message == f"timed out after 0.2 s (2 attempts): {url}"
    assert time.monotonic() - start < SLOW_SECONDS
    assert srv.hits["/slow"] == 2
    assert cache_files(cache) == []


def test_oversize_with_honest_content_length_refused_before_reading(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy
) -> None:
    url = srv.url("/big-honest")
    message = fetch_error(url, policy, cache)
    assert message == f"too large: 4.9 KiB declared, more than 1000 bytes: {url}"
    assert srv.hits["/big-honest"] == 1  # not retried
    assert cache_files(cache) == []


@pytest.mark.parametrize("path", ["/big-no-length", "/big-chunked"])
def test_oversize_without_content_length_cut_off_while_streaming(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy, path: str
) -> None:
    url = srv.url(path)
    assert fetch_error(url, policy, cache) == f"too large: more than 1000 bytes: {url}"
    assert srv.hits[path] == 1
    assert cache_files(cache) == []


def test_streamed_body_within_limit_is_kept(srv: MediaServer, cache: MediaCache) -> None:
    got = fetch(srv.url("/big-chunked"), FetchPolicy(max_bytes=len(BIG)), cache)
    assert got.read_bytes() == BIG and got.suffix == ".mp4"


def test_gzip_bomb_counted_after_decoding(srv: MediaServer, cache: MediaCache) -> None:
    url = srv.url("/gzip-bomb")
    message = fetch_error(url, FetchPolicy(max_bytes=100 * 1024), cache)
    assert message == f"too large: more than 100 KiB: {url}"


def test_default_size_limit_message(srv: MediaServer, cache: MediaCache) -> None:
    assert fetchmod._size(200 * 2**20) == "200 MiB"
    assert fetchmod._size(3 * 2**30 // 2) == "1.5 GiB"


def test_truncated_body_fails_without_partial_file(srv: MediaServer, cache: MediaCache) -> None:
    url = srv.url("/truncated")
    message = fetch_error(url, FetchPolicy(retries=1, backoff=0.001), cache)
    assert message.startswith("connection failed while reading (RemoteProtocolError")
    assert "(2 attempts)" in message
    assert cache_files(cache) == []


def test_empty_body_refused(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/empty")
    assert fetch_error(url, policy, cache) == f"empty response body: {url}"
    assert cache_files(cache) == []


def test_html_content_type_refused(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/page.html")
    assert fetch_error(url, policy, cache) == f"unexpected content type 'text/html': {url}"
    assert srv.hits["/page.html"] == 1


def test_allowed_content_types_are_configurable(srv: MediaServer, cache: MediaCache) -> None:
    only_video = FetchPolicy(allowed_content_types=("video/",))
    assert fetch(srv.url("/clip"), only_video, cache).read_bytes() == MP4
    assert "unexpected content type 'image/png'" in fetch_error(srv.url("/img.png"), only_video, cache)


def test_error_after_redirect_names_both_urls(srv: MediaServer, cache: MediaCache) -> None:
    url = srv.url("/chain/1")
    message = fetch_error(url, FetchPolicy(allowed_content_types=("video/",)), cache)
    assert message == f"unexpected content type 'image/png': {url} (redirected to {srv.url('/chain/0')})"


def test_kill_9_mid_download_leaves_no_complete_looking_file(srv: MediaServer, tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache")
    url = srv.url("/drip")
    code = (
        "import sys; from captionkit.media.fetch import *; "
        "fetch(sys.argv[1], FetchPolicy(timeout=30), MediaCache(sys.argv[2]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, url, str(cache.root)])
    try:
        deadline = time.monotonic() + 20
        # The temporary file appears once the headers are in and the body is being written.
        while not any(p.name.endswith(".part") for p in cache_files(cache)):
            assert proc.poll() is None and time.monotonic() < deadline, "download never started"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert cache.get(url) is None
    assert all(p.name.startswith(".") for p in cache_files(cache))  # only the orphaned temp file
    cache.clear()
    assert cache_files(cache) == []


# --------------------------------------------------------------------------------------------
# Schemes and the SSRF guard
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("ftp://example.com/a.png", "ftp"),
        ("javascript:alert(1)", "javascript"),
        ("FILE:///etc/passwd", "file"),
    ],
)
def test_non_http_scheme_refused(cache: MediaCache, policy: FetchPolicy, url: str, scheme: str) -> None:
    message = fetch_error(url, policy, cache)
    assert message == f"unsupported URL scheme '{scheme}', only http and https can be fetched: {url}"


def test_plain_path_is_not_fetched(cache: MediaCache, policy: FetchPolicy) -> None:
    assert (
        fetch_error("/etc/passwd", policy, cache) == "not a URL (no http:// or https:// scheme): /etc/passwd"
    )


@pytest.mark.parametrize(("host", "kind"), [("127.0.0.1", "loopback"), ("localhost", "loopback")])
def test_allow_private_false_refuses_local_hosts(
    srv: MediaServer, cache: MediaCache, host: str, kind: str
) -> None:
    url = srv.url("/img.png").replace("127.0.0.1", host)
    message = fetch_error(url, FetchPolicy(allow_private=False), cache)
    assert message.startswith(f"refused: host '{host}' resolves to a {kind} address (")
    assert "127.0.0.1" in message or "::1" in message
    assert srv.hits["/img.png"] == 0


def test_allow_private_false_does_not_serve_cached_private_urls(
    srv: MediaServer, cache: MediaCache, policy: FetchPolicy
) -> None:
    url = srv.url("/img.png")
    fetch(url, policy, cache)
    assert "refused" in fetch_error_cached(url, FetchPolicy(allow_private=False), cache)


def fetch_error_cached(url: str, policy: FetchPolicy, cache: MediaCache) -> str:
    with pytest.raises(FetchError) as info:
        fetch(url, policy, cache)
    return str(info.value)


def test_ssrf_guard_checks_every_hop(
    srv: MediaServer, cache: MediaCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the test server's 127.0.0.1 is a public address so the first hop passes (and connects);
    # the redirect to "localhost", here resolving to a private address, must then be refused.
    real_resolve, real_kind = fetchmod._resolve, fetchmod.non_public_kind
    monkeypatch.setattr(fetchmod, "_resolve", lambda h, p: ["10.0.0.7"] if h == "localhost" else real_resolve(h, p))
    monkeypatch.setattr(fetchmod, "non_public_kind", lambda a: None if a == "127.0.0.1" else real_kind(a))
    url = srv.url("/to-private")
    message = fetch_error(url, FetchPolicy(allow_private=False), cache)
    assert message.startswith("refused: host 'localhost' resolves to a private address (10.0.0.7)")
    assert "redirected to http://localhost:" in message
    assert srv.hits["/to-private"] == 1 and srv.hits["/img.png"] == 0


def test_ssrf_guard_connects_only_to_the_addresses_it_checked(
    srv: MediaServer, cache: MediaCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a public address when checked, then to the server's loopback address
    when httpx would resolve it again to connect. The connection uses its own checked answer: refused, no hit."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    monkeypatch.setattr(fetchmod, "_resolve", lambda h, p: next(answers))
    url = srv.url("/img.png").replace("127.0.0.1", "rebind.example")
    message = fetch_error(url, FetchPolicy(allow_private=False), cache)
    assert message == f"refused: host 'rebind.example' resolves to a loopback address (127.0.0.1): {url}"
    assert srv.hits["/img.png"] == 0


def test_public_only_connections_reach_public_addresses_they_checked(
    srv: MediaServer, cache: MediaCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guarded client connects to the address its check saw (here the server's, counted as public)."""
    real_kind = fetchmod.non_public_kind
    monkeypatch.setattr(fetchmod, "non_public_kind", lambda a: None if a == "127.0.0.1" else real_kind(a))
    monkeypatch.setattr(fetchmod, "_resolve", lambda h, p: ["127.0.0.1"])
    url = srv.url("/img.png").replace("127.0.0.1", "cdn.example")
    assert fetch(url, FetchPolicy(allow_private=False), cache).read_bytes() == PNG
    assert srv.hits["/img.png"] == 1


def test_ssrf_guard_checks_every_address(cache: MediaCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetchmod, "_resolve", lambda h, p: ["93.184.216.34", "10.0.0.7"])
    url = "http://rebind.example/x.png"
    message = fetch_error(url, FetchPolicy(allow_private=False), cache)
    assert message == f"refused: host 'rebind.example' resolves to a private address (10.0.0.7): {url}"


def test_ssrf_guard_unresolvable_host(cache: MediaCache, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    monkeypatch.setattr(fetchmod, "_resolve", fail)
    url = "http://nowhere.invalid/x.png"
    message = fetch_error(url, FetchPolicy(allow_private=False), cache)
    assert message == f"cannot resolve host 'nowhere.invalid' (Name or service not known): {url}"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoint
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("0.0.0.0", "private"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("100.64.0.1", "non-public"),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_non_public_kind(address: str, kind: str | None) -> None:
    assert fetchmod.non_public_kind(address) == kind


# --------------------------------------------------------------------------------------------
# FetchPolicy validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 1.5}, "max_bytes"),
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"backoff": -0.1}, "backoff"),
        ({"max_redirects": -1}, "max_redirects"),
        ({"allowed_content_types": "image/"}, "allowed_content_types"),
        ({"allowed_content_types": ("image/", "")}, "allowed_content_types"),
        ({"allow_private": "no"}, "allow_private"),
        ({"user_agent": ""}, "user_agent"),
        ({"user_agent": "a\nb"}, "user_agent"),
    ],
)
def test_policy_validation_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"FetchPolicy\.{field} "):
        FetchPolicy(**kwargs)


def test_policy_defaults() -> None:
    p = FetchPolicy()
    assert (p.timeout, p.max_bytes, p.retries, p.backoff, p.max_redirects) == (20.0, 200 * 2**20, 3, 0.5, 5)
    assert p.allow_private is True and p.user_agent.startswith("captionkit/")
    # Lists (as YAML gives them) are accepted and normalised to lower-case tuples.
    loose = FetchPolicy(allowed_content_types=["Image/"])  # type: ignore[arg-type]
    assert loose.allowed_content_types == ("image/",)


# --------------------------------------------------------------------------------------------
# resolve_media
# --------------------------------------------------------------------------------------------


def test_resolve_http_fetches(srv: MediaServer, cache: MediaCache, policy: FetchPolicy) -> None:
    url = srv.url("/img.png")
    assert resolve_media(url, policy, cache) == cache.get(url)


def test_resolve_file_url(tmp_path: Path) -> None:
    target = tmp_path / "a dir" / "pic é.png"
    target.parent.mkdir()
    target.write_bytes(PNG)
    assert resolve_media(target.as_uri()) == target  # percent-encoded
    assert resolve_media(f"file://localhost{target}") == target


def test_resolve_file_url_with_remote_host_refused() -> None:
    with pytest.raises(MediaError, match=r"remote host 'server'.*: file://server/share/x\.png$"):
        resolve_media("file://server/share/x.png")


def test_resolve_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "x.jpg").write_bytes(JPEG)
    assert resolve_media("media/x.jpg", base_dir=tmp_path) == tmp_path / "media" / "x.jpg"
    assert (
        resolve_media(str(tmp_path / "media" / "x.jpg"), base_dir="/elsewhere")
        == tmp_path / "media" / "x.jpg"
    )
    monkeypatch.chdir(tmp_path)
    assert resolve_media("media/x.jpg").resolve() == (tmp_path / "media" / "x.jpg").resolve()


def test_resolve_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        resolve_media("gone.png", base_dir=tmp_path)
    assert str(info.value) == f"file not found: {tmp_path / 'gone.png'}"
    assert not isinstance(info.value, FetchError)
    with pytest.raises(MediaError, match=rf"file not found: {tmp_path}/nope\.mp4"):
        resolve_media((tmp_path / "nope.mp4").as_uri())


def test_resolve_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=f"not a file: {tmp_path}"):
        resolve_media(str(tmp_path))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "javascript:alert(1)", "data:image/png;base64,AAAA"]
)
def test_resolve_other_schemes_refused(url: str) -> None:
    with pytest.raises(FetchError) as info:
        resolve_media(url)
    assert "unsupported URL scheme" in str(info.value) and url in str(info.value)


def test_resolve_existing_file_with_colon_in_name(tmp_path: Path) -> None:
    (tmp_path / "shot:1.png").write_bytes(PNG)
    assert resolve_media("shot:1.png", base_dir=tmp_path) == tmp_path / "shot:1.png"
