"""avatarkit.stt_stream.ReconnectingSTTStream, on its own: a minimal protocol over a real
WebSocket (httpx-ws, the production client) to a LoopbackWebSocketServer on 127.0.0.1, on
asyncio and trio.

The fake "transcribes" a counting signal: sample n of the call has the value n, and each final
names the first and last sample of its stretch. So any audio lost or sent twice across a
reconnection shows up as a gap or an overlap between finals.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.abc import ObjectReceiveStream

from avatarkit.errors import ProviderConnectionError, ProviderError, ProviderHTTPError
from avatarkit.http import RequestContext
from avatarkit.providers import AudioChunk, Transcript
from avatarkit.stt_stream import ReconnectingSTTStream
from avatarkit.testing import (
    FakeWebSocketConnection,
    LinkFaults,
    LoopbackWebSocketServer,
    Refusal,
    audio_feed,
)

if TYPE_CHECKING:
    from httpx_ws import AsyncWebSocketSession

pytest.importorskip("websockets")

RATE = 8000
KEY = "key-0123456789abcdef"
STRETCH = 2000  # samples per final (0.25 s)
SAMPLES = 24000  # 3 s; every value fits in an int16
PCM = struct.pack(f"<{SAMPLES}h", *range(SAMPLES))


# -- the fake service ----------------------------------------------------------------------------


class FakeCounter(LoopbackWebSocketServer):
    """Takes binary PCM16; answers a ``final`` per STRETCH samples and one for the rest at
    ``{"type": "end"}``, then closes normally."""

    def __init__(self) -> None:
        super().__init__()
        self.faults = LinkFaults()
        self.refuse_next: list[int] = []  # statuses for the next handshakes
        self.close_with: tuple[int, str] | None = None  # after the first final
        self.connections: list[FakeWebSocketConnection] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/listen"

    def refuse(self, path: str, headers: dict[str, str]) -> Refusal | None:
        if headers.get("authorization") != f"Key {KEY}":
            return Refusal(401, {"message": f"bad key {headers.get('authorization')}"})
        if self.refuse_next:
            return Refusal(self.refuse_next.pop(0), {"message": "busy"}, [("req-id", "r1")])
        if self.faults.refuse_reconnects and self.connections:
            return Refusal(503, {"message": "outage"})
        return None

    def converse(self, ws: Any, conn: FakeWebSocketConnection) -> None:
        pending = bytearray()
        done = 0  # samples of this connection finalised

        def final(data: bytes) -> None:
            nonlocal done
            values = struct.unpack(f"<{len(data) // 2}h", data)
            done += len(values)
            message = {"type": "final", "first": values[0], "last": values[-1], "until": done}
            conn.sent.append(message)
            ws.send(json.dumps(message))

        while True:
            data = ws.recv()
            if isinstance(data, str):
                conn.received.append(json.loads(data))
                if pending:
                    final(bytes(pending))
                conn.ended = "closed"
                ws.close(1000)
                return
            conn.audio += data
            pending += data
            while len(pending) >= 2 * STRETCH:
                final(bytes(pending[: 2 * STRETCH]))
                del pending[: 2 * STRETCH]
                if self.close_with is not None:
                    conn.ended = "closed"
                    self.close_draining(ws, *self.close_with)
                    return
            fault = self.faults.due(conn, RATE)
            if fault is not None:
                self.fail(ws, conn, fault)
                return


# -- the client: the protocol's side of ReconnectingSTTStream ------------------------------------


class CountingStream(ReconnectingSTTStream):
    server_name = "the counter"
    fatal_close_advice = ": check the audio"
    request_id_header = "req-id"

    def __init__(self, url: str, *, key: str = KEY, **options: Any) -> None:
        settings: dict[str, Any] = {
            "timeout": 5.0,
            "max_reconnects": 3,
            "replay_seconds": 30.0,
            "ping_interval": 20.0,
            "ping_timeout": 10.0,
        }
        settings.update(options)
        ctx = RequestContext(
            provider="counter STT",
            base_url=url,
            model="counting",
            api_key=key,
            key_env_var="COUNTER_API_KEY",
            timeout=settings["timeout"],
            max_retries=0,
        )
        super().__init__(url=url, ctx=ctx, provider="counter STT", sample_rate=RATE, **settings)
        self.finals = 0
        self._ending = False

    def _handshake_headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._ctx.api_key}"}

    def _connected(self) -> None:
        self._ending = False

    async def _send_audio(
        self, ws: AsyncWebSocketSession, frames: ObjectReceiveStream[bytes]
    ) -> None:
        for frame in self._replay_frames():
            await self._send(ws, frame)
        async for data in frames:
            self._keep(data)
            await self._send(ws, data)
        self._ending = True
        await self._send(ws, json.dumps({"type": "end"}))
        await anyio.sleep(5)

    def _closed_normally(self, code: int) -> bool:
        return self._ending and code == 1000

    def _refusal_detail(self, response: Any, body: Any) -> str | None:
        return body.get("message") if isinstance(body, dict) else None

    def _handle(self, message: dict[str, Any]) -> list[Transcript]:
        if message.get("type") != "final":
            return []
        end = self._offset + message["until"] / RATE
        self._forget(round(end * RATE))
        self.finals += 1
        return [Transcript("final", f"{message['first']}-{message['last']}", end=end)]

    def _handled(self, message: dict[str, Any]) -> None:
        if message.get("type") == "final":
            self._progressed()

    def _finals_delivered(self) -> int:
        return self.finals


@pytest.fixture
def fake() -> Iterator[FakeCounter]:
    with FakeCounter() as server:
        yield server


def feed(pcm: bytes = PCM, **options: Any) -> AsyncGenerator[AudioChunk, None]:
    return audio_feed(pcm, RATE, **options)


async def collect(stream: CountingStream, audio: AsyncIterator[AudioChunk]) -> list[Transcript]:
    out: list[Transcript] = []
    async with aclosing(stream.run(audio)) as transcripts:
        async for transcript in transcripts:
            out.append(transcript)
    return out


def stretches(items: list[Transcript]) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (t.text.split("-") for t in items)]


def assert_each_sample_once(items: list[Transcript], samples: int = SAMPLES) -> None:
    """The finals cover samples 0..samples-1 in order, with no gap and no overlap."""
    expected = 0
    for first, last in stretches(items):
        assert first == expected, stretches(items)
        expected = last + 1
    assert expected == samples


# -- tests ---------------------------------------------------------------------------------------


async def test_every_sample_is_transcribed_once_on_one_connection(fake: FakeCounter) -> None:
    stream = CountingStream(fake.url)
    items = await collect(stream, feed())
    assert_each_sample_once(items)
    assert stream.connections == 1
    [conn] = fake.connections
    assert bytes(conn.audio) == PCM
    assert conn.received == [{"type": "end"}]
    assert conn.ended == "closed"
    assert items[-1].end == pytest.approx(SAMPLES / RATE)


@pytest.mark.parametrize("drop_at", [0.1, 0.25, 0.6, 1.3, 2.9])
async def test_a_dropped_connection_loses_and_repeats_nothing(
    fake: FakeCounter, drop_at: float, caplog: pytest.LogCaptureFixture
) -> None:
    fake.faults.drop_after_audio = drop_at
    stream = CountingStream(fake.url)
    with caplog.at_level(logging.WARNING):
        items = await collect(stream, feed())
    assert_each_sample_once(items)
    assert [c.ended for c in fake.connections] == ["dropped", "closed"]
    # the second connection got what the first had not finalised (as far as the client knew)
    second = bytes(fake.connections[1].audio)
    assert PCM.endswith(second)
    assert (len(PCM) - len(second)) % (2 * STRETCH) == 0
    # the warning is the subclass's module's, and says what is re-sent
    [record] = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert record.name == __name__
    assert "reconnecting (1 of 3)" in record.getMessage()


async def test_the_reconnect_budget_starts_again_after_progress(fake: FakeCounter) -> None:
    """Three drops in a call with max_reconnects=1: each connection finalised something first,
    so each drop is the first in a row, and the call succeeds."""
    fake.faults.drop_after_audio = 0.6
    fake.faults.drops = 3
    items = await collect(CountingStream(fake.url, max_reconnects=1), feed())
    assert_each_sample_once(items)
    assert [c.ended for c in fake.connections] == ["dropped"] * 3 + ["closed"]


async def test_a_lasting_outage_says_how_much_was_transcribed(fake: FakeCounter) -> None:
    fake.faults.drop_after_audio = 1.1
    fake.faults.refuse_reconnects = True
    stream = CountingStream(fake.url, max_reconnects=2)
    items: list[Transcript] = []

    async def consume() -> None:
        async with aclosing(stream.run(feed())) as transcripts:
            async for t in transcripts:
                items.append(t)

    with pytest.raises(ProviderConnectionError) as caught:
        await consume()
    message = str(caught.value)
    assert "the connection to" in message
    assert "2 reconnection(s) failed: HTTP 503 at the handshake" in message
    assert f"{len(items)} final transcript(s) were delivered" in message
    assert items
    assert stretches(items)[0][0] == 0
    assert caught.value.retryable
    assert [h[2] for h in fake.handshakes] == [101, 503, 503]


async def test_a_first_connection_that_fails_is_not_retried(fake: FakeCounter) -> None:
    fake.refuse_next = [503]
    with pytest.raises(ProviderConnectionError, match=r"cannot connect to .*HTTP 503"):
        await collect(CountingStream(fake.url), feed())
    assert len(fake.handshakes) == 1


async def test_a_refused_key_is_the_shared_http_advice_without_the_key(
    fake: FakeCounter, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "bad-key-9876543210"
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderHTTPError) as caught:
        await collect(CountingStream(fake.url, key=bad), feed())
    error = caught.value
    assert error.status_code == 401
    assert not error.retryable
    assert "authentication failed" in str(error)
    assert "COUNTER_API_KEY" in str(error)
    assert "server said: bad key" in str(error)
    assert len(fake.handshakes) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    for text in (str(error), repr(error), str(error.body), logged):
        assert bad not in text


async def test_a_refusal_the_service_marks_temporary_is_retried(fake: FakeCounter) -> None:
    """429 at a reconnection is a drop (retried), not a refusal."""
    fake.faults.drop_after_audio = 0.6
    stream = CountingStream(fake.url)

    async def refuse_the_reconnect() -> None:
        await fake.wait_for(lambda: bool(fake.connections))
        fake.refuse_next = [429]

    async with anyio.create_task_group() as tg:
        tg.start_soon(refuse_the_reconnect)
        items = await collect(stream, feed())
    assert_each_sample_once(items)
    assert [h[2] for h in fake.handshakes] == [101, 429, 101]


async def test_a_refusing_close_is_an_error_not_a_reconnect_loop(fake: FakeCounter) -> None:
    fake.close_with = (1008, f"policy: {KEY}")
    with pytest.raises(ProviderError) as caught:
        await collect(CountingStream(fake.url), feed())
    assert not isinstance(caught.value, ProviderConnectionError)
    assert "the counter closed the stream with code 1008 (policy: ***)" in str(caught.value)
    assert str(caught.value).endswith(": check the audio")
    assert KEY not in str(caught.value)
    assert len(fake.connections) == 1


async def test_other_closes_are_reconnected(fake: FakeCounter) -> None:
    """Each connection finalises one stretch, then the service closes it with 1011: that was
    progress, so with max_reconnects=1 the stream goes on, one connection per stretch, and the
    last half stretch ends normally; no sample is lost or repeated."""
    fake.close_with = (1011, "internal")
    samples = 4 * STRETCH + STRETCH // 2
    stream = CountingStream(fake.url, max_reconnects=1)
    items = await collect(stream, feed(PCM[: 2 * samples]))
    assert_each_sample_once(items, samples)
    assert [c.ended for c in fake.connections] == ["closed"] * 5
    assert [len(c.sent) for c in fake.connections] == [1] * 5


async def test_the_callers_audio_failing_fails_the_call(fake: FakeCounter) -> None:
    class Broken(Exception):
        pass

    closed = anyio.Event()

    async def audio() -> AsyncGenerator[AudioChunk, None]:
        try:
            yield AudioChunk(PCM[:3200], RATE)
            raise Broken("microphone unplugged")
        finally:
            closed.set()

    with pytest.raises(Broken, match="microphone unplugged"):
        await collect(CountingStream(fake.url), audio())
    assert closed.is_set()


async def test_leaving_early_closes_the_connection_and_the_source(fake: FakeCounter) -> None:
    closed = anyio.Event()
    resume = anyio.Event()  # never set: the audio would wait forever

    async def audio() -> AsyncGenerator[AudioChunk, None]:
        try:
            async with aclosing(feed(pause_at=1.0, resume=resume)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            closed.set()

    async with aclosing(CountingStream(fake.url).run(audio())) as transcripts:
        async for _ in transcripts:
            break
    assert closed.is_set()
    # the fake may be sending when the client goes: websockets then waits up to its
    # close_timeout (10 s) for its reader before it says the connection closed
    await fake.wait_for(lambda: fake.connections[0].ended is not None, seconds=30)
    assert fake.connections[0].ended == "client"


async def test_cancelled_midway_closes_the_connection(fake: FakeCounter) -> None:
    resume = anyio.Event()
    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, CountingStream(fake.url), feed(pause_at=1.0, resume=resume))
            await fake.wait_for(lambda: bool(fake.connections and fake.connections[0].sent))
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    # the fake may be sending when the client goes: websockets then waits up to its
    # close_timeout (10 s) for its reader before it says the connection closed
    await fake.wait_for(lambda: fake.connections[0].ended is not None, seconds=30)
    assert fake.connections[0].ended == "client"


async def test_audio_at_another_rate_is_refused(fake: FakeCounter) -> None:
    async def wrong() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(bytes(640), 16000)

    with pytest.raises(ProviderError, match=r"16000 Hz; this STT takes mono PCM16 .* 8000 Hz"):
        await collect(CountingStream(fake.url), wrong())


async def test_audio_beyond_replay_seconds_is_reported_lost(
    fake: FakeCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """A replay buffer of 0.1 s cannot hold a 0.25 s stretch: after the drop the lost audio is
    named, and what is replayed is at most the newest 0.1 s, never anything twice."""
    fake.faults.drop_after_audio = 0.6
    stream = CountingStream(fake.url, replay_seconds=0.1)
    with caplog.at_level(logging.WARNING):
        items = await collect(stream, feed())
    assert "exceeded replay_seconds and is not transcribed" in caplog.text
    covered = [n for first, last in stretches(items) for n in range(first, last + 1)]
    assert covered == sorted(set(covered))  # in order, none twice
    assert covered[-1] == SAMPLES - 1


async def test_a_half_open_connection_is_found_and_replaced(fake: FakeCounter) -> None:
    fake.faults.freeze_after_audio = 1.0
    stream = CountingStream(fake.url, ping_interval=0.1, ping_timeout=1.0, timeout=2.0)
    items = await collect(stream, feed())
    assert fake.connections[0].ended == "frozen"
    assert fake.connections[-1].ended == "closed"
    assert_each_sample_once(items)


async def test_pings_flow_while_no_audio_does_and_the_fake_counts_them(fake: FakeCounter) -> None:
    resume = anyio.Event()
    stream = CountingStream(fake.url, ping_interval=0.05)
    items: list[Transcript] = []

    async def run() -> None:
        items.extend(await collect(stream, feed(pause_at=1.0, resume=resume)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await fake.wait_for(lambda: bool(fake.connections) and fake.connections[0].pings >= 3)
        resume.set()
    assert_each_sample_once(items)
    assert len(fake.connections) == 1


# -- the shared fake pieces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "seconds", "expected"),
    [
        (0, 0.49, None),
        (0, 0.5, "dropped"),
        (0, 1.0, "frozen"),
        (1, 0.5, "dropped"),
        (2, 5.0, None),  # only the first ``drops`` connections fail
    ],
)
def test_link_faults_are_due_at_their_audio_on_their_connections(
    index: int, seconds: float, expected: str | None
) -> None:
    faults = LinkFaults(drop_after_audio=0.5, freeze_after_audio=1.0, drops=2)
    conn = FakeWebSocketConnection(index, "/x", {}, audio=bytearray(round(seconds * RATE) * 2))
    assert faults.due(conn, RATE) == expected
    assert LinkFaults().due(conn, RATE) is None


def test_a_connection_record_reads_its_query() -> None:
    conn = FakeWebSocketConnection(0, "/v1/listen?model=a&tag=x&tag=y", {})
    assert conn.query == {"model": ["a"], "tag": ["x", "y"]}
    assert conn.param("tag") == "y"
    assert conn.param("missing") is None


async def test_a_refused_handshake_is_recorded_with_its_json_body(fake: FakeCounter) -> None:
    import httpx

    fake.refuse_next = [418]
    async with httpx.AsyncClient() as client:
        response = await client.get(
            fake.url,
            headers={
                "Authorization": f"Key {KEY}",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
    assert response.status_code == 418
    assert response.json() == {"message": "busy"}
    assert response.headers["req-id"] == "r1"
    assert response.headers["content-type"] == "application/json"
    [(path, headers, status)] = fake.handshakes
    assert (path, status) == ("/listen", 418)
    assert headers["authorization"] == f"Key {KEY}"
    assert fake.connections == []
