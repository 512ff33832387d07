"""SIGTERM means drain: the app's lifespan puts its own handler in front of uvicorn's.

uvicorn alone answers SIGTERM by closing every WebSocket at once (1012), which cuts running
turns. Here the first SIGTERM (or SIGINT) starts :meth:`ServeState.drain` instead: readiness
turns false, this process stops accepting connections (its copy of the listening socket is
closed; other workers sharing the port keep theirs), pages are told, turns get the grace period,
every session is closed — then uvicorn's own handler is called and it exits as usual.

A second Ctrl-C (SIGINT) goes straight to uvicorn: it stops waiting for turns, closes every
socket (1012) and the sessions still close (a third one makes uvicorn quit without waiting).
Any other signal during a drain lets it go on: the supervisor's SIGTERM after a terminal's
Ctrl-C reached every worker, and a repeated SIGTERM, which is how one stop request arrives when
a service manager signals every process of the unit (systemd's ``KillMode=control-group``,
``kill -TERM -PGID``) and the supervisor then signals its workers too. Orchestrators and
service managers send SIGTERM once and SIGKILL when their grace is over.

Signals are only handled in the main thread: an app served from another thread (tests, an
embedding app) drains when :meth:`ServeState.drain` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from avatarkit.serve.collector import collect_periodically
from avatarkit.serve.state import ServeState

__all__ = ["drain_on_signals"]

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop_listening(previous: Any) -> None:
    """Close this process's listening sockets when the handler we replace is uvicorn's
    (``Server.handle_exit``): new connections then go to the other workers."""
    server = getattr(previous, "__self__", None)
    for listener in getattr(server, "servers", None) or ():
        with contextlib.suppress(Exception):
            listener.close()


def drain_on_signals(state: ServeState, grace: float) -> Callable[[Any], Any]:
    """A Starlette ``lifespan`` that turns the first SIGTERM/SIGINT into a drain."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        # The tuned collector's full collections (nothing under --gc python).
        collecting = asyncio.get_running_loop().create_task(collect_periodically())
        try:
            async with signals():
                yield
        finally:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting

    @contextlib.asynccontextmanager
    async def signals() -> AsyncIterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        previous: dict[int, Any] = {int(sig): signal.getsignal(sig) for sig in _SIGNALS}
        tasks: set[asyncio.Task[None]] = set()

        async def drain_then_exit(sig: int) -> None:
            try:
                await state.drain(grace)
            finally:
                handler = previous[sig]
                if callable(handler):
                    handler(sig, None)  # uvicorn's: it shuts down now that nothing is left

        received: set[int] = set()

        def begin(sig: int) -> None:
            if state.draining:
                if sig == signal.SIGINT and sig in received:  # Ctrl-C twice: stop waiting
                    handler = previous[sig]
                    if callable(handler):
                        handler(sig, None)
                else:  # one stop request delivered twice, or a supervisor's SIGTERM after it
                    logger.info(
                        "%s: already draining (Ctrl-C twice stops waiting for turns)",
                        signal.Signals(sig).name,
                    )
                received.add(sig)
                return
            received.add(sig)
            logger.info("%s: draining before exit", signal.Signals(sig).name)
            _stop_listening(previous[sig])
            task = loop.create_task(drain_then_exit(sig))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def on_signal(sig: int, frame: Any) -> None:
            loop.call_soon_threadsafe(begin, sig)

        for sig in _SIGNALS:
            signal.signal(sig, on_signal)
        try:
            yield
        finally:
            for number, handler in previous.items():
                if signal.getsignal(number) is on_signal:
                    signal.signal(number, handler)

    return lifespan
