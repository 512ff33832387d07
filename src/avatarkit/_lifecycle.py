"""Starting a session's providers once and closing each exactly once.

Safe under concurrency and cancellation: several ``start()`` calls start the providers once;
:meth:`Providers.stop_starting` (used by ``close()``) cancels a start in progress, which then
closes every provider that had started, including one that finishes starting regardless; each
close is bounded (:mod:`avatarkit._cleanup`), so a provider that hangs there is left behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio

from avatarkit._cleanup import Secrets, close_provider, exit_provider, maybe_await
from avatarkit.errors import SessionError

__all__ = ["Providers"]


class Providers:
    """The started/closed state of a session's providers (``None`` entries are skipped, and an
    object given twice counts once)."""

    def __init__(self, providers: Sequence[Any], *, cleanup: float, secrets: Secrets) -> None:
        # One object may fill two roles (an LLM that is also the TTS): it starts and closes once.
        unique: dict[int, Any] = {id(p): p for p in providers if p is not None}
        self._providers = list(unique.values())
        self._cleanup = cleanup
        self._secrets = secrets
        self._stack = AsyncExitStack()
        self.started = False
        self._stopping = False  # close() has begun: no start may succeed any more
        self._done: anyio.Event | None = None  # set when a start() attempt has ended
        self._scope: anyio.CancelScope | None = None

    async def start(self, prepare: Callable[[], Awaitable[None]]) -> None:
        """Run ``prepare()`` then start each provider in order; once, whoever calls.

        Raises :class:`SessionError` if :meth:`stop_starting` stopped it (or stopped the start
        this call waited for); a provider's own failure is raised as is, after every provider
        started so far was closed.
        """
        if self._done is not None:  # started, or starting in another task
            with anyio.CancelScope(shield=True):
                await self._done.wait()
            if self._stopping:
                raise SessionError("the session was closed while starting")
            if not self.started:
                raise SessionError("starting the session failed in another task")
            return
        done = self._done = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                await prepare()
                for provider in self._providers:
                    await self._start_one(provider)
            self._scope = None
            if scope.cancelled_caught or self._stopping:
                raise SessionError("the session was closed while starting")
            self.started = True
        except BaseException:
            self._scope = None
            with anyio.CancelScope(shield=True):
                await self._stack.aclose()
            if not self._stopping:
                self._done = None  # a failed start may be tried again
            raise
        finally:
            done.set()

    async def _start_one(self, provider: Any) -> None:
        if hasattr(provider, "__aenter__") and hasattr(provider, "__aexit__"):
            await provider.__aenter__()
            self._stack.push_async_callback(exit_provider, provider, self._cleanup, self._secrets)
            return
        close = getattr(provider, "close", None)
        if close is not None:
            # Registered before start: a provider whose start fails is closed too (close is
            # idempotent by contract), so a half-created paid session is never left running.
            self._stack.push_async_callback(
                close_provider, provider, close, self._cleanup, self._secrets
            )
        start = getattr(provider, "start", None)
        if start is not None:
            await maybe_await(start())

    async def stop_starting(self) -> None:
        """No start succeeds from now on; cancel one in progress and wait until it has closed
        what it started. Call it shielded."""
        self._stopping = True
        done = self._done
        if done is not None and not done.is_set():
            if self._scope is not None:
                self._scope.cancel()
            await done.wait()

    async def close(self) -> None:
        """Close every provider started, each once (bounded). Call it shielded."""
        await self._stack.aclose()
