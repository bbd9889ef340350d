"""Bounded admission: at most ``concurrency`` requests work at once, at most ``queue_size`` wait, the rest get 503.

Work runs in a small thread pool (the models are blocking code), so the event loop keeps answering health
checks and refusals while the models are busy. A request that passes its timeout gets 504; its model call
cannot be interrupted, so it keeps its worker until it returns, and the queue stays honest about capacity.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from captionkit.serve.errors import ServiceError

log = logging.getLogger("captionkit.serve")
T = TypeVar("T")
MAX_RETRY_AFTER = 120


class Admission:
    """Admit, queue and time out blocking work submitted from async request handlers."""

    def __init__(self, concurrency: int, queue_size: int, timeout_s: float) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="captionkit-worker")
        self._slots: asyncio.Semaphore | None = None  # made on first use, inside the server's event loop
        self._admitted = 0  # waiting + running (+ timed out but still running)
        self._running = 0
        self._lock = threading.Lock()  # _admitted/_running change on worker threads too
        self._mean_s = 1.0  # moving average of work time, for Retry-After
        self.served = self.refused = self.timed_out = 0

    @property
    def capacity(self) -> int:
        return self.concurrency + self.queue_size

    def stats(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "queue_size": self.queue_size, "in_flight": self._admitted,
                "running": self._running, "served": self.served, "refused": self.refused,
                "timed_out": self.timed_out, "mean_seconds": round(self._mean_s, 3)}

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, at the recent pace."""
        return max(1, min(MAX_RETRY_AFTER, math.ceil(self._mean_s * max(1, self._admitted) / self.concurrency)))

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``fn(*args)`` on a worker thread, once a slot is free; 503 when the queue is full, 504 on timeout."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.refused += 1
                busy = True
            else:
                self._admitted += 1
                busy = False
        if busy:
            wait = self.retry_after()
            raise ServiceError(503, f"the server is busy ({self.capacity} requests in progress or queued); "
                                    f"retry in {wait} s", headers={"Retry-After": str(wait)})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout_s)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        slots = self._slots
        acquire = asyncio.ensure_future(slots.acquire())
        try:
            await asyncio.wait_for(asyncio.shield(acquire), max(0.0, deadline - loop.time()))
        except BaseException as exc:  # timed out or cancelled while queued
            acquire.cancel()
            # The acquire may have won the race with the timeout: hand that slot back.
            acquire.add_done_callback(lambda t: slots.release() if not t.cancelled() else None)
            self._leave()
            if isinstance(exc, TimeoutError):
                self.timed_out += 1
                raise ServiceError(504, f"timed out after {timeout or self.timeout_s:g} s waiting for a free worker") from None
            raise
        started = time.perf_counter()
        with self._lock:
            self._running += 1
        try:
            future = loop.run_in_executor(self.executor, lambda: fn(*args))
        except RuntimeError:  # the pool is shut down: the server is stopping
            with self._lock:
                self._running -= 1
            slots.release()
            self._leave()
            raise ServiceError(503, "the server is shutting down", headers={"Retry-After": "10"}) from None
        future.add_done_callback(lambda _f: self._finish(slots, started))  # runs on the loop, even after a timeout
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
        except TimeoutError:
            self.timed_out += 1
            log.warning("a request timed out after %.1f s; its model call finishes in the background", timeout or self.timeout_s)
            raise ServiceError(504, f"timed out after {timeout or self.timeout_s:g} s; the work was too slow") from None

    def _finish(self, slots: asyncio.Semaphore, started: float) -> None:
        """The worker returned (maybe after its request timed out): free its slot."""
        seconds = time.perf_counter() - started
        self._mean_s = 0.7 * self._mean_s + 0.3 * seconds
        self.served += 1
        with self._lock:
            self._running -= 1
        slots.release()
        self._leave()

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Stop taking work; queued calls are cancelled, running ones finish on their threads."""
        self.executor.shutdown(wait=False, cancel_futures=True)
