"""The deepgram STT against a fake Deepgram on 127.0.0.1 speaking the live protocol, through
httpx-ws (the production client), on asyncio and trio.

The fake transcribes the tone "speech" it actually receives (avatarkit.tonespeech), so lost,
repeated or misplaced audio shows up as wrong words or wrong times.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from avatarkit.errors import (
    ConfigError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
)
from avatarkit.providers import AudioChunk, Transcript
from avatarkit.testing import audio_feed, check_stt, collect_transcripts
from avatarkit.tonespeech import GAP_SECONDS, WORD_SECONDS, tone_speech
from avatarkit_deepgram.stt import DeepgramSTT
from avatarkit_deepgram.testing import API_KEY, FakeDeepgram

RATE = 16000
UTTERANCES = ["hello there how are you today", "tell me a joke please"]
SPOKEN = " ".join(UTTERANCES).split()
PAUSE = 1.2  # between utterances: longer than utterance_end_ms
PCM = tone_speech(UTTERANCES, RATE, pause=PAUSE)


@pytest.fixture
def fake() -> Iterator[FakeDeepgram]:
    with FakeDeepgram() as server:
        yield server


def stt_for(fake: FakeDeepgram, **options: object) -> DeepgramSTT:
    return DeepgramSTT(api_key=API_KEY, base_url=fake.base_url, **options)


def feed(pcm: bytes, **options: Any) -> AsyncIterator[AudioChunk]:
    """``pcm`` in chunks, as fast as taken (``pause_at`` / ``resume``: a silent stretch)."""
    return audio_feed(pcm, RATE, **options)


collect = collect_transcripts


def finals(items: list[Transcript]) -> list[str]:
    return " ".join(t.text for t in items if t.kind == "final" and t.text).split()


def word_starts() -> list[float]:
    """Where tone_speech puts each word of UTTERANCES (lead 0.3 s, then PAUSE)."""
    starts, t = [], 0.3
    for n, utterance in enumerate(UTTERANCES):
        if n:
            t += PAUSE - GAP_SECONDS
        for _ in utterance.split():
            starts.append(t)
            t += WORD_SECONDS + GAP_SECONDS
    return starts


async def test_interim_and_final_results_with_endpoints(fake: FakeDeepgram) -> None:
    items = await collect(stt_for(fake), feed(PCM))

    assert finals(items) == SPOKEN
    words = [w for t in items if t.kind == "final" for w in t.words]
    assert [w.word for w in words] == SPOKEN
    for word, expected in zip(words, word_starts(), strict=True):
        assert word.start == pytest.approx(expected, abs=0.011)
    # interim text comes before the final of its stretch, and is a prefix of it
    first_final = next(i for i, t in enumerate(items) if t.kind == "final")
    interims = [t.text for t in items[:first_final] if t.kind == "interim"]
    assert interims[0] == "hello"
    assert items[first_final].text.startswith(interims[-1])
    # one endpoint per utterance, on a final; speech starts at each utterance
    assert sum(t.end_of_turn for t in items if t.kind == "final") == len(UTTERANCES)
    started = [t.start for t in items if t.kind == "speech_started"]
    assert started == pytest.approx([0.3, word_starts()[6]], abs=0.011)
    assert [t.kind for t in items].count("speech_ended") == len(UTTERANCES)
    # the wire: one connection, the documented query and auth, CloseStream at the end
    [conn] = fake.connections
    assert conn.headers["authorization"] == f"Token {API_KEY}"
    for name, value in {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
    }.items():
        assert conn.param(name) == value, name
    assert bytes(conn.audio) == PCM
    assert [m["type"] for m in conn.received] == ["CloseStream"]
    assert conn.ended == "closed"
    assert not fake.violations


async def test_passes_the_stt_conformance_check(fake: FakeDeepgram) -> None:
    pcm = tone_speech(["hello there"], RATE)
    text = await check_stt(stt_for(fake), AudioChunk(pcm, RATE), expect=["hello", "there"])
    assert text == "hello there"


async def test_endpointing_off_leaves_the_turn_end_to_utterance_end(fake: FakeDeepgram) -> None:
    items = await collect(stt_for(fake, endpointing=False), feed(PCM))
    assert fake.connections[0].param("endpointing") == "false"
    assert finals(items) == SPOKEN
    assert not any(t.end_of_turn for t in items if t.kind == "final")
    ends = [t for t in items if t.kind == "speech_ended"]
    assert [t.end_of_turn for t in ends] == [True, True]
    assert ends[0].end == pytest.approx(word_starts()[5] + WORD_SECONDS, abs=0.011)


async def test_keep_alive_holds_the_stream_open_while_no_audio_flows(fake: FakeDeepgram) -> None:
    fake.knobs.idle_timeout = 2.0  # the fake closes a silent stream after 2 s (Deepgram: 10 s)
    resume = anyio.Event()
    stt = stt_for(fake, keepalive_interval=0.05)
    items: list[Transcript] = []

    async def run() -> None:
        items.extend(await collect(stt, feed(PCM, pause_at=2.0, resume=resume)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        # no audio flows now: KeepAlives must, for longer than the idle timeout (60 x 0.05 s;
        # the interval is 40 times shorter than the timeout, so a loaded machine cannot miss it)
        await fake.wait_for(lambda: len(fake.messages("KeepAlive")) >= 60, seconds=30)
        resume.set()
    assert finals(items) == SPOKEN
    assert len(fake.connections) == 1  # never closed for idleness
    assert fake.connections[0].ended == "closed"


async def test_a_stream_closed_for_idleness_is_reopened_without_loss(fake: FakeDeepgram) -> None:
    """The same gap without KeepAlives (interval above the fake's timeout): Deepgram closes
    with 1011; the STT reconnects and nothing said is lost."""
    fake.knobs.idle_timeout = 0.2
    resume = anyio.Event()
    stt = stt_for(fake, keepalive_interval=9)
    items: list[Transcript] = []

    async def run() -> None:
        items.extend(await collect(stt, feed(PCM, pause_at=1.0, resume=resume)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await fake.wait_for(lambda: bool(fake.connections) and fake.connections[0].ended == "idle")
        resume.set()
    assert fake.connections[0].ended == "idle"
    assert finals(items) == SPOKEN
    assert not fake.messages("KeepAlive")


@pytest.mark.parametrize("drop_at", [0.55, 1.05, 1.3, 2.9])
async def test_a_dropped_connection_loses_and_repeats_nothing(
    fake: FakeDeepgram, drop_at: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Cut mid-utterance (and just after a final): the unfinalised audio is sent again on a
    new connection, so every word arrives once, at its true time."""
    fake.knobs.drop_after_audio = drop_at
    pcm = PCM
    with caplog.at_level(logging.WARNING):
        items = await collect(stt_for(fake), feed(pcm))
    assert len(fake.connections) == 2
    assert fake.connections[0].ended == "dropped"
    assert finals(items) == SPOKEN
    words = [w for t in items if t.kind == "final" for w in t.words]
    for word, expected in zip(words, word_starts(), strict=True):
        assert word.start == pytest.approx(expected, abs=0.011)
    # the second connection got the audio from the end of a final of the first (the last one
    # that reached the client before the cut), and everything after it
    fixed = [m for m in fake.connections[0].sent if m["type"] == "Results" and m["is_final"]]
    ends = {0} | {2 * round((m["start"] + m["duration"]) * RATE) for m in fixed}
    second = bytes(fake.connections[1].audio)
    assert PCM.endswith(second)
    assert len(PCM) - len(second) in ends
    assert "reconnecting" in caplog.text


async def test_a_lasting_outage_is_a_clear_error_after_the_finals_received(
    fake: FakeDeepgram,
) -> None:
    fake.knobs.drop_after_audio = 2.9  # in the second utterance
    fake.knobs.refuse_reconnects = True
    items: list[Transcript] = []
    stt = stt_for(fake, max_reconnects=2)

    async def consume() -> None:
        async with aclosing(stt.transcribe(feed(PCM))) as transcripts:
            async for t in transcripts:
                items.append(t)

    with pytest.raises(ProviderConnectionError) as caught:
        await consume()
    assert finals(items) == UTTERANCES[0].split()  # everything finalised was delivered
    message = str(caught.value)
    assert "2 reconnection(s) failed" in message
    assert "2 final transcript(s) were delivered" in message
    assert "not transcribed" in message
    assert caught.value.retryable
    assert len([h for h in fake.handshakes if h[2] == 503]) == 2


async def test_a_bad_key_is_a_clear_error_that_never_shows_the_key(
    fake: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "fedcba9876543210fedcba9876543210fedcba98"
    stt = DeepgramSTT(api_key=bad, base_url=fake.base_url)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderHTTPError) as caught:
        await collect(stt, feed(tone_speech(["hello"], RATE)))
    error = caught.value
    assert error.status_code == 401
    assert not error.retryable
    assert "authentication failed" in str(error)
    assert "DEEPGRAM_API_KEY" in str(error)
    assert "Invalid credentials" in str(error)
    assert len(fake.handshakes) == 1  # a refused key is not retried
    # every log line of the client side (the fake's own server log shows what it received)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    assert "401" in logged
    for text in (str(error), repr(error), repr(stt), str(error.body), logged):
        assert bad not in text
        assert API_KEY not in text


def test_a_missing_key_fails_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        DeepgramSTT()
    monkeypatch.setenv("DEEPGRAM_API_KEY", API_KEY)
    assert API_KEY not in repr(DeepgramSTT())


async def test_finalize_flushes_what_was_heard(fake: FakeDeepgram) -> None:
    pcm = tone_speech(["hello there"], RATE, tail=0.1)  # shorter than the endpointing
    resume = anyio.Event()
    stt = stt_for(fake, interim_results=False)
    got: list[Transcript] = []

    async def flush_when_heard() -> None:
        await fake.wait_for(
            lambda: bool(fake.connections) and len(fake.connections[0].audio) >= len(pcm)
        )
        await stt.finalize()

    async with anyio.create_task_group() as tg:  # outside the generator's own task group
        tg.start_soon(flush_when_heard)
        audio = feed(pcm + bytes(RATE), pause_at=len(pcm) / 2 / RATE, resume=resume)
        async with aclosing(stt.transcribe(audio)) as transcripts:
            async for t in transcripts:
                got.append(t)
                if t.kind == "final":
                    break
    assert got[-1].text == "hello there"
    assert not got[-1].end_of_turn
    assert [m["type"] for m in fake.connections[0].received][:1] == ["Finalize"]
    assert fake.connections[0].sent[-1]["from_finalize"] is True


async def test_leaving_early_closes_the_connection(fake: FakeDeepgram) -> None:
    stt = stt_for(fake)
    async with aclosing(stt.transcribe(feed(PCM))) as transcripts:
        async for t in transcripts:
            if t.kind == "interim":
                break
    # the fake may be sending when the client goes: websockets then waits up to its
    # close_timeout (10 s) for its reader before it says the connection closed
    await fake.wait_for(lambda: fake.connections[0].ended is not None, seconds=30)
    assert fake.connections[0].ended == "client"


async def test_an_unanswered_close_stream_ends_after_close_timeout(fake: FakeDeepgram) -> None:
    fake.knobs.ignore_close_stream = True
    items = await collect(stt_for(fake, close_timeout=0.2), feed(tone_speech(["hello"], RATE)))
    assert finals(items) == ["hello"]
    assert fake.messages("CloseStream")


async def test_audio_at_another_rate_is_refused_with_a_clear_error(fake: FakeDeepgram) -> None:
    async def wrong() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(bytes(960), 24000)

    with pytest.raises(ProviderError, match=r"24000 Hz.*16000 Hz"):
        await collect(stt_for(fake), wrong())


async def test_two_calls_at_once_are_independent(fake: FakeDeepgram) -> None:
    stt = stt_for(fake)
    results: dict[int, list[Transcript]] = {}

    async def one(n: int, text: str) -> None:
        results[n] = await collect(stt, feed(tone_speech([text], RATE)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, "hello there")
        tg.start_soon(one, 1, "tell me a joke")
    assert finals(results[0]) == ["hello", "there"]
    assert finals(results[1]) == ["tell", "me", "a", "joke"]
    assert len(fake.connections) == 2


async def test_a_half_open_connection_is_found_and_replaced(fake: FakeDeepgram) -> None:
    """Deepgram stops reading and answering mid-utterance, the TCP connection stays up: an
    unanswered ping (or a send that cannot complete) gives it away; nothing said is lost."""
    fake.knobs.freeze_after_audio = 1.0
    stt = stt_for(fake, ping_interval=0.1, ping_timeout=1.0, connect_timeout=2.0)
    items = await collect(stt, feed(PCM))
    assert fake.connections[0].ended == "frozen"
    # replaced (a loaded machine may cost one more, healthy, reconnection: timeouts are short)
    assert len(fake.connections) >= 2
    assert fake.connections[-1].ended != "frozen"
    assert finals(items) == SPOKEN


async def test_a_refusing_close_is_a_clear_error_not_a_reconnect_loop(fake: FakeDeepgram) -> None:
    """Deepgram closes with 1008 when it cannot use the audio: retrying cannot help."""
    fake.knobs.close_with = (1008, "DATA-0000: could not decode the audio")

    async def consume() -> None:
        await collect(stt_for(fake), feed(PCM))

    with pytest.raises(ProviderError, match=r"code 1008 \(DATA-0000: could not decode") as caught:
        await consume()
    assert not caught.value.retryable
    assert len(fake.connections) == 1


async def test_other_closes_are_reconnected(fake: FakeDeepgram) -> None:
    """1011 (Deepgram's internal error or timeout) is worth another connection; a lasting one
    ends in a clear error after max_reconnects."""
    fake.knobs.close_with = (1011, "NET-0000: internal error")

    async def consume() -> None:
        await collect(stt_for(fake, max_reconnects=2), feed(PCM))

    with pytest.raises(ProviderConnectionError, match="code 1011") as caught:
        await consume()
    assert "2 reconnection(s) failed" in str(caught.value)
    assert len(fake.connections) == 3
