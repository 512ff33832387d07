"""Closing what a session opened, bounded: a provider that hangs while closing cannot hang the
session's ``interrupt()`` or ``close()``.

Every helper here runs shielded from cancellation (cleanup must happen even when the caller was
cancelled) and gives up after ``seconds``, logging a warning that names the provider.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["aclose_stream", "close_provider", "exit_provider", "maybe_await", "name_of"]

logger = logging.getLogger("avatarkit.session")


def name_of(provider: object) -> str:
    return type(provider).__name__


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def aclose_stream(stream: object, seconds: float, owner: object) -> None:
    """``stream.aclose()`` (an LLM or TTS stream), shielded and bounded; failures are logged."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(seconds) as scope:
        try:
            await aclose()
        except Exception as exc:
            logger.debug("closing a stream of %s failed: %s", name_of(owner), exc)
    if scope.cancelled_caught:
        logger.warning(
            "a stream of %s did not close within %.1f s; left behind", name_of(owner), seconds
        )


async def close_provider(provider: object, close: Callable[[], Any], seconds: float) -> None:
    """``provider.close()``, shielded and bounded; failures are logged, never raised."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(seconds) as scope:
        try:
            await maybe_await(close())
        except Exception:
            logger.exception("closing %s failed", name_of(provider))
    if scope.cancelled_caught:
        logger.warning("%s did not close within %.1f s; left behind", name_of(provider), seconds)


async def exit_provider(provider: Any, seconds: float) -> None:
    """``provider.__aexit__(None, None, None)`` for a context-manager provider, like
    :func:`close_provider`."""
    await close_provider(provider, lambda: provider.__aexit__(None, None, None), seconds)
