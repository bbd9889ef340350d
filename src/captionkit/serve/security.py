"""API keys, the web UI's login cookie, and the request guard (body size, headers, UI access).

* API routes take ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time).
* The web UI takes the same header, or a cookie set by ``POST /login`` (the key typed into a form). The cookie
  holds an HMAC of the key, never the key, and is ``HttpOnly; SameSite=Strict`` so other sites cannot ride it.
* Every request body is capped while it streams in (413), before any parser has buffered it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

COOKIE = "captionkit_ui"
BODY_OVERHEAD = 1 << 20  # multipart boundaries and form fields on top of the media itself
_EXTRA_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class KeyRing:
    """The configured API keys; empty means the server is open (only sensible on localhost)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(k.encode() for k in keys)
        self._tokens = tuple(ui_token(k).encode() for k in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, presented: str | None) -> bool:
        return _matches(presented, self._keys)

    def check_token(self, token: str | None) -> bool:
        return _matches(token, self._tokens)

    def check_headers(self, headers: dict[str, str]) -> bool:
        """``X-API-Key: KEY`` or ``Authorization: Bearer KEY``."""
        if self.check(headers.get("x-api-key")):
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.check(value.strip())


def ui_token(key: str) -> str:
    """What the UI cookie holds for ``key``: a keyed hash, so a leaked cookie does not leak the API key."""
    return hmac.new(key.encode(), b"captionkit-ui-session", hashlib.sha256).hexdigest()


def _matches(presented: str | None, secrets: tuple[bytes, ...]) -> bool:
    if not presented or not secrets:
        return False
    given = presented.encode()
    found = False
    for secret in secrets:  # no early exit: the time taken does not tell which key came close
        found |= hmac.compare_digest(given, secret)
    return found


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class GuardMiddleware:
    """ASGI middleware: body-size caps, UI access control, and safe response headers."""

    def __init__(self, app: Any, *, keyring: KeyRing, upload_limit: int, job_limit: int,
                 ui_prefix: str | None = "/ui", strip_cors: bool = True) -> None:
        self.app = app
        self.keyring = keyring
        self.upload_limit = upload_limit + BODY_OVERHEAD
        self.job_limit = job_limit + BODY_OVERHEAD
        self.ui_prefix = ui_prefix
        self.strip_cors = strip_cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if self._is_ui(path) and self.keyring.enabled and not self._ui_allowed(headers):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            elif scope.get("method") in ("GET", "HEAD") and path.rstrip("/") == self.ui_prefix:
                await _respond(send, 303, b"", [(b"location", b"/login")])
            else:
                await _json(send, 401, "missing or wrong API key: log in at /login", [(b"www-authenticate", b"Bearer")])
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        limit = self.job_limit if path.startswith("/v1/jobs") else self.upload_limit
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _json(send, 413, f"the request body is larger than the {limit // 2**20} MiB limit")
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def headed_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [(k, v) for k, v in message.get("headers", [])
                        if not (self.strip_cors and k.lower().startswith(b"access-control-"))]
                names = {k.lower() for k, _ in kept}
                message["headers"] = kept + [(k, v) for k, v in _EXTRA_HEADERS if k not in names]
            await send(message)

        try:
            await self.app(scope, counting_receive, headed_send)
        except _TooLarge:
            if started:
                raise
            await _json(send, 413, f"the request body is larger than the {limit // 2**20} MiB limit")

    def _is_ui(self, path: str) -> bool:
        return self.ui_prefix is not None and (path == self.ui_prefix or path.startswith(self.ui_prefix + "/"))

    def _ui_allowed(self, headers: dict[str, str]) -> bool:
        return self.keyring.check_headers(headers) or self.keyring.check_token(_cookie(headers, COOKIE))


class _TooLarge(Exception):
    """The body passed its cap while streaming in."""


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()), *_EXTRA_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": error, "detail": None}).encode()
    await _respond(send, status, body, [(b"content-type", b"application/json"), *(headers or [])])
