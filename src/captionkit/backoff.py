"""Retry timing shared by captionkit's HTTP clients (media downloads, OpenAI-compatible writers).

Attempt ``n`` (0-based) waits ``backoff * 2**n`` (capped at ``max_backoff``) plus up to ``JITTER`` of it at random,
so parallel workers do not retry in lockstep; a server's ``Retry-After`` lengthens the wait, up to
``max_retry_after``.
"""

from __future__ import annotations

import email.utils
import math
import random
from datetime import datetime, timezone

#: Fraction of random extra delay added to each backoff.
JITTER = 0.1
#: Longest wait a server's ``Retry-After`` can impose between two attempts, in seconds.
MAX_RETRY_AFTER = 30.0


def retry_delay(backoff: float, attempt: int, retry_after: float | None = None, *,
                max_retry_after: float = MAX_RETRY_AFTER, max_backoff: float = math.inf) -> float:
    """Seconds to wait before attempt ``attempt + 1``."""
    delay = min(backoff * 2.0**attempt, max_backoff) * (1 + random.uniform(0, JITTER))
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
