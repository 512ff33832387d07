"""One background coroutine that outlives the call that started it, on asyncio and trio.

A renderer's ``start()`` and ``close()`` are separate calls (the session may even make them from
different tasks), so no task group can span them: entering one in ``start`` and leaving it in
``close`` breaks anyio's nesting rules and would let a background failure cancel the caller.
Instead the coroutine runs detached (an asyncio task or a trio system task) inside its own cancel
scope, never raises, and :meth:`Background.stop` cancels it and waits until it has finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
import sniffio

__all__ = ["Background", "Inflight"]

logger = logging.getLogger(__name__)


class Background:
    """Runs ``func()`` detached until it returns or :meth:`stop` is called."""

    def __init__(self, func: Callable[[], Awaitable[None]], *, name: str) -> None:
        self._func = func
        self._name = name
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._started = False
        self._task: asyncio.Task[None] | None = None  # a strong reference (asyncio keeps weak)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        library = sniffio.current_async_library()
        if library == "asyncio":
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)
        elif library == "trio":
            import trio

            trio.lowlevel.spawn_system_task(self._run, name=self._name)
        else:  # pragma: no cover - anyio supports only these two
            raise RuntimeError(f"unsupported async library {library!r}")

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._func()
        except Exception:
            logger.exception("background task %s failed", self._name)
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Cancel the coroutine and wait for it to finish (shielded: safe while cancelled)."""
        self._scope.cancel()
        if not self._started:
            return
        with anyio.CancelScope(shield=True):
            await self._done.wait()
        self._task = None


class Inflight:
    """Calls in progress on a renderer that ``close()`` cuts short and waits for.

    Each call runs under :meth:`track`'s cancel scope; :meth:`close` cancels them all and waits
    until every one has left, so nothing of the renderer's is still awaiting (a request on a
    client about to be closed, a publish on a transport about to be left) once close returns.
    A call tracked after close() is cancelled at its first await. A call of the task that runs
    close() itself (a callback closing the renderer) is cancelled but not waited for.
    """

    def __init__(self) -> None:
        self._scopes: dict[anyio.CancelScope, int] = {}  # scope -> id of the task running it
        self._changed: anyio.Event | None = None  # made in close(): needs a running loop
        self._closed = False

    @contextmanager
    def track(self) -> Iterator[anyio.CancelScope]:
        """Run the ``with`` body as one call; ``scope.cancelled_caught`` says close cut it."""
        scope = anyio.CancelScope()
        if self._closed:
            scope.cancel()
        self._scopes[scope] = anyio.get_current_task().id
        try:
            with scope:
                yield scope
        finally:
            del self._scopes[scope]
            if self._changed is not None:
                self._changed.set()

    async def close(self) -> None:
        """Cancel every tracked call and wait for them all to finish (shielded)."""
        self._closed = True
        me = anyio.get_current_task().id
        with anyio.CancelScope(shield=True):
            while True:
                for scope in self._scopes:
                    scope.cancel()
                if all(task == me for task in self._scopes.values()):
                    return
                changed = self._changed = anyio.Event()
                await changed.wait()
