"""LITE mode's command channel: LiveAvatar's WebSocket (``ws_url``), JSON text frames.

One connection at a time, owned by :meth:`LiteLink.run` (a task in the renderer's task group):
it connects, waits for ``session.state_updated: connected`` (nothing may be sent before), reads
server messages and hands them to ``on_event``. A dropped connection is reconnected once if the
session is still alive; otherwise the link *ends* and every sender gets a clear
:class:`ProviderConnectionError`. Built on httpx-ws (wsproto + anyio: asyncio and trio).

Two wire choices follow the published clients rather than habit:

- No WebSocket pings by default (``ping_interval=None``). LiveAvatar's web SDK and LiveKit's
  ``livekit-plugins-liveavatar`` send none, and Vision Agents turned theirs off because
  LiveAvatar's media server stalls pongs under load (a client that drops on a late pong kills a
  healthy session). A dead link still shows up: a failed send, or the server's close.
- Audio is sent *at most once*: an ``agent.speak`` whose send failed is never resent on the
  reconnected socket (it may have reached LiveAvatar, and a resend would make the avatar say it
  twice). Commands without audio are resent once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import wsproto.events
import wsproto.utilities
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketUpgradeError,
    aconnect_ws,
)

from avatarkit.errors import ProviderConnectionError, redact
from avatarkit_heygen.liveavatar_api import PROVIDER

__all__ = ["LiteLink", "parse_message"]

logger = logging.getLogger(__name__)

#: Session states after which LiveAvatar will not play anything more.
ENDED_STATES = ("closing", "closed")
#: Reconnects allowed in one session (each drop gets one attempt; this bounds a flapping link).
MAX_RECONNECTS = 3

_SendErrors = (HTTPXWSException, wsproto.utilities.LocalProtocolError, OSError)


def parse_message(raw: str | bytes | bytearray) -> dict[str, Any] | None:
    """A server message as a dict with a string ``type``, or None (logged) when malformed."""
    try:
        message = json.loads(raw)
    except ValueError:
        logger.debug("liveavatar: ignoring a non-JSON message: %.200r", raw)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        logger.debug("liveavatar: ignoring a message with no type: %.200r", message)
        return None
    return message


class LiteLink:
    """The LITE WebSocket with one reconnect per drop; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient,
        on_event: Callable[[dict[str, Any]], None],
        on_end: Callable[[str], None] | None = None,
        on_reconnect: Callable[[str], None] | None = None,
        connect_timeout: float = 20.0,
        send_timeout: float = 10.0,
        ping_interval: float | None = None,
        ping_timeout: float = 20.0,
    ) -> None:
        self.url = url
        self._client = client
        self._on_event = on_event
        self._on_end = on_end
        #: Called with why the last connection dropped once a new one is ready, before anything
        #: can be sent on it: what went to the dead one may not have arrived.
        self._on_reconnect = on_reconnect
        self._dropped: str | None = None
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._ws: AsyncWebSocketSession | None = None
        self._conn_scope: anyio.CancelScope | None = None
        self._changed = anyio.Event()
        self._closing = False
        self.ended = anyio.Event()
        self.end_reason: str | None = None
        self.session_state: str | None = None
        self.reconnects = 0
        self._ready_once = False
        self._failure: ProviderConnectionError | None = None
        self.last_sent = 0.0

    def __repr__(self) -> str:
        return f"LiteLink(connected={self._ws is not None}, ended={self.ended.is_set()})"

    # -- state --------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _end(self, reason: str) -> None:
        first = not self.ended.is_set()
        if first:
            self.end_reason = reason
            self.ended.set()
        self._ws = None
        self._notify()
        if first and not self._closing and self._on_end is not None:
            self._on_end(reason)

    def _drop(self, ws: AsyncWebSocketSession) -> None:
        """A send on ``ws`` failed: stop reading it so :meth:`run` reconnects."""
        if self._ws is ws:
            self._ws = None
            if self._conn_scope is not None:
                self._conn_scope.cancel()
            self._notify()

    # -- the connection task ------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and read until the session ends (run it in a task; see :meth:`wait_ready`).

        A failure before the first ``connected`` is kept for :meth:`wait_ready` to raise (the
        renderer's start fails); later drops are reconnected once or end the link. Never raises
        but for cancellation: a background task has no caller to raise to.
        """
        while True:
            try:
                dropped = await self._connect_and_read()
            except ProviderConnectionError as exc:
                if not self._ready_once:
                    self._fail(exc)
                else:
                    self._end(f"the WebSocket dropped and could not be reconnected: {exc}")
                return
            if not self._ready_once:
                self._fail(
                    ProviderConnectionError(
                        f"the LITE WebSocket closed before it was ready: {dropped}",
                        provider=PROVIDER,
                    )
                )
                return
            if self._closing:
                self._end("closed")
                return
            if self.session_state in ENDED_STATES:
                self._end(f"LiveAvatar ended the session (state {self.session_state!r})")
                return
            if self.reconnects >= MAX_RECONNECTS:
                self._end(f"{dropped}; gave up after {self.reconnects} reconnects")
                return
            self.reconnects += 1
            logger.warning("liveavatar: %s; reconnecting once", dropped)
            self._dropped = dropped

    def _fail(self, exc: ProviderConnectionError) -> None:
        """The first connection failed: start() raises it (not a session ending)."""
        self._failure = exc
        self._closing = True  # no on_end callback
        self._end(str(exc))

    async def wait_ready(self) -> None:
        """Wait for the first ``connected``; raises the connection's failure if there was one."""
        while not self._ready_once:
            if self._failure is not None:
                raise self._failure
            if self.ended.is_set():
                raise ProviderConnectionError(
                    f"the LITE WebSocket ended before it was ready: {self.end_reason}",
                    provider=PROVIDER,
                )
            await self._changed.wait()

    async def _connect_and_read(self) -> str:
        """One connection, from handshake to its end; returns why it ended.

        Nothing may propagate out of httpx-ws's ``async with`` (it would come wrapped in an
        ExceptionGroup), so outcomes are carried out in a variable.
        """
        failure: ProviderConnectionError | None = None
        reason = "LiveAvatar closed the WebSocket"
        try:
            connection: AbstractAsyncContextManager[AsyncWebSocketSession] = aconnect_ws(
                self.url,
                self._client,
                keepalive_ping_interval_seconds=self.ping_interval,
                keepalive_ping_timeout_seconds=self.ping_timeout,
            )
            async with connection as ws:
                try:
                    with anyio.CancelScope() as scope:
                        self._conn_scope = scope
                        await self._wait_connected(ws)
                        dropped, self._dropped = self._dropped, None
                        if dropped is not None and self._on_reconnect is not None:
                            self._on_reconnect(dropped)
                        self._ws = ws
                        self._ready_once = True
                        self._notify()
                        await self._read(ws)
                    if scope.cancelled_caught:
                        reason = "a send on the WebSocket failed"
                except HTTPXWSException as exc:
                    reason = f"the WebSocket dropped ({type(exc).__name__})"
                except ProviderConnectionError as exc:
                    failure = exc
                finally:
                    self._ws = None
                    self._conn_scope = None
        except (HTTPXWSException, httpx.HTTPError, OSError, ExceptionGroup) as exc:
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if isinstance(exc, WebSocketUpgradeError):
                detail = f"HTTP {exc.response.status_code} instead of a WebSocket upgrade"
            query = httpx.URL(self.url).query.decode()  # ws_url may carry a credential
            failure = ProviderConnectionError(
                f"cannot open the LITE WebSocket: {redact(detail, [query])}", provider=PROVIDER
            )
        if failure is not None:
            raise failure
        return reason

    async def _wait_connected(self, ws: AsyncWebSocketSession) -> None:
        with anyio.move_on_after(self.connect_timeout) as scope:
            while self.session_state != "connected":
                if self.session_state in ENDED_STATES:
                    raise ProviderConnectionError(
                        f"the session is {self.session_state!r} before it was connected",
                        provider=PROVIDER,
                    )
                await self._receive_one(ws)
        if scope.cancelled_caught:
            raise ProviderConnectionError(
                f"the LITE WebSocket did not report 'connected' within {self.connect_timeout:g}s",
                provider=PROVIDER,
            )

    async def _read(self, ws: AsyncWebSocketSession) -> None:
        while self.session_state not in ENDED_STATES:
            await self._receive_one(ws)

    async def _receive_one(self, ws: AsyncWebSocketSession) -> None:
        event = await ws.receive()
        if not isinstance(event, wsproto.events.TextMessage | wsproto.events.BytesMessage):
            return
        message = parse_message(event.data)
        if message is None:
            return
        if message["type"] == "session.state_updated" and isinstance(message.get("state"), str):
            self.session_state = message["state"]
            logger.debug("liveavatar: session state %s", self.session_state)
        try:
            self._on_event(message)
        except Exception:  # a bug in a handler must not kill the link
            logger.exception("liveavatar: error handling %s", message["type"])

    # -- sending ------------------------------------------------------------------------------

    async def _connection(self) -> AsyncWebSocketSession:
        with anyio.move_on_after(self.connect_timeout):
            while True:
                if self.ended.is_set():
                    raise ProviderConnectionError(
                        f"the LiveAvatar session has ended: {self.end_reason}", provider=PROVIDER
                    )
                if self._ws is not None:
                    return self._ws
                await self._changed.wait()
        raise ProviderConnectionError(
            f"the LITE WebSocket was not back within {self.connect_timeout:g}s", provider=PROVIDER
        )

    async def send(self, message: dict[str, Any], *, at_most_once: bool = False) -> bool:
        """Send one JSON message; True once it is written.

        After a failed write the message is resent once on the reconnected WebSocket, unless
        ``at_most_once`` (audio): then the link still reconnects but the message is dropped and
        False returned, because a write that failed may have reached LiveAvatar all the same.
        The write itself is shielded (a cancelled half-written frame would corrupt the stream)
        and bounded by ``send_timeout``.
        """
        data = json.dumps(message, separators=(",", ":"))
        for _ in range(2):
            ws = await self._connection()
            try:
                with anyio.move_on_after(self.send_timeout, shield=True) as scope:
                    await ws.send_text(data)
            except _SendErrors as exc:
                logger.debug("liveavatar: send failed: %s", exc)
                self._drop(ws)
                if at_most_once:
                    return False
                continue
            if scope.cancelled_caught:
                logger.debug("liveavatar: send timed out after %gs", self.send_timeout)
                self._drop(ws)
                if at_most_once:
                    return False
                continue
            self.last_sent = anyio.current_time()
            return True
        raise ProviderConnectionError(
            "the LITE WebSocket dropped twice while sending", provider=PROVIDER
        )

    async def close(self) -> None:
        """Stop the link (the connection task then closes the WebSocket)."""
        self._closing = True
        if self._conn_scope is not None:
            self._conn_scope.cancel()
        self._end("closed")
