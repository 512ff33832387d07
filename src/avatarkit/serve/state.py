"""What one serve process knows about itself: its sessions, its limit, whether it is draining.

``/healthz`` (alive) and ``/readyz`` (taking new pages: under its limit and not draining) read it;
connections take and release session slots through it; :meth:`ServeState.drain` is the graceful
stop that SIGTERM starts (see :mod:`avatarkit.serve.lifecycle`).
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Protocol

import anyio

from avatarkit.serve.auth import Auth, StartLimiter
from avatarkit.serve.metrics import ServeMetrics

__all__ = ["DEFAULT_DRAIN_GRACE", "PageHandle", "ServeState"]

logger = logging.getLogger(__name__)

#: Seconds running turns get to finish when draining, before every session is closed.
DEFAULT_DRAIN_GRACE = 20.0


class PageHandle(Protocol):
    """A live connection, as draining sees it."""

    def going_away(self, grace: float) -> None:
        """Tell the page (once) and refuse new starts and messages from now on."""

    async def wait_idle(self) -> None:
        """Return when no turn is running or waiting."""

    async def finish(self) -> None:
        """Close the session (stopping a paid avatar) and the socket; return when closed."""


class ServeState:
    """Session slots, connections and drain state of one process."""

    def __init__(
        self,
        max_sessions: int,
        *,
        auth: Auth | None = None,
        start_limiter: StartLimiter | None = None,
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.limit = max_sessions
        self.active = 0
        self.auth = auth or Auth()
        self.start_limiter = start_limiter or StartLimiter()
        self.metrics = metrics or ServeMetrics()
        self.draining = False
        #: An opaque name for this process, in ``hello`` and the health answers, so a page and
        #: an operator can tell which worker they reached.
        self.worker = secrets.token_hex(4)
        self.pages: set[PageHandle] = set()
        self._drained: anyio.Event | None = None

    # -- slots: one event loop, no await between check and increment: no race ------------------

    def try_acquire(self) -> bool:
        if self.draining or self.active >= self.limit:
            return False
        self.active += 1
        self.metrics.sessions_open.inc()
        return True

    def release(self) -> None:
        self.active -= 1
        self.metrics.sessions_open.dec()

    @property
    def ready(self) -> bool:
        return not self.draining and self.active < self.limit

    def health(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "sessions": self.active,
            "max_sessions": self.limit,
            "pages": len(self.pages),
            "ready": self.ready,
            "draining": self.draining,
        }

    # -- draining ----------------------------------------------------------------------------------

    async def drain(self, grace: float = DEFAULT_DRAIN_GRACE) -> None:
        """Stop taking sessions, tell every page, let running turns finish for up to ``grace``
        seconds, then close every session and socket. Idempotent; returns when done."""
        if self._drained is not None:
            await self._drained.wait()
            return
        self._drained = anyio.Event()
        self.draining = True  # /readyz says no from here on
        pages = list(self.pages)
        logger.info(
            "draining: %d page(s), %d session(s); turns get %.0f s to finish",
            len(pages),
            self.active,
            grace,
        )
        for page in pages:
            page.going_away(grace)
        with anyio.move_on_after(grace) as waited:
            async with anyio.create_task_group() as tg:
                for page in pages:
                    tg.start_soon(page.wait_idle)
        if waited.cancelled_caught:
            logger.warning("drain: turns still running after %.0f s are cut short", grace)
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for page in list(self.pages):
                    tg.start_soon(page.finish)
        logger.info("drained: every session is closed")
        self._drained.set()
