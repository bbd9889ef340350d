"""Download media URLs robustly and resolve media references to local files.

``fetch`` downloads one http(s) URL into an on-disk :class:`MediaCache` and returns the cached
path; ``resolve_media`` turns any media reference (URL, ``file://`` URL or path) into a local file.

Every failure raises :class:`~captionkit.errors.FetchError` (or ``MediaError`` for local files)
with a one-line message that names the URL and says what happened, because these messages end
up verbatim in per-item error records of batch runs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import mimetypes
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import httpcore
import httpx

from captionkit import __version__
from captionkit.backoff import MAX_RETRY_AFTER, parse_retry_after, retry_delay
from captionkit.errors import ConfigError, FetchError, MediaError
from captionkit.media.kinds import MEDIA_SUFFIXES

__all__ = [
    "FetchPolicy",
    "MediaCache",
    "close_shared_client",
    "default_cache_dir",
    "fetch",
    "guess_suffix",
    "non_public_kind",
    "resolve_media",
    "shared_client",
]

_HTTP_SCHEMES = ("http", "https")
# A scheme as RFC 3986 spells it; two letters at least so Windows drive letters ("C:") stay paths.
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")

# Content types whose usual file suffix mimetypes gets wrong or does not know.
_SUFFIX_FOR_TYPE = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "application/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/mpeg": ".mpg",
    "video/mp2t": ".ts",
    "video/3gpp": ".3gp",
}


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


@dataclass
class FetchPolicy:
    """Limits and behaviour of :func:`fetch`. Validated on construction (``ConfigError``)."""

    timeout: float = 20.0
    """Seconds allowed to connect, and between two reads, per attempt."""
    max_bytes: int = 200 * 2**20
    """Largest body accepted (after content decoding), checked before and while reading."""
    retries: int = 3
    """Extra attempts after the first, only for timeouts, connection errors and HTTP 408/429/5xx."""
    backoff: float = 0.5
    """Base delay: attempt ``n`` (0-based) waits ``backoff * 2**n`` plus a little jitter."""
    allowed_content_types: tuple[str, ...] = (
        "image/",
        "video/",
        "application/octet-stream",
        "binary/octet-stream",
        "application/mp4",
    )
    """Accepted Content-Type prefixes (case-insensitive). A missing Content-Type is accepted."""
    allow_private: bool = True
    """When False, refuse hosts resolving to loopback/private/link-local/reserved addresses (SSRF)."""
    max_redirects: int = 5
    user_agent: str = field(default_factory=lambda: f"captionkit/{__version__}")

    def __post_init__(self) -> None:
        self.timeout = _positive_number("timeout", self.timeout)
        self.backoff = _non_negative_number("backoff", self.backoff)
        self.max_bytes = _int_at_least("max_bytes", self.max_bytes, 1)
        self.retries = _int_at_least("retries", self.retries, 0)
        self.max_redirects = _int_at_least("max_redirects", self.max_redirects, 0)
        self.allowed_content_types = _content_types(self.allowed_content_types)
        if not isinstance(self.allow_private, bool):
            raise ConfigError(f"FetchPolicy.allow_private must be true or false, got {self.allow_private!r}")
        if not isinstance(self.user_agent, str) or not self.user_agent.strip() or "\n" in self.user_agent:
            raise ConfigError(
                f"FetchPolicy.user_agent must be a non-empty single line, got {self.user_agent!r}"
            )

    @property
    def attempts(self) -> int:
        return self.retries + 1


def _positive_number(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"FetchPolicy.{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _non_negative_number(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"FetchPolicy.{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _int_at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"FetchPolicy.{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _content_types(value: Any) -> tuple[str, ...]:
    # A bare string would otherwise be split into characters and allow everything.
    if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(
            f"FetchPolicy.allowed_content_types must be a list of non-empty type prefixes, got {value!r}"
        )
    return tuple(v.strip().lower() for v in value)


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$CAPTIONKIT_CACHE_DIR/media``, else ``$XDG_CACHE_HOME/captionkit/media``, else ``~/.cache/...``."""
    if os.environ.get("CAPTIONKIT_CACHE_DIR"):
        return Path(os.environ["CAPTIONKIT_CACHE_DIR"]).expanduser() / "media"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "captionkit" / "media"
    return Path.home() / ".cache" / "captionkit" / "media"


def guess_suffix(url: str, content_type: str | None) -> str:
    """File suffix for a download: from the Content-Type, else the URL path, else ``.bin``.

    Loaders sniff content anyway; the suffix only makes cached files recognisable to tools.
    """
    mime = _mime(content_type)
    if mime in _SUFFIX_FOR_TYPE:
        return _SUFFIX_FOR_TYPE[mime]
    url_suffix = Path(urlsplit(url).path).suffix.lower()
    if url_suffix in MEDIA_SUFFIXES:
        return url_suffix
    guessed = mimetypes.guess_extension(mime) if mime else None
    return guessed if guessed in MEDIA_SUFFIXES else ".bin"


class MediaCache:
    """Downloaded media on disk, keyed by the sha256 of the URL.

    Layout: ``<root>/<key[:2]>/<key><suffix>`` holds the body and ``<root>/<key[:2]>/<key>.json``
    a sidecar (url, content_type, bytes, fetched_at, suffix). Both are written to a temporary file
    in the same directory and moved into place with ``os.replace``; the sidecar goes last and
    :meth:`get` also checks the body size against it, so an interrupted write (even ``kill -9``)
    is a cache miss, never a truncated hit.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"MediaCache({str(self.root)!r})"

    @staticmethod
    def key(url: str) -> str:
        return hashlib.sha256(url.encode("utf-8")).hexdigest()

    def _shard(self, url: str) -> Path:
        return self.root / self.key(url)[:2]

    def _sidecar(self, url: str) -> Path:
        return self._shard(url) / f"{self.key(url)}.json"

    def path_for(self, url: str, content_type: str | None = None) -> Path:
        """Where the body for ``url`` is (or would be) stored, given its Content-Type."""
        return self._shard(url) / f"{self.key(url)}{guess_suffix(url, content_type)}"

    def metadata(self, url: str) -> dict[str, Any] | None:
        """The sidecar of a cached ``url``, or None when absent or unreadable."""
        try:
            meta = json.loads(self._sidecar(url).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("url") == url else None

    def get(self, url: str) -> Path | None:
        """The cached body of ``url``, or None when it is not (completely) cached."""
        meta = self.metadata(url)
        if meta is None or not isinstance(meta.get("suffix"), str):
            return None
        body = self._shard(url) / f"{self.key(url)}{meta['suffix']}"
        try:
            complete = body.stat().st_size == meta.get("bytes")
        except OSError:
            return None
        return body if complete else None

    def put(self, url: str, data: bytes, content_type: str | None = None) -> Path:
        """Store ``data`` as the body of ``url`` (atomically) and return its path."""
        with self.writing(url, content_type) as writer:
            writer.write(data)
        assert writer.path is not None  # set on a clean exit from writing()
        return writer.path

    @contextmanager
    def writing(self, url: str, content_type: str | None = None) -> Iterator[CacheWriter]:
        """Stream a body into the cache: it is committed only if the ``with`` block exits cleanly.

        ``writer.path`` is the final path once the block has exited; on an exception the
        temporary file is removed and nothing is stored.
        """
        shard = self._shard(url)
        shard.mkdir(parents=True, exist_ok=True)
        # Leading dot and ".part": never mistaken for a body by get(), skipped by directory scans.
        fd, tmp = tempfile.mkstemp(dir=shard, prefix=f".{self.key(url)[:16]}.", suffix=".part")
        writer = CacheWriter(os.fdopen(fd, "wb"))
        try:
            with writer.file:
                yield writer
            writer.path = self._commit(url, Path(tmp), content_type, writer.bytes)
        finally:
            _unlink_quietly(Path(tmp))  # a no-op after a successful commit

    def _commit(self, url: str, tmp: Path, content_type: str | None, size: int) -> Path:
        body = self.path_for(url, content_type)
        os.replace(tmp, body)
        meta = {
            "url": url,
            "content_type": content_type,
            "bytes": size,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "suffix": body.suffix,
        }
        _atomic_write_text(self._sidecar(url), json.dumps(meta, ensure_ascii=False))
        return body

    def clear(self) -> None:
        """Remove every cached entry (only the two-hex-digit shard folders this class creates)."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            # Never wipe unrelated files if root was pointed somewhere it should not have been.
            if entry.is_dir() and re.fullmatch(r"[0-9a-f]{2}", entry.name):
                shutil.rmtree(entry, ignore_errors=True)


class CacheWriter:
    """Handle yielded by :meth:`MediaCache.writing`: counts bytes, knows the final path afterwards."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.bytes = 0
        self.path: Path | None = None

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.bytes += len(data)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        _unlink_quietly(Path(tmp))


def _unlink_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Shared HTTP client
# --------------------------------------------------------------------------------------------

_clients: dict[bool, httpx.Client] = {}  # public_only -> client
_client_pid: int | None = None
_client_lock = threading.Lock()


def shared_client(public_only: bool = False) -> httpx.Client:
    """The process-wide client (connection pooling across thousands of fetches); with ``public_only``, the one
    whose connections may only go to public addresses (``FetchPolicy(allow_private=False)``).

    Recreated after ``fork`` because pooled sockets must not be shared between processes.
    """
    global _client_pid
    with _client_lock:
        if _client_pid != os.getpid():
            _clients.clear()
            _client_pid = os.getpid()
        if public_only not in _clients:
            transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
            if public_only:
                # httpx has no public hook for the socket layer; its pool (httpcore) takes a network backend.
                transport._pool._network_backend = _PublicOnlyBackend()
            _clients[public_only] = httpx.Client(
                transport=transport,
                follow_redirects=False,  # redirects are followed by hand, to check every hop
            )
        return _clients[public_only]


def close_shared_client() -> None:
    """Close the process-wide clients; the next :func:`fetch` opens new ones."""
    with _client_lock:
        if _client_pid == os.getpid():
            for client in _clients.values():
                client.close()
        _clients.clear()


class _RefusedAddress(httpcore.ConnectError):
    """The host resolved to an address that must not be fetched; its text is the whole reason."""


class _PublicOnlyBackend(httpcore.SyncBackend):
    """Connects to a host only through addresses it has checked itself, in the same DNS answer it connects with.

    ``_check_host`` refuses private hosts before a request, but a name can resolve to a public address then and
    to a private one a moment later (DNS rebinding); this backend resolves once, refuses the host if any answer
    is not public, and connects to those very addresses. (With an HTTP(S)_PROXY the proxy connects instead.)
    """

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        try:
            addresses = _resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve host {host!r} ({_one_line(exc)})") from exc
        for address in addresses:
            if (kind := non_public_kind(address)) is not None:
                raise _RefusedAddress(f"refused: host {host!r} resolves to a {kind} address ({address})")
        failure: Exception = httpcore.ConnectError(f"no address for host {host!r}")
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure


# --------------------------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------------------------


class _Retryable(Exception):
    """A failure worth another attempt; ``reason`` becomes the FetchError text if none succeeds."""

    def __init__(self, reason: str, final_url: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final_url = final_url
        self.retry_after = retry_after


# Indirections so tests can observe delays and fake DNS without waiting or touching the network.
_sleep = time.sleep


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def fetch(
    url: str,
    policy: FetchPolicy | None = None,
    cache: MediaCache | None = None,
    client: httpx.Client | None = None,
) -> Path:
    """Download ``url`` into ``cache`` (default: :func:`default_cache_dir`) and return the file.

    A cached copy is returned without any request. Raises :class:`FetchError` on any failure;
    a failed download leaves nothing in the cache (a killed process can leave a dot-prefixed
    ``.part`` temporary file, which is never taken for an entry and goes with ``clear()``).
    """
    policy = policy or FetchPolicy()
    cache = cache if cache is not None else MediaCache()
    _check_scheme(url, url)
    if not policy.allow_private:
        # Also before the cache: it may hold internal URLs fetched under a laxer policy.
        _check_host(url, url)
    hit = cache.get(url)
    if hit is not None:
        return hit
    return _download_with_retries(url, policy, cache, client or shared_client(public_only=not policy.allow_private))


def _download_with_retries(url: str, policy: FetchPolicy, cache: MediaCache, client: httpx.Client) -> Path:
    for attempt in range(policy.attempts):
        try:
            return _download_once(url, policy, cache, client)
        except _Retryable as exc:
            failure = exc
            if attempt + 1 < policy.attempts:
                _sleep(retry_delay(policy.backoff, attempt, exc.retry_after, max_retry_after=MAX_RETRY_AFTER))
    n = policy.attempts
    tries = f" ({n} attempts)" if n > 1 else ""
    raise _error(f"{failure.reason}{tries}", url, failure.final_url)


def _download_once(url: str, policy: FetchPolicy, cache: MediaCache, client: httpx.Client) -> Path:
    response = _open(url, policy, client)
    final = str(response.url)
    try:
        _check_response(url, final, response, policy)
        return _save_body(url, final, response, policy, cache)
    finally:
        response.close()


def _open(url: str, policy: FetchPolicy, client: httpx.Client) -> httpx.Response:
    """Send the GET and follow redirects by hand, checking scheme and host at every hop."""
    current = url
    seen = {url}
    for _ in range(policy.max_redirects + 1):
        _check_scheme(current, url)
        if not policy.allow_private:
            _check_host(current, url)
        response = _send(client, current, policy, url)
        if not response.is_redirect:
            return response
        response.close()
        current = urljoin(str(response.url), response.headers["location"])
        if current in seen:
            raise _error(f"redirect loop (back to {current})", url)
        seen.add(current)
    raise _error(f"too many redirects (more than {policy.max_redirects})", url, current)


def _send(client: httpx.Client, target: str, policy: FetchPolicy, url: str) -> httpx.Response:
    """One request; transport failures become ``_Retryable`` or FetchError."""
    final = target if target != url else None
    try:
        request = client.build_request(
            "GET", target, headers={"User-Agent": policy.user_agent}, timeout=httpx.Timeout(policy.timeout)
        )
        return client.send(request, stream=True, follow_redirects=False)
    except httpx.TimeoutException as exc:
        raise _Retryable(f"timed out after {policy.timeout} s", final) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise _error(f"invalid URL ({_one_line(exc)})", url, final) from exc
    except httpx.TransportError as exc:
        if isinstance(exc.__cause__, _RefusedAddress):  # the connection's own SSRF check: final, not retried
            raise _error(str(exc.__cause__), url, final) from exc
        raise _Retryable(f"connection failed ({_describe(exc)})", final) from exc


def _check_response(url: str, final: str, response: httpx.Response, policy: FetchPolicy) -> None:
    """Status, Content-Type and Content-Length, all decided before any body byte is read."""
    shown_final = final if final != url else None
    status = response.status_code
    if not 200 <= status < 300:
        reason = f"HTTP {status} {response.reason_phrase or httpx.codes.get_reason_phrase(status)}".rstrip()
        if status in (408, 429) or status >= 500:
            raise _Retryable(reason, shown_final, parse_retry_after(response.headers.get("retry-after")))
        raise _error(reason, url, shown_final)
    content_type = response.headers.get("content-type")
    if not _content_type_allowed(content_type, policy):
        raise _error(f"unexpected content type {_mime(content_type)!r}", url, shown_final)
    declared = _content_length(response)
    if declared is not None and declared > policy.max_bytes:
        raise _error(
            f"too large: {_size(declared)} declared, more than {_size(policy.max_bytes)}", url, shown_final
        )


def _save_body(
    url: str, final: str, response: httpx.Response, policy: FetchPolicy, cache: MediaCache
) -> Path:
    """Stream the body into the cache, stopping as soon as it passes ``max_bytes``."""
    shown_final = final if final != url else None
    content_type = response.headers.get("content-type")
    try:
        with cache.writing(url, content_type) as writer:
            # iter_bytes decodes gzip/deflate, so the limit also stops decompression bombs; no
            # chunk_size, so bytes reach the disk as they arrive instead of being buffered.
            for chunk in response.iter_bytes():
                if writer.bytes + len(chunk) > policy.max_bytes:
                    raise _error(f"too large: more than {_size(policy.max_bytes)}", url, shown_final)
                writer.write(chunk)
            if writer.bytes == 0:
                raise _error("empty response body", url, shown_final)
    except httpx.TimeoutException as exc:
        raise _Retryable(f"timed out after {policy.timeout} s", shown_final) from exc
    except httpx.DecodingError as exc:
        raise _error(f"corrupt response body ({_one_line(exc)})", url, shown_final) from exc
    except httpx.TransportError as exc:
        raise _Retryable(f"connection failed while reading ({_describe(exc)})", shown_final) from exc
    except OSError as exc:
        raise _error(f"cannot write to the cache at {cache.root} ({_one_line(exc)})", url) from exc
    assert writer.path is not None
    return writer.path


# --------------------------------------------------------------------------------------------
# Checks and small helpers
# --------------------------------------------------------------------------------------------


def _check_scheme(target: str, url: str) -> None:
    scheme = urlsplit(target).scheme.lower()
    if scheme not in _HTTP_SCHEMES:
        where = "" if target == url else f" (redirected to {target})"
        if not scheme:
            raise FetchError(f"not a URL (no http:// or https:// scheme): {url}{where}")
        raise FetchError(
            f"unsupported URL scheme {scheme!r}, only http and https can be fetched: {url}{where}"
        )


def _check_host(target: str, url: str) -> None:
    """SSRF guard: every address the host resolves to must be public."""
    final = target if target != url else None
    try:
        parsed = httpx.URL(target)
    except httpx.InvalidURL as exc:
        raise _error(f"invalid URL ({_one_line(exc)})", url, final) from exc
    host = parsed.host
    if not host:
        raise _error("invalid URL (no host)", url, final)
    try:
        addresses = _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        raise _error(f"cannot resolve host {host!r} ({_one_line(exc)})", url, final) from exc
    for address in addresses:
        kind = non_public_kind(address)
        if kind is not None:
            raise _error(f"refused: host {host!r} resolves to a {kind} address ({address})", url, final)


def non_public_kind(address: str) -> str | None:
    """Why ``address`` must not be fetched under ``allow_private=False`` ("loopback", ...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),  # e.g. 100.64.0.0/10 carrier-grade NAT
    )
    return next((kind for kind, hit in checks if hit), None)


def _content_type_allowed(content_type: str | None, policy: FetchPolicy) -> bool:
    mime = _mime(content_type)
    return not mime or mime.startswith(policy.allowed_content_types)


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _content_length(response: httpx.Response) -> int | None:
    try:
        value = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _error(reason: str, url: str, final: str | None = None) -> FetchError:
    where = f" (redirected to {final})" if final and final != url else ""
    return FetchError(f"{reason}: {url}{where}")


# --------------------------------------------------------------------------------------------
# resolve_media
# --------------------------------------------------------------------------------------------


def resolve_media(
    url: str,
    policy: FetchPolicy | None = None,
    cache: MediaCache | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """A local file for a media reference.

    http(s) URLs are fetched (see :func:`fetch`); ``file://`` URLs and plain paths are local,
    relative paths being taken against ``base_dir`` when given (else the working directory).
    Raises ``MediaError("file not found: <path>")`` for a missing local file and FetchError for
    other URL schemes.
    """
    ref = url.strip()
    scheme = urlsplit(ref).scheme.lower()
    if scheme in _HTTP_SCHEMES:
        return fetch(ref, policy, cache)
    if scheme == "file":
        return _existing_file(_file_url_path(ref))
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir).expanduser() / path
    if not path.exists() and _looks_like_url(ref):
        # "ftp://x", "javascript:..." are not file names someone forgot to create.
        _check_scheme(ref, ref)
    return _existing_file(path)


def _looks_like_url(ref: str) -> bool:
    return _SCHEME_RE.match(ref) is not None


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise MediaError(f"file:// URL names a remote host {parts.netloc!r}, which cannot be read: {url}")
    return Path(url2pathname(parts.path))


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise MediaError(f"file not found: {path}")
    if not path.is_file():
        raise MediaError(f"not a file: {path}")
    return path
