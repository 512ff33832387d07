"""A WebSocket to a keyed service for plugin authors: JSON in and out, failures as our errors.

Streaming TTS and STT services (ElevenLabs, Cartesia, Deepgram) speak JSON over a WebSocket.
:class:`ServiceSocket` connects with httpx-ws (wsproto on anyio: asyncio and trio alike), turns a
refused handshake into the same :func:`~avatarkit.http.status_error` advice an HTTP provider
gives, a drop into :class:`~avatarkit.errors.ProviderConnectionError`, and scrubs the key from
every message through the provider's :class:`~avatarkit.http.RequestContext`.

A plugin that uses this module depends on ``httpx-ws``; the core does not import it at start-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack, suppress
from types import TracebackType
from typing import Any

import httpx

from avatarkit.errors import ProviderConnectionError, ProviderError, ProviderTimeout
from avatarkit.http import RequestContext, connection_error, status_error

__all__ = [
    "Base64PCM",
    "ServiceClosed",
    "ServiceSocket",
    "read_refused_handshake",
    "speech_service_error",
]

logger = logging.getLogger(__name__)

#: Audio arrives base64-encoded in JSON: far above httpx-ws's 64 KiB default.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


async def read_refused_handshake(response: httpx.Response) -> None:
    """An httpx response hook that reads the body of a WebSocket handshake answered with an
    error, while it can still be read.

    httpx-ws raises its ``WebSocketUpgradeError`` after closing the response, so without this
    the server's explanation (``{"message": "Invalid API key"}``) never reaches the error. Give
    it to the client a socket is opened with: ``httpx.AsyncClient(event_hooks={"response":
    [read_refused_handshake]})``. Other requests are left alone.
    """
    if response.status_code != 101 and response.request.headers.get("upgrade") == "websocket":
        with suppress(httpx.HTTPError):
            await response.aread()


class ServiceClosed(ProviderConnectionError):
    """The service closed the socket; ``code`` and ``reason`` are its close frame's."""

    def __init__(self, message: str, *, provider: str, code: int, reason: str) -> None:
        super().__init__(message, provider=provider)
        self.code = code
        self.reason = reason


class ServiceSocket:
    """One WebSocket connection: ``async with ServiceSocket(url, ctx=...) as sock:``.

    ``receive_json`` returns the next JSON object, or ``None`` once the service closed the
    socket normally (code 1000); any other close, a drop, or a message that is not a JSON object
    raises a :class:`~avatarkit.errors.ProviderError` naming what happened. Leaving the block
    closes the socket (shielded, bounded) and re-raises the body's own exception, unwrapped
    from httpx-ws's task group.
    """

    def __init__(
        self,
        url: str,
        *,
        ctx: RequestContext,
        headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.ctx = ctx
        self._headers = headers or {}
        self._client = client
        self._connect_timeout = connect_timeout
        self._stack = AsyncExitStack()
        self._ws: Any = None

    def __repr__(self) -> str:  # headers carry the key: never shown
        return f"ServiceSocket({self.ctx.clean(self.url)!r}, open={self._ws is not None})"

    async def __aenter__(self) -> ServiceSocket:
        from httpx_ws import HTTPXWSException, WebSocketUpgradeError, aconnect_ws

        client = self._client
        if client is None:
            client = await self._stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=self._connect_timeout,
                    event_hooks={"response": [read_refused_handshake]},
                )
            )
        try:
            # No anyio timeout around this: httpx-ws opens a task group that outlives the call,
            # and a cancel scope may not close over it. httpx's own timeouts bound the handshake.
            self._ws = await self._stack.enter_async_context(
                aconnect_ws(
                    self.url,
                    client,
                    headers=self._headers,
                    timeout=self._connect_timeout,
                    keepalive_ping_interval_seconds=None,
                    max_message_size_bytes=MAX_MESSAGE_BYTES,
                )
            )
        except BaseException as exc:
            await self._stack.aclose()
            error = _unwrap(exc)
            if isinstance(error, WebSocketUpgradeError):
                raise await _refused(error.response, self.ctx) from None
            if isinstance(error, httpx.TimeoutException):
                raise ProviderTimeout(
                    f"no WebSocket handshake from {self.ctx.base_url} within "
                    f"{self._connect_timeout} s",
                    provider=self.ctx.provider,
                ) from None
            if isinstance(error, (httpx.TransportError, HTTPXWSException, OSError)):
                raise connection_error(self.ctx, error) from None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._ws = None
        try:
            # httpx-ws closes the socket itself, shielded; no scope of ours may wrap its task group.
            await self._stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            inner = _unwrap(group)
            if inner is exc:
                return False  # the body's own exception propagates unwrapped
            if exc is None and not isinstance(inner, ProviderError):
                logger.debug("%s: closing the socket failed: %r", self.ctx.provider, inner)
                return False
            raise inner from None
        return False

    @property
    def ws(self) -> Any:
        if self._ws is None:
            raise ProviderConnectionError("the WebSocket is not open", provider=self.ctx.provider)
        return self._ws

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send ``message`` as a text frame; a dead socket raises a clear error."""
        await self._send(json.dumps(message))

    async def send_bytes(self, data: bytes) -> None:
        """Send ``data`` as a binary frame."""
        await self._send(data)

    async def _send(self, data: str | bytes) -> None:
        from httpx_ws import HTTPXWSException
        from wsproto.utilities import LocalProtocolError

        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_text(data)
        except (HTTPXWSException, LocalProtocolError, OSError) as exc:
            raise connection_error(self.ctx, exc, mid_stream=True) from None

    async def receive_json(self) -> dict[str, Any] | None:
        """The next JSON object; ``None`` after a normal close. Binary frames are skipped."""
        from httpx_ws import HTTPXWSException, WebSocketDisconnect

        while True:
            try:
                message = await self.ws.receive()
            except WebSocketDisconnect as exc:
                if exc.code == 1000:
                    return None
                reason = self.ctx.clean(exc.reason or "")
                raise ServiceClosed(
                    f"the service closed the WebSocket (code {exc.code}"
                    + (f": {reason})" if reason else ")"),
                    provider=self.ctx.provider,
                    code=exc.code,
                    reason=reason,
                ) from None
            except (HTTPXWSException, OSError) as exc:
                raise connection_error(self.ctx, exc, mid_stream=True) from None
            data = getattr(message, "data", None)
            if not isinstance(data, str):
                logger.debug("%s: skipping a non-text frame", self.ctx.provider)
                continue
            try:
                parsed = json.loads(data)
            except ValueError:
                raise ProviderError(
                    self.ctx.clean(f"the service sent a message that is not JSON: {data[:200]!r}"),
                    provider=self.ctx.provider,
                ) from None
            if not isinstance(parsed, dict):
                raise ProviderError(
                    self.ctx.clean(f"the service sent JSON that is not an object: {data[:200]!r}"),
                    provider=self.ctx.provider,
                )
            return parsed


async def _refused(response: httpx.Response, ctx: RequestContext) -> ProviderError:
    try:
        body = (await response.aread()).decode(errors="replace")
    except Exception:
        body = ""
    detail: str | None = body.strip()[:300] or None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("message", "error", "detail", "title"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                detail = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                detail = value["message"]
                break
    return status_error(response.status_code, ctx, detail=detail, body=parsed or body or None)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Base64PCM:
    """Turns base64 PCM16 pieces from a TTS service into whole samples: a piece may end inside
    a sample, whose odd byte waits for its partner in the next piece."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._pending = b""

    def decode(self, data: str) -> bytes:
        """The whole samples ``data`` completes (maybe none); raises a
        :class:`~avatarkit.errors.ProviderError` when it is not base64."""
        try:
            pcm = self._pending + base64.b64decode(data)
        except (binascii.Error, ValueError):
            raise ProviderError(
                "the service sent audio that is not base64", provider=self.provider
            ) from None
        whole = len(pcm) - len(pcm) % 2
        self._pending = pcm[whole:]
        return pcm[:whole]


def speech_service_error(
    ctx: RequestContext,
    message: str,
    code: object,
    *,
    voice_id: str,
    model: str,
    auth_words: Iterable[str],
) -> ProviderError:
    """The error for a TTS service's error message (or close reason) mid-stream, with advice:
    an unknown voice, a refused key (the message or ``code`` holds one of ``auth_words``) or
    model, quoting the service (key scrubbed)."""
    text = ctx.clean(message) or "no detail"
    lowered = f"{code} {message}".lower()
    if "voice" in lowered and ("not found" in lowered or "not_found" in lowered):
        advice = f"voice {voice_id!r} was not found: check the voice_id option"
    elif any(w in lowered for w in auth_words):
        advice = f"authentication failed: check the api_key option or {ctx.key_env_var}"
    elif "model" in lowered:
        advice = f"model {model!r} was refused: check the model option"
    else:
        advice = "the service ended the stream with an error"
    return ProviderError(f"{advice} (server said: {text})", provider=ctx.provider)
