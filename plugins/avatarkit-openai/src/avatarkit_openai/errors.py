"""Turning OpenAI SDK (and transport) exceptions into avatarkit errors that say what to fix.

This module knows the SDK's exception classes and where the API puts its message; the wording
and secret scrubbing are :mod:`avatarkit.http`'s, shared with other providers. Retrying is the
SDK's job (``max_retries``): by the time an exception reaches us it is final.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import httpx2
import openai

from avatarkit.errors import ProviderError
from avatarkit.http import (
    RequestContext,
    connection_error,
    status_error,
    timeout_error,
    unexpected_error,
)

__all__ = ["error_context", "map_error"]

_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")


#: The context :func:`map_error` needs, with this provider's key variable and key shape.
error_context = functools.partial(
    RequestContext, key_env_var="OPENAI_API_KEY", key_pattern=_KEY_LIKE
)


def _server_message(body: object) -> str | None:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message")
            if isinstance(message, str) and message:
                return message
        elif isinstance(inner, str) and inner:
            return inner
        message = body.get("message") or body.get("detail")
        return message if isinstance(message, str) else None
    if isinstance(body, str) and body:
        return body[:300]
    return None


def map_error(
    exc: BaseException, ctx: RequestContext, *, mid_stream: bool = False
) -> ProviderError:
    """The avatarkit error for an SDK or transport exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        advice: str | None = None
        retryable: bool | None = None
        if exc.status_code == 429 and exc.code == "insufficient_quota":
            advice, retryable = "quota exhausted: check the account's plan and billing", False
        return status_error(
            exc.status_code,
            ctx,
            detail=_server_message(exc.body),
            advice=advice,
            request_id=exc.request_id,
            body=exc.body,
            retryable=retryable,
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return timeout_error(ctx)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else exc
        return connection_error(ctx, cause, mid_stream=mid_stream)
    if isinstance(exc, openai.APIError):  # an error event inside a 200 stream
        detail = _server_message(exc.body) or exc.message
        kind = exc.type or ""
        retryable = any(word in kind for word in ("server", "overloaded", "rate", "timeout"))
        return ProviderError(
            ctx.clean(f"the server reported an error mid-stream: {detail}"),
            provider=ctx.provider,
            retryable=retryable,
        )
    return unexpected_error(ctx, exc)
