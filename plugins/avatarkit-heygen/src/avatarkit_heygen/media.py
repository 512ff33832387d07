"""A LiveKit room joined as a subscriber, with its events delivered to plain callbacks.

Service-neutral: renderers whose avatar streams through LiveKit (HeyGen, LiveAvatar) use it to
receive the avatar's tracks, read JSON data messages and follow the connection state. The
``livekit`` SDK is imported only in :meth:`LiveKitRoom.connect`, and the SDK runs on asyncio
only, so media needs an asyncio event loop.

The event handlers (``handle_*``) are ordinary methods: :meth:`LiveKitRoom.attach` registers them
on an ``rtc.Room``, and tests can call them, or emit synthetic events on a room, without a
LiveKit server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio
import sniffio

from avatarkit.errors import ProviderConnectionError, ProviderError, ProviderTimeout

if TYPE_CHECKING:
    from livekit import rtc

__all__ = ["LiveKitRoom", "MediaState", "TrackKind", "decode_data_message"]

logger = logging.getLogger(__name__)

MediaState = Literal["disconnected", "connecting", "connected", "reconnecting"]
TrackKind = Literal["audio", "video"]

# livekit's protobuf enums (rtc.ConnectionState, rtc.TrackKind), so handlers need no SDK import.
_CONNECTION_STATES: dict[int, MediaState] = {0: "disconnected", 1: "connected", 2: "reconnecting"}
_TRACK_KINDS: dict[int, TrackKind] = {1: "audio", 2: "video"}

OnTrack = Callable[[TrackKind, Any, str | None], None]
"""``(kind, track or None when lost, participant identity)``."""
OnData = Callable[[dict[str, Any], str | None], None]
"""``(decoded JSON object, participant identity)``."""
OnState = Callable[[MediaState], None]


def decode_data_message(payload: bytes | str) -> dict[str, Any] | None:
    """A data message as a JSON object, or None when it is not one (those are ignored)."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _identity(participant: object) -> str | None:
    identity = getattr(participant, "identity", None)
    return identity if isinstance(identity, str) else None


class LiveKitRoom:
    """Joins one LiveKit room as a subscriber and reports what happens in it.

    Callbacks run on the event loop; an exception in one is logged, never propagated into the
    SDK. ``provider`` names the service in errors (``"heygen"``, ``"liveavatar"``).
    """

    def __init__(
        self,
        *,
        provider: str,
        on_track: OnTrack | None = None,
        on_data: OnData | None = None,
        on_state_change: OnState | None = None,
        connect_timeout: float = 20.0,
        auto_subscribe: bool = True,
    ) -> None:
        self.provider = provider
        #: False joins for data messages only (no media downloaded), e.g. as a control peer.
        self.auto_subscribe = auto_subscribe
        self.on_track = on_track
        self.on_data = on_data
        self.on_state_change = on_state_change
        self.connect_timeout = connect_timeout
        self.state: MediaState = "disconnected"
        #: The current remote track of each kind (None once lost).
        self.tracks: dict[TrackKind, Any] = {}
        self.room: rtc.Room | None = None

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    # -- joining and leaving -----------------------------------------------------------------

    async def connect(self, url: str, token: str) -> None:
        """Join the room at ``url`` with ``token`` (subscribing to tracks if ``auto_subscribe``)."""
        if sniffio.current_async_library() != "asyncio":
            raise ProviderError(
                "media needs asyncio: the livekit SDK runs only on an asyncio event loop; run "
                "the session under asyncio or set connect_media: false",
                provider=self.provider,
            )
        try:
            from livekit import rtc
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ProviderError(
                f"connect_media needs the livekit SDK: pip install livekit ({exc})",
                provider=self.provider,
            ) from None
        room = rtc.Room()
        self.room = room
        self.attach(room)
        self._set_state("connecting")
        try:
            with anyio.fail_after(self.connect_timeout):
                options = rtc.RoomOptions(auto_subscribe=self.auto_subscribe)
                await room.connect(url, token, options)
        except BaseException as exc:
            await self.disconnect()
            if isinstance(exc, TimeoutError):
                raise ProviderTimeout(
                    f"joining the LiveKit room at {url} took longer than "
                    f"{self.connect_timeout:g} s",
                    provider=self.provider,
                ) from None
            if isinstance(exc, rtc.ConnectError):
                raise ProviderConnectionError(
                    f"cannot join the LiveKit room at {url}: {exc.message}",
                    provider=self.provider,
                ) from None
            raise
        self._set_state("connected")

    async def disconnect(self) -> None:
        """Leave the room (idempotent; safe while cancelled)."""
        room, self.room = self.room, None
        if room is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await room.disconnect()
                except Exception as exc:
                    logger.debug("leaving the LiveKit room failed: %s", exc)
        self.handle_disconnected()

    def attach(self, room: rtc.Room) -> None:
        """Route ``room``'s events to the ``handle_*`` methods."""
        room.on("track_subscribed", self.handle_track_subscribed)
        room.on("track_unsubscribed", self.handle_track_unsubscribed)
        room.on("data_received", self.handle_data_received)
        room.on("connection_state_changed", self.handle_connection_state_changed)
        room.on("disconnected", self.handle_disconnected)

    # -- event handlers ----------------------------------------------------------------------

    def handle_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        kind = _TRACK_KINDS.get(int(getattr(track, "kind", 0)))
        if kind is None:
            return
        self.tracks[kind] = track
        self._call(self.on_track, kind, track, _identity(participant))

    def handle_track_unsubscribed(self, track: Any, publication: Any, participant: Any) -> None:
        kind = _TRACK_KINDS.get(int(getattr(track, "kind", 0)))
        if kind is None or self.tracks.get(kind) is not track:
            return
        self.tracks[kind] = None
        self._call(self.on_track, kind, None, _identity(participant))

    def handle_data_received(self, packet: Any) -> None:
        message = decode_data_message(getattr(packet, "data", b""))
        if message is None:
            logger.debug("ignoring a data message that is not a JSON object")
            return
        self._call(self.on_data, message, _identity(getattr(packet, "participant", None)))

    def handle_connection_state_changed(self, state: int) -> None:
        self._set_state(_CONNECTION_STATES.get(int(state), "disconnected"))

    def handle_disconnected(self, reason: object = None) -> None:
        for kind, track in list(self.tracks.items()):
            if track is not None:
                self.tracks[kind] = None
                self._call(self.on_track, kind, None, None)
        self._set_state("disconnected")

    # -- helpers -----------------------------------------------------------------------------

    def _set_state(self, state: MediaState) -> None:
        if state == self.state:
            return
        self.state = state
        logger.info("%s media: %s", self.provider, state)
        self._call(self.on_state_change, state)

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("%s media callback %r failed", self.provider, callback)
