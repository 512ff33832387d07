"""One page, one WebSocket, one AvatarSession: the session lives exactly as long as the socket.

Three tasks share a connection: the receive loop (the page's messages; it never waits for a
turn, so ``interrupt`` and ``played`` are handled at once), the driver (starts the session, then
runs the page's messages as turns one after another) and the forwarder (session events to the
page). While the page's microphone is on, a fourth runs ``session.listen`` on its audio frames
(:mod:`avatarkit.serve.microphone`). When the page goes away the receive loop returns, the task
group is cancelled and the session closes; its close is shielded, so a paid avatar session is
stopped even then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.websockets import WebSocket

from avatarkit.errors import AvatarKitError
from avatarkit.events import Event, event_to_dict
from avatarkit.providers import ViewerConnection
from avatarkit.serve.microphone import Microphone
from avatarkit.serve.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_TEXT_CHARS,
    Interrupt,
    MicStart,
    MicStop,
    Played,
    ProtocolError,
    SendText,
    error_message,
    hello_message,
    parse_client_message,
)
from avatarkit.session import AvatarSession

__all__ = ["Limits", "SessionFactory", "WebSocketPage", "display_mode", "serve_page"]

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], AvatarSession]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (the concurrent-session limit is the app's)."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_text_chars: int = MAX_TEXT_CHARS
    #: User messages that may wait for the current turn; more are refused with an error.
    max_pending: int = 3


class WebSocketPage:
    """The page end of a connection, handed to the ``browser`` renderer.

    Sends are serialised (three tasks share the socket). Once the page is gone, sends are
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


async def serve_page(
    websocket: WebSocket, factory: SessionFactory, *, limits: Limits, title: str
) -> None:
    """Run one accepted WebSocket until the page leaves; the caller closes the socket."""
    page = WebSocketPage(websocket)
    hello = hello_message(
        max_bytes=limits.max_message_bytes,
        max_text_chars=limits.max_text_chars,
        max_pending=limits.max_pending,
    )
    await page.send_json(hello | {"title": title})
    try:
        session = factory()
    except AvatarKitError as exc:
        await page.send_json(error_message("config", str(exc)))
        return
    except Exception as exc:
        logger.exception("building the session failed")
        await page.send_json(error_message("config", f"{type(exc).__name__}: {exc}"))
        return
    attach = getattr(session.renderer, "attach_page", None)
    if callable(attach):
        attach(page)
    try:
        await _Connection(websocket, page, session, limits).run()
    finally:
        with anyio.CancelScope(shield=True):
            await session.close()  # no-op when the driver already closed it


class _Connection:
    def __init__(
        self, websocket: WebSocket, page: WebSocketPage, session: AvatarSession, limits: Limits
    ) -> None:
        self.websocket = websocket
        self.page = page
        self.session = session
        self.limits = limits
        self.pending_send, self.pending_receive = anyio.create_memory_object_stream[str](
            limits.max_pending
        )
        self.microphone = Microphone(session, page.send_json)
        self.ready = False

    async def run(self) -> None:
        events = self.session.subscribe()
        with events, self.pending_send, self.pending_receive:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._forward, events)
                    tg.start_soon(self._drive, tg)
                    try:
                        await self._receive(tg)
                    finally:
                        tg.cancel_scope.cancel()
            finally:
                # Close before our end of the event stream goes, so the session closes its end.
                with anyio.CancelScope(shield=True):
                    await self.session.close()

    async def _forward(self, events: MemoryObjectReceiveStream[Event]) -> None:
        async for event in events:
            await self.page.send_json(event_to_dict(event))

    async def _drive(self, tg: TaskGroup) -> None:
        started = False
        try:
            async with self.session:
                started = True
                await self._announce()
                async for text in self.pending_receive:
                    try:
                        await self.session.send(text)
                    except AvatarKitError as exc:  # already sent as an "error" event
                        logger.info("turn failed: %s", exc)
        except AvatarKitError as exc:
            await self.page.send_json(error_message("session" if started else "start", str(exc)))
        except Exception as exc:
            logger.exception("avatar session failed")
            message = f"{type(exc).__name__}: {exc}"
            await self.page.send_json(error_message("session" if started else "start", message))
        finally:
            tg.cancel_scope.cancel()  # the page cannot talk to a closed session: disconnect

    async def _announce(self) -> None:
        mode = display_mode(self.session)
        await self.page.send_json(
            {
                "type": "ready",
                "route": self.session.route,
                "display": mode,
                "renderer": type(self.session.renderer).__name__,
                "state": self.session.state,
                "listen": self.microphone.available,
            }
        )
        self.ready = True
        viewer = getattr(self.session.renderer, "viewer", None)
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

    async def _receive(self, tg: TaskGroup) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes")
            if isinstance(raw, bytes) and self.microphone.active:
                try:
                    await self.microphone.frame(raw)
                except ProtocolError as exc:
                    await self.page.send_json(error_message("protocol", str(exc)))
                continue
            try:
                parsed = parse_client_message(
                    raw,
                    max_bytes=self.limits.max_message_bytes,
                    max_text_chars=self.limits.max_text_chars,
                )
            except ProtocolError as exc:
                await self.page.send_json(error_message("protocol", str(exc)))
                continue
            if isinstance(parsed, SendText):
                await self._queue_text(parsed.text, tg)
            elif isinstance(parsed, Interrupt):
                self._drop_pending()
                tg.start_soon(self.session.interrupt)
            elif isinstance(parsed, Played):
                played = getattr(self.session.renderer, "played", None)
                if callable(played):
                    played(parsed.utterance)
            elif isinstance(parsed, MicStart | MicStop):
                await self._microphone(parsed, tg)

    async def _microphone(self, message: MicStart | MicStop, tg: TaskGroup) -> None:
        if isinstance(message, MicStop):
            await self.microphone.stop()
            return
        if not self.ready:
            await self.page.send_json(
                error_message("protocol", "the avatar is still starting; try again when ready")
            )
            return
        try:
            await self.microphone.start(message.sample_rate, tg)
        except ProtocolError as exc:
            await self.page.send_json(error_message("protocol", str(exc)))

    async def _queue_text(self, text: str, tg: TaskGroup) -> None:
        try:
            self.pending_send.send_nowait(text)
        except anyio.WouldBlock:
            await self.page.send_json(
                error_message(
                    "busy",
                    f"{self.limits.max_pending} messages are already waiting for the avatar; "
                    "this one was dropped",
                )
            )
            return
        if self.session.state in ("thinking", "speaking"):
            tg.start_soon(self.session.interrupt)  # barge-in: the new message goes next

    def _drop_pending(self) -> None:
        while True:
            try:
                self.pending_receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
