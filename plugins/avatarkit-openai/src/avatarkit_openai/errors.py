"""Turning OpenAI SDK (and transport) exceptions into avatarkit errors that say what to fix.

Retrying is the SDK's job (``max_retries``): by the time an exception reaches us it is final, so
messages say how often it was tried. Keys never reach a message: the configured key is redacted
and anything shaped like a key (the API echoes a masked one on 401) is scrubbed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2
import openai

from avatarkit.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    redact,
)

__all__ = ["ErrorContext", "map_error"]

_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")
_MAX_BODY = 2000


@dataclass(frozen=True)
class ErrorContext:
    """What the provider was doing, to name it in messages."""

    provider: str  # e.g. "openai LLM"
    model: str
    base_url: str
    api_key: str
    timeout: float
    max_retries: int

    def clean(self, text: str) -> str:
        return _KEY_LIKE.sub("***", redact(text, [self.api_key]))


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


def _body_text(body: object) -> str | None:
    if body is None:
        return None
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text[:_MAX_BODY]


def _tries(ctx: ErrorContext) -> str:
    return f"after {ctx.max_retries + 1} attempts" if ctx.max_retries else "(max_retries is 0)"


def _status_error(exc: openai.APIStatusError, ctx: ErrorContext) -> ProviderHTTPError:
    status = exc.status_code
    detail = _server_message(exc.body)
    said = f" (server said: {detail})" if detail else ""
    code = exc.code if isinstance(exc.code, str) else None
    retryable: bool | None = None
    if status == 401:
        message = (
            f"authentication failed at {ctx.base_url}: check the api_key option or "
            f"OPENAI_API_KEY{said}"
        )
    elif status == 403:
        message = f"permission denied: this key may not use model {ctx.model!r}{said}"
    elif status == 404:
        message = (
            f"model {ctx.model!r} or the endpoint was not found at {ctx.base_url}: check the "
            f"model option (and base_url){said}"
        )
    elif status in (400, 422):
        message = f"the request was rejected: check the options{said}"
    elif status == 429 and code == "insufficient_quota":
        message = f"quota exhausted: check the account's plan and billing{said}"
        retryable = False
    elif status == 429:
        message = (
            f"rate limited, still {_tries(ctx)}: slow down, raise max_retries or the "
            f"account's limits{said}"
        )
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
        retryable=retryable,
    )


def map_error(exc: BaseException, ctx: ErrorContext, *, mid_stream: bool = False) -> ProviderError:
    """The avatarkit error for an SDK or transport exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, ctx)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderTimeout(
            f"no answer from {ctx.base_url} within timeout={ctx.timeout}s {_tries(ctx)}: "
            "raise the timeout option or check the server",
            provider=ctx.provider,
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__ if isinstance(exc, openai.APIConnectionError) else exc
        why = f" ({type(cause).__name__}: {ctx.clean(str(cause))})" if cause else ""
        if mid_stream:
            message = f"the connection to {ctx.base_url} dropped in the middle of the reply{why}"
        else:
            message = (
                f"cannot reach {ctx.base_url} {_tries(ctx)}{why}: is the server running and "
                "base_url right?"
            )
        return ProviderConnectionError(ctx.clean(message), provider=ctx.provider)
    if isinstance(exc, openai.APIError):  # an error event inside a 200 stream
        detail = _server_message(exc.body) or exc.message
        kind = exc.type or ""
        retryable = any(word in kind for word in ("server", "overloaded", "rate", "timeout"))
        return ProviderError(
            ctx.clean(f"the server reported an error mid-stream: {detail}"),
            provider=ctx.provider,
            retryable=retryable,
        )
    return ProviderError(
        ctx.clean(f"unexpected {type(exc).__name__}: {exc}"), provider=ctx.provider
    )
