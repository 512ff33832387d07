"""Turning an HTTP service's failures into avatarkit errors that say what to fix.

For plugin authors whose provider calls a keyed HTTP API through a client that retries on its
own (the OpenAI and Anthropic SDKs do): by the time a failure reaches the provider it is final,
so these messages say how often it was tried. The plugin keeps the SDK-specific part (which
exception class means what, where the server's message sits in the body) and hands the facts to
:func:`status_error`, :func:`timeout_error`, :func:`connection_error` or
:func:`unexpected_error`; users then read the same advice whichever provider failed.
:func:`streamed_response` applies such a mapping around a streamed reply and always closes it.

Secrets never reach a message: :meth:`RequestContext.clean` redacts the configured key and
anything shaped like a key (APIs echo a masked key on 401).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

import anyio
import httpx
from pydantic import SecretStr

from avatarkit.credentials import resolve_api_key
from avatarkit.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
    redact,
)

__all__ = [
    "KeyedClient",
    "RequestContext",
    "bad_event_data",
    "connection_error",
    "keyed_context",
    "not_an_event_stream",
    "status_error",
    "streamed_response",
    "timeout_error",
    "unexpected_error",
]

#: Longest server body kept on a :class:`~avatarkit.errors.ProviderHTTPError`.
_MAX_BODY = 2000


@dataclass(frozen=True)
class RequestContext:
    """What the provider was doing, to name it in messages and scrub it from them."""

    #: Who failed, e.g. ``"openai LLM"``; starts every message.
    provider: str
    #: Where the request went (shown in connection, timeout and 401/404 messages).
    base_url: str
    #: The model asked for (shown in 403/404 messages).
    model: str
    #: The key sent; redacted from every message and body.
    api_key: str
    #: The environment variable the key may come from, named in the 401 advice.
    key_env_var: str
    #: Seconds the client waits; named in the timeout message.
    timeout: float
    #: The client's own retries; messages say "after N attempts".
    max_retries: int
    #: What the provider's keys look like (e.g. ``sk-...``), scrubbed even when not ours.
    key_pattern: re.Pattern[str] | None = None

    def clean(self, text: str) -> str:
        """``text`` without the configured key or anything shaped like a key."""
        text = redact(text, [self.api_key])
        return self.key_pattern.sub("***", text) if self.key_pattern else text

    def tries(self) -> str:
        """How often the request was sent, for "still ... after 3 attempts" messages."""
        if self.max_retries:
            return f"after {self.max_retries + 1} attempts"
        return "(max_retries is 0)"


def keyed_context(
    *,
    provider: str,
    api_key: SecretStr | str | None,
    env_var: str,
    key_pattern: re.Pattern[str] | None,
    base_url: str,
    model: str,
    timeout: float,
    max_retries: int = 0,
) -> RequestContext:
    """Resolve a provider's key and build the context that names it and scrubs it.

    The key follows :func:`avatarkit.credentials.resolve_api_key` (the ``api_key`` option, then
    ``$env_var``, then none for a server on this machine; else a
    :class:`~avatarkit.errors.ConfigError`), so call this when the provider is built. The
    context's ``api_key`` is the key to send. ``key_pattern`` is what the service's keys look
    like, scrubbed from messages even when not ours; ``max_retries`` is the client's own.
    """
    key = resolve_api_key(api_key, env_var=env_var, base_url=base_url, provider=provider)
    return RequestContext(
        provider=provider,
        base_url=base_url,
        model=model,
        api_key=key,
        key_env_var=env_var,
        timeout=timeout,
        max_retries=max_retries,
        key_pattern=key_pattern,
    )


def _advice(status: int, ctx: RequestContext) -> str:
    if status == 401:
        return (
            f"authentication failed at {ctx.base_url}: check the api_key option or "
            f"{ctx.key_env_var}"
        )
    if status == 403:
        return f"permission denied: this key may not use model {ctx.model!r}"
    if status == 404:
        return (
            f"model {ctx.model!r} or the endpoint was not found at {ctx.base_url}: check the "
            "model option (and base_url)"
        )
    if status in (400, 422):
        return "the request was rejected: check the options"
    if status == 429:
        return (
            f"rate limited, still {ctx.tries()}: slow down, raise max_retries or the "
            "account's limits"
        )
    if status >= 500:
        return f"server error, still {ctx.tries()}: try again later"
    return "unexpected error status"


def _body_text(body: object) -> str:
    if body is None:
        return ""
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text[:_MAX_BODY]


def status_error(
    status: int,
    ctx: RequestContext,
    *,
    detail: str | None = None,
    advice: str | None = None,
    request_id: str | None = None,
    body: object = None,
    retryable: bool | None = None,
) -> ProviderHTTPError:
    """The error for an answer with error ``status``.

    ``detail`` is the server's own explanation, quoted after the advice. ``advice`` replaces
    the standard one for statuses only this provider knows (e.g. Anthropic's 529). ``body``
    (text or parsed JSON) is kept, cleaned and truncated, on the error; ``retryable`` defaults
    to :class:`~avatarkit.errors.ProviderHTTPError`'s rule (408, 429, 5xx).
    """
    said = f" (server said: {detail})" if detail else ""
    message = f"{advice or _advice(status, ctx)}{said}"
    return ProviderHTTPError(
        ctx.clean(message),
        provider=ctx.provider,
        status_code=status,
        request_id=request_id,
        body=ctx.clean(_body_text(body)) or None,
        retryable=retryable,
    )


def timeout_error(ctx: RequestContext) -> ProviderTimeout:
    """The error for a request that got no answer within ``ctx.timeout`` on any attempt."""
    return ProviderTimeout(
        f"no answer from {ctx.base_url} within timeout={ctx.timeout}s {ctx.tries()}: "
        "raise the timeout option or check the server",
        provider=ctx.provider,
    )


def connection_error(
    ctx: RequestContext, cause: BaseException | None, *, mid_stream: bool = False
) -> ProviderConnectionError:
    """The error for a connection that could not be made or, ``mid_stream``, dropped.

    ``cause`` is the transport's own exception (named, with its message, in ours).
    """
    why = f" ({type(cause).__name__}: {cause})" if cause else ""
    if mid_stream:
        message = f"the connection to {ctx.base_url} dropped in the middle of the reply{why}"
    else:
        message = (
            f"cannot reach {ctx.base_url} {ctx.tries()}{why}: is the server running and "
            "base_url right?"
        )
    return ProviderConnectionError(ctx.clean(message), provider=ctx.provider)


def unexpected_error(ctx: RequestContext, exc: BaseException) -> ProviderError:
    """The error for anything else the client raised (named by type, not retryable)."""
    return ProviderError(
        ctx.clean(f"unexpected {type(exc).__name__}: {exc}"), provider=ctx.provider
    )


def not_an_event_stream(ctx: RequestContext, content_type: str | None) -> ProviderError | None:
    """The error for a successful answer to a streaming request that is not an event stream
    (a proxy's or captive portal's HTML page, a server that ignores ``stream``), else None."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "text/event-stream":
        return None
    return ProviderError(
        ctx.clean(
            f"{ctx.base_url} answered the streaming request with a body that is not an event "
            f"stream: expected an event stream, got {kind or 'no content type'} (a proxy or "
            "login page in the way, or base_url is not the API?)"
        ),
        provider=ctx.provider,
    )


def bad_event_data(ctx: RequestContext, exc: json.JSONDecodeError) -> ProviderError:
    """The error for a server-sent event whose data is not the JSON the protocol says."""
    return ProviderError(
        ctx.clean(
            f"{ctx.base_url} sent an event whose data is not JSON ({exc.msg}): {exc.doc[:120]!r}"
        ),
        provider=ctx.provider,
    )


class _Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


_ResponseT = TypeVar("_ResponseT", bound=_Closable)


@asynccontextmanager
async def streamed_response(
    opening: Awaitable[_ResponseT],
    *,
    errors: type[BaseException] | tuple[type[BaseException], ...],
    to_error: Callable[[BaseException, bool], ProviderError],
) -> AsyncIterator[_ResponseT]:
    """Open a streamed reply, read it in the block, and close it however the block ends.

    ``opening`` is the client's request (e.g. an SDK's ``create(..., stream=True)``), awaited
    here; the response it gives needs an async ``close()``. A client exception of the
    ``errors`` types becomes ``to_error(exc, mid_stream)``: ``False`` while opening, ``True``
    while reading, when the connection dropped partway. The response is closed on leaving the
    block, shielded from cancellation, even when the consumer stops early (an interrupt), so the
    server sees the disconnect and stops generating::

        opening = client.chat.completions.create(model=m, messages=history, stream=True)
        async with streamed_response(opening, errors=..., to_error=...) as stream:
            async for chunk in stream:
                yield chunk.text
    """
    try:
        response = await opening
    except errors as exc:
        raise to_error(exc, False) from None
    try:
        yield response
    except errors as exc:
        raise to_error(exc, True) from None
    finally:
        with anyio.CancelScope(shield=True):
            await response.close()


class KeyedClient:
    """An optional base for a provider that calls a keyed service with its own httpx client.

    It owns one ``httpx.AsyncClient`` from ``start()`` to ``close()`` (idempotent; also an async
    context manager) and declares its key through ``secrets``, which the session keeps out of
    every error and event. Set ``self._ctx`` (a :class:`RequestContext`) and ``self._timeout``
    in ``__init__``. Nothing else is assumed: the provider protocols need no base class.
    """

    _ctx: RequestContext
    _timeout: float
    _client: httpx.AsyncClient | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an error or event."""
        return (self._ctx.api_key,)

    async def start(self) -> None:
        if self._client is None:
            from avatarkit.websocket import read_refused_handshake  # (it imports this module)

            # a refused WebSocket handshake keeps its body, for the error to quote
            hooks = {"response": [read_refused_handshake]}
            self._client = httpx.AsyncClient(timeout=self._timeout, event_hooks=hooks)

    async def close(self) -> None:
        """Close the client, even from a cancelled scope (its connections must not leak)."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
