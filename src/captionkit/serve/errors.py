"""What a request can fail with: one exception type that carries its HTTP status.

The API turns a :class:`ServiceError` into ``{"error": message, "detail": ...}`` with ``status``; the web UI
shows ``message`` in an error box. Messages are one line for people and never hold a stack trace or a
server path.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A request failed for a reason the caller should see (bad input, busy server, timeout...)."""

    def __init__(self, status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "detail": self.detail}


def bad_request(message: str, detail: Any = None) -> ServiceError:
    return ServiceError(422, message, detail)


def too_large(message: str) -> ServiceError:
    return ServiceError(413, message)


def unsupported(message: str) -> ServiceError:
    return ServiceError(415, message)


def not_ready(message: str = "the models are still loading; try again shortly") -> ServiceError:
    return ServiceError(503, message, headers={"Retry-After": "5"})
