"""The liveavatar renderer's lifecycle under faults at every await point (the fake LiveAvatar).

One conversation (start, speak, interrupt, idle with keep-alive, speak, close) in LITE mode (real
HTTP and WebSocket) and FULL mode (real HTTP, the room behind the DataTransport seam), with one
fault injected at one await point: the caller cancelled while it is in flight, ``close()`` from
another task while it is in flight, a 200 whose body is a gateway's HTML page, a 5xx, a room
call that fails, a WebSocket cut. Whatever happens, every session LiveAvatar created is stopped,
and once ``close()`` has returned nothing of the renderer runs: no request or message reaches
LiveAvatar, keep-alive, duration watch and link have finished, the room was left and the HTTP
client is closed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import Any

import anyio
import pytest

from avatarkit.errors import AvatarKitError, ProviderConnectionError, SessionError
from avatarkit.providers import AudioChunk
from avatarkit.testing import tone
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar, FakeRoom

HOLD = 0.5  # how long an await point is held while a fault is injected into it
KEEP_ALIVE = 0.05
SETTLE = 0.2  # for the fake's threads to read what was sent before close() returned
HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
TOKEN, START, STOP, KEEP = (
    "/v1/sessions/token",
    "/v1/sessions/start",
    "/v1/sessions/stop",
    "/v1/sessions/keep-alive",
)


class FaultyLiveAvatar(FakeLiveAvatar):
    """The fake, with one-shot answers per path (then it answers normally again)."""

    def __init__(self) -> None:
        super().__init__()
        self.once: dict[str, list[tuple[int, str]]] = {}

    def _route(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, str, str]:
        faults = self.once.get(path)
        if faults:
            status, text = faults.pop(0)
            return status, text, "application/json" if text.startswith("{") else "text/html"
        return super()._route(path, headers, body)


class HeldRoom(FakeRoom):
    """FULL mode's room, where one call is held (or fails) and calls after close are seen."""

    def __init__(self, point: str | None, fault: str) -> None:
        super().__init__()
        self.point = point
        self.fault = fault
        self.reached: float | None = None
        self.active = 0
        self.after_close: list[str] = []

    async def _maybe_hold(self, name: str) -> None:
        if name != self.point or self.reached is not None:
            return
        self.reached = time.monotonic()
        if self.fault == "error":
            raise ProviderConnectionError(f"the room failed at {name}", provider="liveavatar")
        await anyio.sleep(HOLD)

    async def connect(self, url: str, token: str, **kw: Any) -> None:
        self.active += 1
        try:
            await self._maybe_hold("connect")
            await super().connect(url, token, **kw)
        finally:
            self.active -= 1

    async def wait_for_participants(self, identities: Collection[str], seconds: float) -> set[str]:
        self.active += 1
        try:
            await self._maybe_hold("peers")
            return await super().wait_for_participants(identities, seconds)
        finally:
            self.active -= 1

    async def publish_data(self, topic: str, payload: bytes) -> None:
        kind = str(json.loads(payload).get("event_type"))
        if self.closed:
            self.after_close.append(kind)
        self.active += 1
        try:
            await self._maybe_hold(kind.removeprefix("avatar."))
            await super().publish_data(topic, payload)
        finally:
            self.active -= 1


@pytest.fixture
def fake() -> Iterator[FaultyLiveAvatar]:
    with FaultyLiveAvatar() as server:
        yield server


def make(fake: FakeLiveAvatar, route: str, **options: Any) -> LiveAvatarRenderer:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "avatar_id": "av-1",
        "base_url": fake.base_url,
        "keep_alive": True,
        "keep_alive_interval": KEEP_ALIVE,
        "request_timeout": 5.0,
        "connect_timeout": 5.0,
    }
    renderer = LiveAvatarRenderer(**(settings | options))
    renderer.configure_route(route)  # type: ignore[arg-type]
    return renderer


async def audio(seconds: float) -> AsyncIterator[AudioChunk]:
    pcm = tone(seconds, 24000)
    for i in range(0, len(pcm), 4800):
        yield AudioChunk(pcm[i : i + 4800], 24000)


async def say(renderer: LiveAvatarRenderer, text: str) -> None:
    if renderer.route == "audio":
        await renderer.speak(audio(0.3))
    else:
        await renderer.speak_text(text)


def kept_alive(renderer: LiveAvatarRenderer, fake: FakeLiveAvatar) -> bool:
    if renderer.route == "audio":
        return bool(fake.messages("session.keep_alive"))
    return KEEP in fake.paths()


async def conversation(renderer: LiveAvatarRenderer, fake: FakeLiveAvatar) -> None:
    async with renderer:
        await say(renderer, "Hello there.")
        await renderer.interrupt()
        await fake.wait_for(lambda: kept_alive(renderer, fake) or renderer.state != "ready", 10)
        await say(renderer, "Once more.")


# -- the matrix: (mode, await point, fault) --------------------------------------------------------

HTTP_FAULTS = ["cancel", "close", "html", "5xx"]
HTTP_POINTS = {"token": TOKEN, "start": START, "stop": STOP, "keep-alive": KEEP}
CASES: list[tuple[str, str, str]] = []
for _mode in ("LITE", "FULL"):
    for _point in HTTP_POINTS:
        if _point == "keep-alive" and _mode == "LITE":
            continue  # LITE keeps alive over its WebSocket (the "speak" points cover it)
        CASES += [(_mode, _point, f) for f in HTTP_FAULTS]
CASES += [("LITE", p, f) for p in ("connect", "speak") for f in ("cancel", "close", "drop")]
CASES += [("LITE", "interrupt", f) for f in ("cancel", "close")]
CASES += [
    ("FULL", p, f)
    for p in ("connect", "peers", "speak_text", "interrupt")
    for f in ("cancel", "close", "error")
]


def arm(
    fake: FaultyLiveAvatar, room: HeldRoom, mode: str, point: str, fault: str
) -> Callable[[], bool]:
    """Set the fault up; returns a predicate that is true once the point is reached."""
    if point in HTTP_POINTS:
        path = HTTP_POINTS[point]
        if fault == "html":
            fake.once[path] = [(200, HTML)]
        elif fault == "5xx":
            fake.once[path] = [(502, HTML)]
        else:
            fake.knobs.delay[path] = HOLD
        return lambda: path in fake.paths()
    if mode == "FULL":
        return lambda: room.reached is not None
    if point == "connect":
        fake.knobs.connect_delay = HOLD if fault != "drop" else 0.01
        return lambda: any(s.connections for s in fake.sessions.values())
    if point == "speak":
        fake.knobs.playback = 10.0  # speak waits for speak_ended while the fault lands
        return lambda: bool(fake.messages("agent.speak_end"))
    return lambda: bool(fake.messages("agent.interrupt"))


@pytest.mark.parametrize(("mode", "point", "fault"), CASES)
async def test_every_session_is_stopped_and_nothing_runs_after_close(
    fake: FaultyLiveAvatar,
    mode: str,
    point: str,
    fault: str,
    anyio_backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)  # failures are logged on purpose; not the point here
    room = HeldRoom(point if mode == "FULL" else None, fault)
    renderer = make(fake, "audio" if mode == "LITE" else "text", transport=lambda: room)
    reached = arm(fake, room, mode, point, fault)
    outcome: list[BaseException | None] = []
    closed_at: list[float] = []

    async def run(scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await conversation(renderer, fake)  # closes the renderer on the way out
            except AvatarKitError as exc:
                outcome.append(exc)
                return
            finally:
                closed_at.append(time.perf_counter())
            outcome.append(None)

    async def close() -> None:
        await renderer.close()
        closed_at.append(time.perf_counter())
        check_released(renderer, room)

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, scope)
        if fault in ("cancel", "close", "drop"):
            await fake.wait_for(reached, 10)
            if fault == "cancel":
                scope.cancel()
            elif fault == "drop":
                fake.drop_connections()
            else:
                await close()
    assert outcome == [] or outcome[0] is None or isinstance(outcome[0], AvatarKitError)
    if fault == "close" and point in ("token", "start", "connect"):
        assert isinstance(outcome[0], SessionError), outcome
    check_released(renderer, room)
    # held HTTP answers come after their delay: let LiveAvatar finish what it was asked
    await anyio.sleep(HOLD if fault in ("cancel", "close") else 0.0)
    if point != "token" or fault in ("cancel", "close"):
        assert fake.sessions, "the conversation never created a session"
    for session in fake.sessions.values():
        assert session.state == "stopped", (session.session_id, session.state)
    # nothing reaches LiveAvatar after close() returned, for several keep-alive intervals
    # (strictly on the client side above; here end to end, once the fake's threads have read
    # what was sent before close() returned: a loaded machine can be slow to)
    await anyio.sleep(SETTLE)
    before = fake.paths(), [m.type for m in fake.messages()]
    await anyio.sleep(6 * KEEP_ALIVE)
    assert (fake.paths(), [m.type for m in fake.messages()]) == before
    closed = min(closed_at)
    assert [kind for at, _, kind in _published(room) if at > closed] == []  # same thread
    assert room.after_close == []


def _published(room: FakeRoom) -> list[tuple[float, str, str]]:
    return [(at, topic, str(m.get("event_type"))) for at, topic, m in room.published]


def check_released(renderer: LiveAvatarRenderer, room: HeldRoom) -> None:
    """Right after close(): background tasks done, link ended, room left, client closed."""
    assert renderer.state == "closed"
    for task in renderer._background:
        assert task._done.is_set() or not task._started
    if renderer._link is not None:
        assert renderer._link.ended.is_set()
    assert room.active == 0
    if room.connected_with is not None:
        assert room.closed >= 1
    assert renderer._api is not None
    assert renderer._api.client.is_closed


# -- the defects, one by one -------------------------------------------------------------------


async def test_a_stop_answered_with_an_html_page_does_not_escape_close(
    fake: FaultyLiveAvatar,
) -> None:
    renderer = make(fake, "audio")
    await renderer.start()
    await fake.wait_for(lambda: bool(fake.messages("session.keep_alive")))
    fake.once[STOP] = [(200, HTML), (200, HTML)]  # both tries: the stop is not confirmed
    await renderer.close()  # must not raise
    check_released(renderer, HeldRoom(None, ""))
    await anyio.sleep(SETTLE)
    count = len(fake.messages("session.keep_alive"))
    await anyio.sleep(6 * KEEP_ALIVE)
    assert len(fake.messages("session.keep_alive")) == count


async def test_close_while_the_token_is_requested_stops_the_session(
    fake: FaultyLiveAvatar,
) -> None:
    fake.knobs.delay[TOKEN] = HOLD
    renderer = make(fake, "audio")
    async with anyio.create_task_group() as tg:

        async def start() -> None:
            with pytest.raises(SessionError, match="closed while it was starting"):
                await renderer.start()

        tg.start_soon(start)
        await fake.wait_for(lambda: TOKEN in fake.paths())
        await renderer.close()
        assert fake.only_session().state == "stopped"
        assert fake.paths() == [TOKEN, STOP]


async def test_close_from_the_on_connection_callback_does_not_deadlock(
    fake: FaultyLiveAvatar,
) -> None:
    holder: list[LiveAvatarRenderer] = []

    async def on_connection(viewer: object) -> None:
        await holder[0].close()

    renderer = make(fake, "audio", on_connection=on_connection)
    holder.append(renderer)
    with anyio.fail_after(10), pytest.raises(SessionError, match="closed while"):
        await renderer.start()
    assert fake.only_session().state == "stopped"
