"""The garbage collector's settings for a process that holds many sessions.

CPython's full collection walks every object it tracks, and no session's audio moves while it
runs: with a thousand speaking sessions that is about 250,000 objects and 100-250 ms. It runs
once a quarter again as many objects have reached the oldest generation as were there after the
last one, and a speaking turn's objects (its tasks, scopes, sentences) live for seconds and get
there, so with a thousand speaking sessions it ran every 1-2 s (docs/performance.md).

A serve process therefore, once its app is built, (1) freezes what exists by then (modules,
classes, the app: never garbage, and no longer walked by any collection) and (2) considers a
full collection only after 100 young collections instead of Python's 10: about every 15 s at a
thousand speaking sessions instead of every 1.5 s. Young collections, which are short, are
unchanged, and garbage in reference cycles is still collected, only later. From Python 3.14 the
collector is incremental (its full collections no longer stop the world) and only (1) applies.
``--gc python`` keeps Python's own settings.
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Literal

__all__ = ["FULL_COLLECTION_EVERY", "GCPolicy", "tune_collector"]

GCPolicy = Literal["tuned", "python"]

FULL_COLLECTION_EVERY = 100  # young (generation 1) collections between full ones; Python: 10

logger = logging.getLogger(__name__)


def tune_collector(policy: GCPolicy = "tuned") -> None:
    """Apply ``policy`` to this process (call once its app is built, before it serves)."""
    if policy == "python":
        return
    if policy != "tuned":
        raise ValueError(f"unknown garbage-collector policy {policy!r}: tuned or python")
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    if sys.version_info < (3, 14):
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    logger.debug(
        "garbage collector: %d objects frozen, thresholds %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
    )
