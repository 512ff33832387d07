"""Background tasks that live from a renderer's ``start()`` to its ``close()``.

Why not a task group: a renderer's ``start`` and ``close`` are separate calls. A task group
entered in ``start`` would sit in the caller's cancel-scope stack until ``close``, which the
session calls from inside its own shielded scope — exiting it there is an error in anyio and trio,
and a crashing child would cancel the caller. So each task here is a root task of the event loop
(an asyncio task, or a trio system task) wrapped in its own cancel scope: cancelled and awaited by
:meth:`Background.aclose`, failures logged, never propagated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["Background"]

logger = logging.getLogger(__name__)


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Background:
    """A small set of owned root tasks (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._scopes: set[anyio.CancelScope] = set()
        self._running = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._closed = False
        self._asyncio_tasks: set[asyncio.Task[None]] = set()  # strong refs (asyncio needs them)

    def spawn(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``func(*args)`` until it returns or :meth:`aclose` cancels it."""
        if self._closed:
            raise RuntimeError(f"{self.name}: background tasks already closed")
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        if self._running == 0:
            self._idle = anyio.Event()
        self._running += 1
        label = f"{self.name}:{getattr(func, '__name__', 'task')}"

        async def runner() -> None:
            try:
                with scope:
                    await func(*args)
            except Exception:
                logger.exception("%s failed", label)
            finally:
                self._scopes.discard(scope)
                self._running -= 1
                if self._running == 0:
                    self._idle.set()

        if _on_asyncio():
            task = asyncio.get_running_loop().create_task(runner(), name=label)
            self._asyncio_tasks.add(task)
            task.add_done_callback(self._asyncio_tasks.discard)
        else:
            import trio

            trio.lowlevel.spawn_system_task(runner, name=label)

    async def aclose(self, grace: float = 5.0) -> None:
        """Cancel every task and wait (shielded, at most ``grace`` seconds) until they end."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace) as waited:
            await self._idle.wait()
        if waited.cancelled_caught:
            logger.warning("%s: %d background task(s) did not stop", self.name, self._running)
