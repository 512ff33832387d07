"""Turning Anthropic SDK (and transport) exceptions into avatarkit errors that say what to fix.

This module knows the SDK's exception classes, the API's error body and its own statuses (413,
529, errors inside a 200 stream); the wording and secret scrubbing are :mod:`avatarkit.http`'s,
shared with other providers. Retrying is the SDK's job (``max_retries``): by the time an
exception reaches us it is final.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import anthropic
import httpx2

from avatarkit.errors import ProviderError
from avatarkit.http import (
    RequestContext,
    connection_error,
    status_error,
    timeout_error,
    unexpected_error,
)

__all__ = ["error_context", "map_error"]

_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")
#: Error types the API may send inside a 200 stream that are worth trying again.
_RETRYABLE_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


#: The context :func:`map_error` needs, with this provider's key variable and key shape.
error_context = functools.partial(
    RequestContext, key_env_var="ANTHROPIC_API_KEY", key_pattern=_KEY_LIKE
)


def _error_field(body: object, name: str) -> str | None:
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            value = inner.get(name)
            return value if isinstance(value, str) else None
    return None


def _status_error(exc: anthropic.APIStatusError, ctx: RequestContext) -> ProviderError:
    status = exc.status_code
    detail = _error_field(exc.body, "message")
    if status < 400:  # an ``event: error`` inside a 200 stream
        kind = _error_field(exc.body, "type")
        said = f" (server said: {detail})" if detail else ""
        return ProviderError(
            ctx.clean(f"the server reported {kind or 'an error'} mid-stream{said}"),
            provider=ctx.provider,
            retryable=kind in _RETRYABLE_TYPES,
        )
    advice = None
    if status == 413:
        advice = "the request is too large: shorten the history (session max_history)"
    elif status == 529:
        advice = f"the API is overloaded, still {ctx.tries()}: try again later"
    return status_error(
        status, ctx, detail=detail, advice=advice, request_id=exc.request_id, body=exc.body
    )


def map_error(
    exc: BaseException, ctx: RequestContext, *, mid_stream: bool = False
) -> ProviderError:
    """The avatarkit error for an SDK or transport exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, ctx)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return timeout_error(ctx)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__ if isinstance(exc, anthropic.APIConnectionError) else exc
        return connection_error(ctx, cause, mid_stream=mid_stream)
    return unexpected_error(ctx, exc)
