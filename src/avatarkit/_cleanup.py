"""Closing what a session opened, bounded: a provider that hangs while closing cannot hang the
session's ``interrupt()`` or ``close()``.

Every helper here runs shielded from cancellation (cleanup must happen even when the caller was
cancelled) and gives up after ``seconds``, logging a warning that names the provider.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from avatarkit.errors import redact_exception

Secrets = Callable[[], Iterable[object]]

__all__ = ["aclose_stream", "close_provider", "exit_provider", "maybe_await", "name_of"]

logger = logging.getLogger("avatarkit.session")


def name_of(provider: object) -> str:
    return type(provider).__name__


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _no_secrets() -> Iterable[object]:
    return ()


async def aclose_stream(stream: object, seconds: float, owner: object) -> None:
    """``stream.aclose()`` (an LLM or TTS stream), shielded and bounded; failures are logged."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(seconds) as scope:
        try:
            await aclose()
        except Exception as exc:
            # the type only: the message may quote a request (and its key)
            logger.debug("closing a stream of %s failed: %s", name_of(owner), type(exc).__name__)
    if scope.cancelled_caught:
        logger.warning(
            "a stream of %s did not close within %.1f s; left behind", name_of(owner), seconds
        )


async def close_provider(
    provider: object, close: Callable[[], Any], seconds: float, secrets: Secrets = _no_secrets
) -> None:
    """``provider.close()``, shielded and bounded; failures are logged (cleaned of
    ``secrets()``), never raised."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(seconds) as scope:
        try:
            await maybe_await(close())
        except Exception as exc:
            error = redact_exception(exc, secrets())
            logger.error("closing %s failed", name_of(provider), exc_info=error)
    if scope.cancelled_caught:
        logger.warning("%s did not close within %.1f s; left behind", name_of(provider), seconds)


async def exit_provider(provider: Any, seconds: float, secrets: Secrets = _no_secrets) -> None:
    """``provider.__aexit__(None, None, None)`` for a context-manager provider, like
    :func:`close_provider`."""
    await close_provider(provider, lambda: provider.__aexit__(None, None, None), seconds, secrets)
