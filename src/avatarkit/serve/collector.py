"""The garbage collector's settings for a process that holds many sessions.

No session's audio moves while CPython's collector runs, and with a thousand speaking sessions
its collections were most of the event loop's lag (docs/performance.md):

* a young collection walks every tracked object created since the last one that is still
  alive, and a speaking turn's objects (tasks, scopes, sentences) live for seconds: with a
  thousand speaking sessions that was 20,000-35,000 objects, 2-12 ms, about 70 times a second;
  every tenth one also walked the middle generation (10-40 ms);
* a full collection walks every object (about 190,000, 100-250 ms) and ran every 1-2 s.

Yet a turn leaves no garbage in reference cycles (tested): everything it makes is freed by
reference counting as it ends. A serve process therefore, once its app is built, (1) freezes
what exists by then (modules, classes, the app: never garbage, and no longer walked by any
collection), (2) runs a young collection only once 100,000 more tracked objects exist than at
the last one (Python: 700), which a steady load never reaches while garbage in cycles, if some
code makes it, still triggers it, and (3) runs a full collection itself every 10 minutes
(:func:`collect_periodically`, from the serve app's lifespan): what reached the oldest
generation and became garbage in cycles there is freed then. From Python 3.14 the collector is
incremental (no collection stops the world for long) and only (1) applies.

``--gc python`` keeps Python's own settings.
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
    "tune_collector",
]

GCPolicy = Literal["tuned", "python"]

YOUNG_COLLECTION_AFTER = 100_000  # more tracked objects than at the last young collection; 700
FULL_COLLECTION_EVERY = 100  # middle-generation collections between full ones; Python: 10
FULL_COLLECTION_INTERVAL = 600.0  # seconds between the full collections the process runs

logger = logging.getLogger(__name__)

_interval: float | None = None  # set by the tuned policy where it takes over full collections


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
    """Run a full collection every ``interval`` seconds (default: the tuned policy's, and
    nothing when it is not applied); runs until cancelled."""
    every = _interval if interval is None else interval
    if every is None:
        return
    while True:
        await anyio.sleep(every)
        started = time.perf_counter()
        found = gc.collect()
        logger.debug(
            "full collection: %d unreachable objects, %.1f ms",
            found,
            (time.perf_counter() - started) * 1000,
        )
