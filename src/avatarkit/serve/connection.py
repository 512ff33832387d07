"""One page, one WebSocket, at most one AvatarSession: the session lives no longer than the socket.

Nothing is built on connect: the session is created and started only when the page sends
``start`` (after the person clicks), so a page merely loaded somewhere starts no paid session.

A connection runs a fixed set of tasks, whatever the page sends: the receive loop (the page's
messages, dispatched from one table; it never waits for a turn), the driver (starts the session,
then runs queued messages as turns one after another), the forwarder (session events to the
page) and the interrupter (:class:`~avatarkit.serve.turns.TurnGate`: at most one interrupt in
flight, never landing on a later turn). While the page's microphone is on, one more runs
``session.listen`` on its audio frames (:mod:`avatarkit.serve.microphone`); the turns it hears
go through the same queue, admission and driver as typed ones
(:class:`~avatarkit.serve.turns.SpokenTurns`), so both count the same for the gate, the drain and
``/metrics``. The page's messages (and spoken turns) are rate-limited by a token bucket and
queued turns are bounded, so a flooding client costs bounded memory and CPU. When the page goes
away the task group is cancelled and the session closes; its close is shielded, so a paid
avatar session is stopped even then.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.websockets import WebSocket

from avatarkit.errors import AvatarKitError, ProviderError
from avatarkit.events import ErrorEvent, Event, StateChanged, event_to_dict
from avatarkit.providers import ViewerConnection
from avatarkit.serve.microphone import Microphone
from avatarkit.serve.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    ClientMessage,
    ErrorStage,
    Interrupt,
    MicStart,
    MicStop,
    Played,
    ProtocolError,
    SendText,
    Start,
    error_message,
    hello_message,
    parse_client_message,
)
from avatarkit.serve.ratelimit import TokenBucket
from avatarkit.serve.state import ServeState
from avatarkit.serve.turns import QueuedTurn, SpokenTurns, TurnGate
from avatarkit.session import AvatarSession

__all__ = [
    "CLOSE_ERROR",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_TRY_LATER",
    "Limits",
    "SessionFactory",
    "WebSocketPage",
    "display_mode",
    "page_error_for_event",
    "serve_page",
]

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], AvatarSession]

#: WebSocket close codes the page understands.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # foreign origin, no credentials
CLOSE_ERROR = 1011  # the session could not be built or started, or failed
CLOSE_GOING_AWAY = 1012  # the server is shutting down or restarting: reconnect
CLOSE_TRY_LATER = 1013  # over the concurrent-session limit


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (the concurrent-session limit is the app's)."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_text_chars: int = MAX_TEXT_CHARS
    #: User turns (typed or spoken) that may wait for the current one; more are refused.
    max_pending: int = 3
    #: Messages a second a page may send on average (token bucket) ...
    messages_per_second: float = 10.0
    #: ... and in a burst. Messages over the budget are dropped (one ``rate`` error a second).
    message_burst: int = 40


class WebSocketPage:
    """The page end of a connection, handed to the ``browser`` renderer.

    Sends are serialised (several tasks share the socket). Once the page is gone, sends are
    dropped instead of raising: the receive loop notices the disconnect and ends the session.
    """

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._lock = anyio.Lock()
        self.gone = False

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._send({"type": "websocket.send", "text": json.dumps(message)})

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def _send(self, message: dict[str, Any]) -> None:
        if self.gone:
            return
        async with self._lock:
            try:
                await self._websocket.send(message)
            except Exception as exc:  # the socket is closing; the receive loop ends the session
                self.gone = True
                logger.debug("page gone while sending: %s", exc)


def display_mode(session: AvatarSession) -> str:
    """How the page shows this session's avatar: ``audio``, ``livekit`` or ``none``."""
    renderer = session.renderer
    if session.route == "audio" and callable(getattr(renderer, "attach_page", None)):
        return "audio"
    if isinstance(getattr(renderer, "viewer", None), ViewerConnection):
        return "livekit"
    return "none"


_TURN_FAILURES = {
    "llm": "the language model failed to answer",
    "tts": "speech synthesis failed",
    "renderer": "the avatar failed to speak",
    "timeout": "a provider did not answer in time",
}


def _provider_fields(error: BaseException | None) -> dict[str, Any]:
    if isinstance(error, ProviderError):
        return {"provider": error.provider, "retryable": error.retryable}
    return {}


def page_error_for_event(event: ErrorEvent) -> dict[str, Any]:
    """A failed turn as the page sees it: stage, stable code, a generic message; the details
    (which may name files, URLs or upstream answers) go to the server log only."""
    stage = event.stage if event.stage in _TURN_FAILURES else "session"
    logger.warning("turn %d failed at %s: %s", event.turn, event.stage, event.message)
    what = _TURN_FAILURES.get(stage, "the turn failed")
    return error_message(
        stage,  # type: ignore[arg-type]
        f"{what}; this reply was dropped, you can try again",
        code=f"{stage}_failed",
        turn=event.turn,
    ) | _provider_fields(event.error)


async def serve_page(
    websocket: WebSocket,
    factory: SessionFactory,
    *,
    limits: Limits,
    title: str,
    state: ServeState,
) -> int:
    """Run one accepted WebSocket until the page leaves; returns the close code to use."""
    page = WebSocketPage(websocket)
    hello = hello_message(
        max_bytes=limits.max_message_bytes,
        max_text_chars=limits.max_text_chars,
        max_pending=limits.max_pending,
    )
    await page.send_json(
        hello | {"title": title, "worker": state.worker, "auth": state.auth.needs_credential}
    )
    if state.draining:
        await page.send_json(_going_away_message(0))
        return CLOSE_GOING_AWAY
    connection = _Connection(websocket, page, factory, limits, state)
    state.pages.add(connection)
    try:
        await connection.run()
    finally:
        with anyio.CancelScope(shield=True):
            await connection.close_session()
        state.pages.discard(connection)
        connection.closed.set()
    return connection.close_code or CLOSE_NORMAL


def _going_away_message(grace: float) -> dict[str, Any]:
    return {
        "type": "going_away",
        "reason": "the server is restarting or shutting down; reconnect",
        "grace": grace,
    }


_MessageHandler = Callable[[Any], Awaitable[None]]

#: When a drain closes a page: seconds its last events may take to reach it.
_FLUSH_SECONDS = 1.0


class _Connection:
    def __init__(
        self,
        websocket: WebSocket,
        page: WebSocketPage,
        factory: SessionFactory,
        limits: Limits,
        state: ServeState,
    ) -> None:
        self.websocket = websocket
        self.page = page
        self.factory = factory
        self.limits = limits
        self.state = state
        self.draining = False
        self.finish_requested = False
        self.closed = anyio.Event()
        self.forwarded = anyio.Event()  # the session's event stream has ended
        self.idle = anyio.Event()  # set whenever no turn runs and none waits
        self.idle.set()
        self.session: AvatarSession | None = None
        self.microphone: Microphone | None = None  # once the session has started
        self.holds_slot = False
        self.close_code: int | None = None
        self.tg: TaskGroup | None = None
        self.bucket = TokenBucket(limits.messages_per_second, limits.message_burst)
        self.rate_error_at = -math.inf
        self.pending_send, self.pending_receive = anyio.create_memory_object_stream[QueuedTurn](
            limits.max_pending
        )
        self.running: QueuedTurn | None = None  # the turn the driver runs now
        self.gate = TurnGate()  # interrupts: one in flight, never landing on a later turn
        #: ``type`` → handler: one entry per message type of protocol.MESSAGE_PARSERS.
        self.handlers: dict[str, _MessageHandler] = {
            Start.type: self._on_start,
            SendText.type: self._on_send,
            Interrupt.type: self._on_interrupt,
            Played.type: self._on_played,
            MicStart.type: self._on_mic_start,
            MicStop.type: self._on_mic_stop,
        }

    # -- the connection's lifetime --------------------------------------------------------------

    async def run(self) -> None:
        with self.pending_send, self.pending_receive:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                if self.finish_requested:
                    tg.cancel_scope.cancel()
                try:
                    await self._receive()
                finally:
                    tg.cancel_scope.cancel()

    async def close_session(self) -> None:
        """Close the session (if any) and free its slot; idempotent, run shielded."""
        if self.session is not None:
            await self.session.close()
        if self.holds_slot:
            self.holds_slot = False
            self.state.release()

    # -- receiving ------------------------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            audio = message.get("bytes")
            if audio is not None and self.microphone is not None and self.microphone.active:
                # microphone frames (50 a second) are not messages: bounded by the microphone's
                # own backlog and frame size, not the message rate limit
                try:
                    await self.microphone.frame(audio)
                except ProtocolError as exc:
                    await self.page.send_json(error_message("protocol", str(exc), code=exc.code))
                continue
            if audio is not None and self.draining:
                continue  # the drain stopped the microphone; frames in flight are not errors
            if not self.bucket.take():
                await self._rate_limited()
                continue
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes")
            try:
                parsed = parse_client_message(
                    raw,
                    max_bytes=self.limits.max_message_bytes,
                    max_text_chars=self.limits.max_text_chars,
                )
            except ProtocolError as exc:
                await self.page.send_json(error_message("protocol", str(exc), code=exc.code))
                continue
            await self.handlers[parsed.type](parsed)

    async def _rate_limited(self) -> None:
        now = anyio.current_time()
        if now - self.rate_error_at < 1.0:
            return  # one error a second at most: the reply must not cost more than the flood
        self.rate_error_at = now
        await self.page.send_json(
            error_message(
                "rate",
                f"too many messages: at most {self.limits.messages_per_second:g} a second "
                f"(bursts of {self.limits.message_burst}); messages over it are dropped",
                code="rate_limited",
            )
        )

    async def _on_start(self, message: ClientMessage) -> None:
        assert isinstance(message, Start)
        if self.session is not None:
            await self.page.send_json(
                error_message("protocol", "the session has already started", code="started")
            )
            return
        if self.draining:
            await self._refuse_draining()
            return
        auth = self.state.auth
        identity = auth.identify(
            auth.credentials(
                dict(self.websocket.headers),
                self.websocket.client.host if self.websocket.client else None,
                message.token,
            )
        )
        if identity is None:
            self.state.metrics.starts_refused.labels(reason="auth").inc()
            logger.warning("refused a session start: no valid credential")
            await self.page.send_json(
                error_message(
                    "auth",
                    "this page's link is not valid (or has expired); ask for a new one",
                    code="unauthorized",
                )
            )
            self._end(CLOSE_POLICY)
            return
        if not self.state.start_limiter.allow(identity):
            self.state.metrics.starts_refused.labels(reason="rate").inc()
            await self.page.send_json(
                error_message(
                    "rate",
                    "too many sessions started from here; wait a minute and try again",
                    code="start_rate_limited",
                )
            )
            self._end(CLOSE_TRY_LATER)
            return
        if not self.state.try_acquire():
            self.state.metrics.starts_refused.labels(reason="full").inc()
            await self.page.send_json(
                error_message(
                    "limit",
                    f"this server already runs {self.state.limit} avatar session(s), its "
                    "limit; close another tab or try again later",
                    code="server_full",
                )
            )
            self._end(CLOSE_TRY_LATER)
            return
        self.holds_slot = True
        try:
            session = self.factory()
        except Exception as exc:
            self.state.metrics.record_error("config", exc)
            if isinstance(exc, AvatarKitError):
                logger.error("building the session failed: %s", exc)
            else:
                logger.exception("building the session failed")
            await self.page.send_json(
                error_message(
                    "config",
                    "the server could not create the avatar session; its log says why",
                    code="config_invalid",
                )
            )
            self._end(CLOSE_ERROR)
            return
        self.session = session
        self.state.metrics.sessions_started.inc()
        attach = getattr(session.renderer, "attach_page", None)
        if callable(attach):
            attach(self.page)
        session.on_event(self._on_session_event)
        assert self.tg is not None
        events = session.subscribe()
        self.tg.start_soon(self._forward, events)
        self.tg.start_soon(self.gate.serve, session)
        self.tg.start_soon(self._drive, session)

    async def _refuse_draining(self) -> None:
        await self.page.send_json(
            error_message(
                "shutdown",
                "the server is restarting; reconnect to continue",
                code="draining",
            )
        )

    async def _not_started(self, what: str) -> bool:
        if self.session is not None:
            return False
        await self.page.send_json(
            error_message(
                "protocol",
                f'"{what}" before "start": start the avatar first',
                code="not_started",
            )
        )
        return True

    async def _on_send(self, message: ClientMessage) -> None:
        assert isinstance(message, SendText)
        if await self._not_started("send"):
            return
        await self._admit(QueuedTurn(message.text))

    async def _admit(self, turn: QueuedTurn) -> bool:
        """Queue a user turn, typed or spoken, for the driver; False (and the page told why)
        when it is refused: draining, over the rate limit (spoken turns: a typed message has
        paid on arrival), or the queue is full."""
        if self.draining:
            await self._refuse_draining()
            return False
        if turn.input == "spoken" and not self.bucket.take():
            await self._rate_limited()
            return False
        try:
            self.pending_send.send_nowait(turn)
        except anyio.WouldBlock:
            what = "this one was" if turn.input == "typed" else "what you just said was"
            await self.page.send_json(
                error_message(
                    "busy",
                    f"{self.limits.max_pending} messages are already waiting for the avatar; "
                    f"{what} dropped",
                    code="queue_full",
                )
            )
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False  # the connection is ending
        self.idle = anyio.Event() if self.idle.is_set() else self.idle
        self.gate.request()  # barge-in: the new turn goes next
        return True

    async def _on_interrupt(self, message: ClientMessage) -> None:
        if await self._not_started("interrupt"):
            return
        self._drop_pending()
        self.gate.request()

    async def _on_played(self, message: ClientMessage) -> None:
        assert isinstance(message, Played)
        if self.session is None:
            return
        played = getattr(self.session.renderer, "played", None)
        if callable(played):
            played(message.utterance)

    async def _on_mic_start(self, message: ClientMessage) -> None:
        assert isinstance(message, MicStart)
        if await self._not_started("mic_start"):
            return
        if self.draining:
            await self._refuse_draining()
            return
        if self.microphone is None:
            await self.page.send_json(
                error_message(
                    "protocol",
                    "the avatar is still starting; try again when ready",
                    code="starting",
                )
            )
            return
        assert self.tg is not None
        try:
            await self.microphone.start(message.sample_rate, self.tg)
        except ProtocolError as exc:
            await self.page.send_json(error_message("protocol", str(exc), code=exc.code))

    async def _on_mic_stop(self, message: ClientMessage) -> None:
        if self.microphone is not None:
            await self.microphone.stop()

    def _drop_pending(self) -> None:
        while True:
            try:
                dropped = self.pending_receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            dropped.done.set()  # a spoken turn waiting for it returns, unanswered
        if not self.gate.in_turn:
            self.idle.set()

    def _end(self, code: int) -> None:
        """Disconnect the page with ``code`` (its session, if any, is closed on the way out)."""
        if self.close_code is None:
            self.close_code = code
        assert self.tg is not None
        self.tg.cancel_scope.cancel()

    # -- the session ------------------------------------------------------------------------------

    async def _forward(self, events: MemoryObjectReceiveStream[Event]) -> None:
        try:
            with events:
                async for event in events:
                    if isinstance(event, ErrorEvent):
                        await self.page.send_json(page_error_for_event(event))
                    else:
                        await self.page.send_json(event_to_dict(event))
        finally:
            self.forwarded.set()  # the session has closed and the page has every event

    def _on_session_event(self, event: Event) -> None:
        running = self.running
        self.state.metrics.record_event(event, running.input if running else "typed")
        if isinstance(event, StateChanged):
            self.gate.progressed()

    async def _drive(self, session: AvatarSession) -> None:
        started = False
        code = CLOSE_ERROR
        try:
            async with session:
                started = True
                spoken = SpokenTurns(self._admit, self.gate)
                self.microphone = Microphone(session, self.page.send_json, turns=spoken)
                await self._announce(session)
                async for turn in self.pending_receive:
                    try:
                        self.running = turn
                        async with self.gate.turn():
                            if turn.use_llm:
                                turn.reply = await session.send(turn.text)
                            else:
                                turn.reply = await session.say(turn.text)
                    except AvatarKitError as exc:  # already sent as an "error" event
                        logger.info("turn failed: %s", exc)
                        turn.error = exc
                    finally:
                        self.running = None
                        turn.done.set()
                        if self.pending_receive.statistics().current_buffer_used == 0:
                            self.idle.set()
                code = CLOSE_NORMAL
        except Exception as exc:
            stage: ErrorStage = "session" if started else "start"
            if isinstance(exc, AvatarKitError):
                logger.error("the avatar session failed to %s: %s", stage, exc)
            else:
                logger.exception("the avatar session failed to %s", stage)
            self.state.metrics.record_error(stage, exc)
            what = "failed and was closed" if started else "could not start"
            await self.page.send_json(
                error_message(
                    stage,
                    f"the avatar session {what}; the server log says why",
                    code=f"{stage}_failed",
                )
                | _provider_fields(exc)
            )
        finally:
            self._end(code)  # the page cannot talk to a closed session: disconnect

    async def _announce(self, session: AvatarSession) -> None:
        mode = display_mode(session)
        await self.page.send_json(
            {
                "type": "ready",
                "route": session.route,
                "display": mode,
                "renderer": type(session.renderer).__name__,
                "state": session.state,
                "listen": self.microphone is not None and self.microphone.available,
            }
        )
        viewer = getattr(session.renderer, "viewer", None)
        if mode == "livekit" and isinstance(viewer, ViewerConnection):
            await self.page.send_json(
                {
                    "type": "viewer",
                    "kind": viewer.kind,
                    "url": viewer.url,
                    "token": viewer.token,
                    "session_id": viewer.session_id,
                }
            )

    # -- draining (PageHandle) ---------------------------------------------------------------------

    def going_away(self, grace: float) -> None:
        if self.draining:
            return
        self.draining = True
        if self.tg is not None:
            self.tg.start_soon(self.page.send_json, _going_away_message(grace))
            if self.microphone is not None and self.microphone.active:
                # No new spoken turn: the stream ends (a turn still being heard is refused
                # like a typed message; a spoken reply already running finishes) and the
                # page is told the microphone is off once the listener is done.
                self.tg.start_soon(self.microphone.stop)

    async def wait_idle(self) -> None:
        while not (self.idle.is_set() and not self.gate.in_turn) and not self.closed.is_set():
            with anyio.move_on_after(0.1):  # idle is replaced as turns come; re-read it
                await self.idle.wait()

    async def finish(self) -> None:
        self.finish_requested = True
        if self.close_code is None:
            self.close_code = CLOSE_GOING_AWAY
        if self.tg is not None and not self.closed.is_set():
            if self.microphone is not None:  # the session has started (not still starting)
                # Close the session first (a turn still running is cut), then let the page
                # have the events still queued for it (the end of the last reply, its
                # metrics, the closed state) before its socket goes: bounded, as the page
                # may have stopped reading.
                await self.close_session()
                with anyio.move_on_after(_FLUSH_SECONDS):
                    await self.forwarded.wait()
            self.tg.cancel_scope.cancel()
        await self.closed.wait()
