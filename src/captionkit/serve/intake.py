"""From what a client sends to a checked media file on the server.

Three ways in, one set of checks: an upload is copied under a byte cap, a URL is fetched with the SSRF
guard (http(s) only, no private addresses unless allowed), a web-UI file is already on disk. Then the
content is sniffed (the file name and Content-Type are never trusted) and a video's length is checked.
A server path is never accepted as input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlsplit

from captionkit.errors import FetchError, MediaError
from captionkit.media.fetch import FetchPolicy, MediaCache, fetch
from captionkit.media.sniff import sniff
from captionkit.media.types import ImageLimits
from captionkit.media.video import probe_video
from captionkit.serve.errors import ServiceError, bad_request, too_large, unsupported
from captionkit.serve.settings import ServeSettings

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class MediaInput:
    """One media file as a request gives it: an open upload, a URL, or a file the web UI saved."""

    upload: BinaryIO | None = None
    filename: str | None = None
    url: str | None = None
    path: Path | None = None  # only from the web UI (Gradio's upload folder), never from a client string

    @property
    def shown(self) -> str:
        """How messages call it: the client's file name (no folders) or the URL."""
        return self.url or safe_name(self.filename, "upload")


@dataclass
class CheckedMedia:
    path: Path
    kind: str  # image | gif | video
    format: str
    shown: str


def safe_name(name: str | None, default: str = "file") -> str:
    """A client-supplied file name reduced to one harmless path component."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).strip("._-")[:100]
    return cleaned or default


def save_stream(src: BinaryIO, dest: Path, limit: int, shown: str, flag: str = "--max-upload-mb") -> int:
    """Copy ``src`` to a new file ``dest``, refusing (413) more than ``limit`` bytes."""
    total = 0
    with dest.open("xb") as out:
        while chunk := src.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise too_large(f"{shown} is larger than the {_mib(limit)} upload limit ({flag})")
            out.write(chunk)
    if total == 0:
        raise bad_request(f"{shown} is empty")
    return total


def check_url(url: str) -> str:
    """Only absolute http(s) URLs: file://, ftp://, data: and bare paths are refused (422)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        got = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise bad_request(f"only http:// and https:// URLs can be fetched (got {got})", {"url": url})
    if not parts.hostname:
        raise bad_request("the URL has no host", {"url": url})
    return url


def fetch_url(url: str, policy: FetchPolicy, folder: Path) -> Path:
    """Download ``url`` into ``folder`` (a per-request cache, deleted with the request)."""
    url = check_url(url)
    try:
        return fetch(url, policy, MediaCache(folder))
    except FetchError as exc:
        reason = str(exc)
        if "too large" in reason:
            raise too_large(reason) from None
        if "unexpected content type" in reason:
            raise unsupported(reason) from None
        raise ServiceError(422, f"could not fetch the URL: {reason}", {"url": url}) from None


def materialise(media: MediaInput, folder: Path, settings: ServeSettings, policy: FetchPolicy) -> Path:
    """A local file for ``media``, inside ``folder`` unless the web UI already saved it."""
    limit = settings.max_upload_bytes
    if media.upload is not None:
        dest = folder / f"upload-{safe_name(media.filename, 'media')}"
        save_stream(media.upload, dest, limit, media.shown)
        return dest
    if media.url is not None:
        return fetch_url(media.url, policy, folder / "fetched")
    if media.path is not None:
        size = media.path.stat().st_size
        if size > limit:
            raise too_large(f"{media.shown} is larger than the {_mib(limit)} upload limit (--max-upload-mb)")
        return media.path
    raise bad_request("send the media as a `file` upload or give its `url`")


def check_media(path: Path, shown: str, settings: ServeSettings, limits: ImageLimits) -> CheckedMedia:
    """Sniff the content (415 unless an image, GIF or video) and check a video's length (413)."""
    try:
        kind, fmt = sniff(path)
    except MediaError as exc:
        hint = str(exc).replace(str(path), shown)
        raise unsupported(f"{shown} is not an image, GIF or video that can be read ({hint}); "
                          "the content decides, not the file name") from None
    if kind == "video":
        try:
            info = probe_video(path, limits)
        except MediaError as exc:
            raise bad_request(str(exc).replace(str(path), shown)) from None
        if info.duration is not None and info.duration > settings.max_duration_s:
            raise too_large(f"{shown}: the video lasts {info.duration:.1f} s; the limit is "
                            f"{settings.max_duration_s:g} s (--max-duration)")
    return CheckedMedia(path=path, kind=kind, format=fmt, shown=shown)


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"
