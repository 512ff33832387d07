"""FULL mode's command channel: JSON data messages in the session's LiveKit room.

Commands go on topic ``agent-control``, LiveAvatar's events come back on ``agent-response``,
each with its own ``event_id`` and the command's id in ``source_event_id``. A command is only
heard once LiveAvatar's participants are in the room: the avatar (identity ``heygen``) and its
agent (``liveavatar-agent-<session_id>``), which is what LiveAvatar's web SDK waits for (30 s)
before it lets anything be sent; the renderer does the same.
The room itself sits behind :class:`DataTransport` (join, publish, receive), so the protocol is
testable without a LiveKit server. :class:`LiveKitDataTransport` is the production one, on the
plugin's shared LiveKit helper (:mod:`avatarkit_heygen.media`; the SDK is asyncio only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol

import anyio
import sniffio

from avatarkit.errors import ProviderConnectionError, ProviderError
from avatarkit_heygen.liveavatar_api import PROVIDER
from avatarkit_heygen.media import LiveKitRoom, MediaState

__all__ = [
    "AGENT_IDENTITY",
    "AVATAR_IDENTITY",
    "CONTROL_TOPIC",
    "RESPONSE_TOPIC",
    "DataTransport",
    "LiveKitDataTransport",
    "encode_command",
    "parse_event",
]

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "agent-control"
RESPONSE_TOPIC = "agent-response"
#: LiveKit identities of LiveAvatar's participants (web SDK 0.0.18: HEYGEN_PARTICIPANT_ID and
#: LIVEAVATAR_AGENT_PARTICIPANT_ID_PREFIX + session id).
AVATAR_IDENTITY = "heygen"
AGENT_IDENTITY = "liveavatar-agent-{session_id}"

OnData = Callable[[str, bytes], None]
OnDisconnected = Callable[[str], None]


def encode_command(event_type: str, *, session_id: str, event_id: str, **fields: Any) -> bytes:
    """One command for topic ``agent-control``, e.g. ``avatar.speak_text`` with ``text``."""
    message = {"event_type": event_type, "session_id": session_id, "event_id": event_id}
    message.update(fields)
    return json.dumps(message, separators=(",", ":")).encode()


def parse_event(topic: str | None, payload: bytes) -> dict[str, Any] | None:
    """A LiveAvatar event from ``agent-response`` with a string ``event_type``, else None.

    Other topics, non-JSON and untyped payloads are ignored (logged at debug).
    """
    if topic != RESPONSE_TOPIC:
        logger.debug("liveavatar: ignoring data on topic %r", topic)
        return None
    try:
        message = json.loads(payload)
    except ValueError:
        logger.debug("liveavatar: ignoring a non-JSON data message: %.200r", payload)
        return None
    if not isinstance(message, dict):
        logger.debug("liveavatar: ignoring a data message that is not an object: %.200r", message)
        return None
    kind = message.get("event_type", message.get("type"))
    if not isinstance(kind, str):
        logger.debug("liveavatar: ignoring a data message with no event_type: %.200r", message)
        return None
    message["event_type"] = kind
    return message


class DataTransport(Protocol):
    """A room participant that can publish and receive data messages by topic."""

    async def connect(
        self, url: str, token: str, *, on_data: OnData, on_disconnected: OnDisconnected
    ) -> None:
        """Join the room; ``on_data(topic, payload)`` is then called for every data message."""
        ...

    async def wait_for_participants(self, identities: Collection[str], seconds: float) -> set[str]:
        """Wait (at most ``seconds``) until every identity has joined; those still missing."""
        ...

    async def publish_data(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` reliably on ``topic``."""
        ...

    async def close(self) -> None:
        """Leave the room (idempotent)."""
        ...


class LiveKitDataTransport:
    """:class:`DataTransport` on the plugin's shared LiveKit helper (:mod:`avatarkit_heygen.media`).

    Joins as the server-side agent participant without subscribing to media (the viewer's page
    shows the avatar; this peer only exchanges commands and events). asyncio only: the livekit
    SDK runs on asyncio.
    """

    def __init__(self, *, connect_timeout: float = 20.0) -> None:
        self.connect_timeout = connect_timeout
        self._media: LiveKitRoom | None = None

    async def connect(
        self, url: str, token: str, *, on_data: OnData, on_disconnected: OnDisconnected
    ) -> None:
        if sniffio.current_async_library() != "asyncio":
            raise ProviderError(
                "FULL mode (prefer: text) joins LiveKit through the livekit SDK, which needs "
                "asyncio; run under asyncio or use LITE mode (prefer: audio with a tts)",
                provider=PROVIDER,
            )
        joined = False

        def state_changed(state: MediaState) -> None:
            if state == "disconnected" and joined:
                on_disconnected("left the LiveKit room")

        media = _DataRoom(
            on_packet=on_data,
            provider=PROVIDER,
            on_state_change=state_changed,
            connect_timeout=self.connect_timeout,
            auto_subscribe=False,
        )
        self._media = media
        await media.connect(url, token)
        joined = True

    async def wait_for_participants(self, identities: Collection[str], seconds: float) -> set[str]:
        room = self._media.room if self._media is not None else None
        if room is None:
            return set(identities)
        missing = set(identities)
        joined = anyio.Event()

        def update(_participant: object = None) -> None:
            missing.difference_update(p.identity for p in room.remote_participants.values())
            if not missing:
                joined.set()

        room.on("participant_connected", update)
        try:
            update()
            with anyio.move_on_after(seconds):
                await joined.wait()
        finally:
            room.off("participant_connected", update)
        return missing

    async def publish_data(self, topic: str, payload: bytes) -> None:
        room = self._media.room if self._media is not None else None
        if room is None:
            raise ProviderConnectionError("not in the LiveKit room", provider=PROVIDER)
        try:
            await room.local_participant.publish_data(payload, reliable=True, topic=topic)
        except Exception as exc:  # the SDK raises its own PublishDataError and FFI errors
            raise ProviderConnectionError(
                f"cannot publish on {topic!r}: {type(exc).__name__}: {exc}", provider=PROVIDER
            ) from exc

    async def close(self) -> None:
        media, self._media = self._media, None
        if media is not None:
            await media.disconnect()


class _DataRoom(LiveKitRoom):
    """The shared room helper, handing raw data packets on with their topic."""

    def __init__(self, *, on_packet: OnData, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_packet = on_packet

    def handle_data_received(self, packet: Any) -> None:
        topic = getattr(packet, "topic", None) or ""
        try:
            self._on_packet(topic, bytes(getattr(packet, "data", b"")))
        except Exception:
            logger.exception("liveavatar: handling a data message failed")
