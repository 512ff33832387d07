"""The garbage collector's settings for a process that holds many sessions.

No session's audio moves while CPython's collector runs, and with a thousand speaking sessions
its collections were most of the event loop's lag (docs/performance.md):

* a young collection walks every tracked object created since the last one that is still
  alive, and a speaking turn's objects (tasks, scopes, sentences) live for seconds: with a
  thousand speaking sessions that was 20,000-35,000 objects, 2-12 ms, about 70 times a second;
  every tenth one also walked the middle generation (10-40 ms);
* a full collection walks every object (about 190,000, 100-250 ms) and ran every 1-2 s.

Yet a turn leaves no garbage in reference cycles (tested): reference counting frees all it
makes as it ends. So a serve process, once its app is built, freezes what exists (modules,
classes, the app: never walked again), and :func:`collect_periodically` (run by the serve app's
lifespan) then keeps the collector off the loop's back:

* every second it freezes what survived that long, in constant time: no collection walks it
  again, and it is still freed by reference counting the moment it is no longer used;
* a young collection runs only if 100,000 more tracked objects exist than a second before
  (Python: 700), so only a burst of allocation triggers one, and it walks at most that second;
* a full collection (unfreeze, collect, freeze) runs every 10 minutes, or sooner once the
  process's peak memory has grown by half since the last one (a system call a second; counting
  the frozen objects would walk them all, tens of milliseconds): what became garbage in
  reference cycles after surviving a second is freed then. It is the one pause left, about
  100 ms at a thousand speaking sessions.

From Python 3.14 the collector is incremental (no collection stops the world for long): only
the freeze at start applies there. ``--gc python`` keeps Python's own settings.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import Literal

import anyio

__all__ = [
    "FULL_COLLECTION_EVERY",
    "FULL_COLLECTION_INTERVAL",
    "YOUNG_COLLECTION_AFTER",
    "GCPolicy",
    "collect_periodically",
    "full_collection",
    "peak_memory",
    "tune_collector",
]

GCPolicy = Literal["tuned", "python"]

YOUNG_COLLECTION_AFTER = 100_000  # more tracked objects than a second before; Python: 700
FULL_COLLECTION_EVERY = 100  # middle-generation collections between full ones; Python: 10
FULL_COLLECTION_INTERVAL = 600.0  # seconds between full collections at the most
FREEZE_EVERY = 1.0  # seconds: what survived that long is frozen
GROWTH_LIMIT = 0.5  # peak memory grown by half since the last full collection: one now

logger = logging.getLogger(__name__)

_interval: float | None = None  # set by the tuned policy where it takes over collections
_baseline: int | None = None  # peak memory at the last full collection
_last_full = 0.0  # when it ran (time.monotonic)


def tune_collector(policy: GCPolicy = "tuned") -> None:
    """Apply ``policy`` to this process (call once its app is built, before it serves)."""
    global _interval
    if policy == "python":
        return
    if policy != "tuned":
        raise ValueError(f"unknown garbage-collector policy {policy!r}: tuned or python")
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    if sys.version_info < (3, 14):
        young, middle, _ = gc.get_threshold()
        if young > 0:  # 0: automatic collection is off, and stays so
            young = max(young, YOUNG_COLLECTION_AFTER)
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
        _interval = FULL_COLLECTION_INTERVAL
    logger.debug(
        "garbage collector: %d objects frozen, thresholds %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
    )


async def collect_periodically(interval: float | None = None) -> None:
    """Freeze survivors every second and run full collections (see the module docstring):
    at least every ``interval`` seconds (default: the tuned policy's; nothing at all when the
    policy is not applied), sooner when peak memory grew by half. Runs until cancelled.
    """
    global _baseline, _last_full
    every = _interval if interval is None else interval
    if every is None:
        return
    if _baseline is None:
        _baseline, _last_full = peak_memory(), time.monotonic()
    while True:
        await anyio.sleep(min(FREEZE_EVERY, every))
        gc.freeze()
        if time.monotonic() - _last_full >= every or peak_memory() > _baseline * (1 + GROWTH_LIMIT):
            full_collection()


def full_collection() -> int:
    """Collect everything, frozen objects included, and freeze what survives (the growth that
    makes :func:`collect_periodically` run one is counted from here); returns how many
    unreachable objects were found."""
    global _baseline, _last_full
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    _baseline, _last_full = peak_memory(), time.monotonic()
    logger.debug(
        "full collection: %d unreachable, %.1f ms", found, (time.perf_counter() - started) * 1000
    )
    return found


def peak_memory() -> int:
    """The process's peak resident memory (its own unit: only ratios of it are used); 0 where
    the platform does not say (Windows: full collections then come by the clock alone)."""
    try:
        import resource
    except ImportError:
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
