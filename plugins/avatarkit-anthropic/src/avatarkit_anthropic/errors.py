"""Turning Anthropic SDK (and transport) exceptions into avatarkit errors that say what to fix.

Retrying is the SDK's job (``max_retries``): by the time an exception reaches us it is final, so
messages say how often it was tried. The configured key is redacted and anything shaped like a
key is scrubbed from every message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import anthropic
import httpx2

from avatarkit.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    redact,
)

__all__ = ["ErrorContext", "map_error"]

_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")
_MAX_BODY = 2000
#: Error types the API may send inside a 200 stream that are worth trying again.
_RETRYABLE_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


@dataclass(frozen=True)
class ErrorContext:
    """What the provider was doing, to name it in messages."""

    provider: str
    model: str
    base_url: str
    api_key: str
    timeout: float
    max_retries: int

    def clean(self, text: str) -> str:
        return _KEY_LIKE.sub("***", redact(text, [self.api_key]))


def _error_field(body: object, name: str) -> str | None:
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            value = inner.get(name)
            return value if isinstance(value, str) else None
    return None


def _body_text(body: object) -> str | None:
    if body is None:
        return None
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text[:_MAX_BODY]


def _tries(ctx: ErrorContext) -> str:
    return f"after {ctx.max_retries + 1} attempts" if ctx.max_retries else "(max_retries is 0)"


def _status_error(exc: anthropic.APIStatusError, ctx: ErrorContext) -> ProviderError:
    status = exc.status_code
    detail = _error_field(exc.body, "message")
    kind = _error_field(exc.body, "type")
    said = f" (server said: {detail})" if detail else ""
    if status < 400:  # an ``event: error`` inside a 200 stream
        return ProviderError(
            ctx.clean(f"the server reported {kind or 'an error'} mid-stream{said}"),
            provider=ctx.provider,
            retryable=kind in _RETRYABLE_TYPES,
        )
    if status == 401:
        message = (
            f"authentication failed at {ctx.base_url}: check the api_key option or "
            f"ANTHROPIC_API_KEY{said}"
        )
    elif status == 403:
        message = f"permission denied: this key may not use model {ctx.model!r}{said}"
    elif status == 404:
        message = (
            f"model {ctx.model!r} or the endpoint was not found at {ctx.base_url}: check the "
            f"model option (and base_url){said}"
        )
    elif status == 413:
        message = f"the request is too large: shorten the history (session max_history){said}"
    elif status in (400, 422):
        message = f"the request was rejected: check the options{said}"
    elif status == 429:
        message = (
            f"rate limited, still {_tries(ctx)}: slow down, raise max_retries or the "
            f"account's limits{said}"
        )
    elif status == 529:
        message = f"the API is overloaded, still {_tries(ctx)}: try again later{said}"
    elif status >= 500:
        message = f"server error, still {_tries(ctx)}: try again later{said}"
    else:
        message = f"unexpected error status{said}"
    return ProviderHTTPError(
        ctx.clean(message),
        provider=ctx.provider,
        status_code=status,
        request_id=exc.request_id,
        body=ctx.clean(_body_text(exc.body) or "") or None,
    )


def map_error(exc: BaseException, ctx: ErrorContext, *, mid_stream: bool = False) -> ProviderError:
    """The avatarkit error for an SDK or transport exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, ctx)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ProviderTimeout(
            f"no answer from {ctx.base_url} within timeout={ctx.timeout}s {_tries(ctx)}: "
            "raise the timeout option or check the server",
            provider=ctx.provider,
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__ if isinstance(exc, anthropic.APIConnectionError) else exc
        why = f" ({type(cause).__name__}: {cause})" if cause else ""
        if mid_stream:
            message = f"the connection to {ctx.base_url} dropped in the middle of the reply{why}"
        else:
            message = (
                f"cannot reach {ctx.base_url} {_tries(ctx)}{why}: is the server running and "
                "base_url right?"
            )
        return ProviderConnectionError(ctx.clean(message), provider=ctx.provider)
    return ProviderError(
        ctx.clean(f"unexpected {type(exc).__name__}: {exc}"), provider=ctx.provider
    )
