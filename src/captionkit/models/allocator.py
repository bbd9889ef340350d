"""Keep large CPU tensors' memory in the process instead of mapping and unmapping it for every operation.

PyTorch's CPU allocator asks ``malloc`` for every tensor. glibc serves requests above its mmap threshold (which
it raises by itself to at most 32 MiB) with a fresh ``mmap`` and hands them back with ``munmap`` when freed, so
every large activation is new memory that the kernel fills page by page. A vision tower at high resolution lives
on such tensors: Florence-2-base's at 768 px takes ~240,000 minor page faults and ~0.5 s of kernel time per
image on a 2-core machine (scripts/profile_florence.py). With the mmap and trim thresholds raised (what
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...`` does at start-up, done here at
model load with ``mallopt``),
freed blocks stay in malloc's heap and are reused: no page faults once the heap has settled (a few calls), ~10%
less time per image (docs/benchmarks.md). Outputs are unchanged: it is the same arithmetic on other addresses.

It helps where the model runs on the process's main thread (``describe``, ``run`` on the local engine, Ray
actors). A model called from other threads (the HTTP server's workers) allocates from glibc's per-thread arenas,
which map blocks this large afresh whatever the thresholds say; preload jemalloc or tcmalloc there.

The trade: memory freed by the model stays with the process (its resident size stays near its peak between
batches instead of falling back); ``release_free_memory()`` hands it back, e.g. after unloading a model. Set ``CAPTIONKIT_MALLOC=system`` to keep glibc's defaults. Nothing is changed
where another allocator is preloaded (jemalloc, tcmalloc, mimalloc: they cache on their own), where
``GLIBC_TUNABLES`` already sets malloc thresholds, or off glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # 1 GiB: above any single activation of the models captionkit runs on CPU
ENV = "CAPTIONKIT_MALLOC"
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_state: dict[str, str] = {}  # "result": why it was or was not applied, decided once per process


def keep_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds once per process; returns what was done (``applied`` or the reason
    it was not). Called by ``models.hf.load_model`` for models placed on the CPU."""
    if "result" not in _state:
        _state["result"] = _apply()
        log.debug("malloc thresholds: %s", _state["result"])
    return _state["result"]


def _apply() -> str:
    if os.environ.get(ENV, "").strip().lower() == "system":
        return f"kept glibc's defaults ({ENV}=system)"
    if not sys.platform.startswith("linux"):
        return "not Linux"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in OTHER_ALLOCATORS):
        return "another allocator is preloaded"
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets malloc already"
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it: musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "not glibc"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, THRESHOLD) != 1:
        return "glibc refused the thresholds"
    return "applied"


def release_free_memory() -> bool:
    """Return malloc's free memory to the system (glibc's ``malloc_trim(0)``, which also releases free pages in the
    middle of the heap); False where there is no glibc. For a process that drops models it will not load again."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
