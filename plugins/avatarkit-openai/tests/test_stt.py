"""The openai STT: the realtime transcription WebSocket against FakeRealtime (through httpx-ws,
the production client), and the HTTP transcriptions endpoint through the real SDK against the
loopback fake, on asyncio and trio. Both fakes transcribe the tone "speech" they receive
(avatarkit.tonespeech), so lost or repeated audio shows up as wrong words."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from avatarkit.errors import ConfigError, ProviderConnectionError, ProviderError, ProviderHTTPError
from avatarkit.plugins import default_registry
from avatarkit.providers import AudioChunk, Transcript, stt_sample_rate, stt_streams
from avatarkit.testing import ResponseGate, audio_feed, check_stt, collect_transcripts
from avatarkit.tonespeech import GAP_SECONDS, WORD_SECONDS, tone_speech
from avatarkit_openai.stt import OpenAISTT
from avatarkit_openai.testing import API_KEY, FakeRealtime

RATE = 24000
UTTERANCES = ["hello there how are you today", "tell me a joke please"]
SPOKEN = " ".join(UTTERANCES).split()
PAUSE = 1.2
PCM = tone_speech(UTTERANCES, RATE, pause=PAUSE)


@pytest.fixture
def realtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRealtime]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeRealtime() as server:
        yield server


def live(fake: FakeRealtime, **options: object) -> OpenAISTT:
    return OpenAISTT(api_key=API_KEY, base_url=fake.base_url, **options)  # type: ignore[arg-type]


def feed(pcm: bytes, rate: int = RATE, **options: Any) -> AsyncIterator[AudioChunk]:
    return audio_feed(pcm, rate, **options)


collect = collect_transcripts


def final_texts(items: list[Transcript]) -> list[str]:
    return [t.text for t in items if t.kind == "final"]


# -- realtime ------------------------------------------------------------------------------------


def test_registered_with_its_modes() -> None:
    spec = default_registry(refresh=True).get("stt", "openai")
    assert spec.load_factory() is OpenAISTT
    realtime = OpenAISTT(api_key=API_KEY)
    assert (stt_streams(realtime), stt_sample_rate(realtime)) == (True, 24000)
    http = OpenAISTT(api_key=API_KEY, mode="http")
    assert (stt_streams(http), stt_sample_rate(http)) == (False, 16000)
    with pytest.raises(ConfigError, match="24000 Hz"):
        OpenAISTT(api_key=API_KEY, sample_rate=16000)


async def test_realtime_utterances_interim_and_final(realtime: FakeRealtime) -> None:
    items = await collect(live(realtime, language="en", prompt="Greetings."), feed(PCM))
    assert final_texts(items) == UTTERANCES
    assert all(t.end_of_turn for t in items if t.kind == "final")
    kinds = [t.kind for t in items]
    assert kinds.count("speech_started") == kinds.count("speech_ended") == 2
    # interims grow to the final, before it
    first_final = kinds.index("final")
    interims = [t.text for t in items[:first_final] if t.kind == "interim"]
    assert interims[0] == "hello"
    assert interims[-1] == UTTERANCES[0]
    # times: speech starts at the first word less the prefix padding (0.3 s), in audio time
    second_start = 0.3 + 6 * (WORD_SECONDS + GAP_SECONDS) - GAP_SECONDS + PAUSE
    starts = [t.start for t in items if t.kind == "speech_started"]
    assert starts == pytest.approx([0.0, second_start - 0.3], abs=0.011)
    # the wire
    [conn] = realtime.connections
    assert conn.path == "/v1/realtime?intent=transcription"
    assert conn.headers["authorization"] == f"Bearer {API_KEY}"
    assert bytes(conn.audio) == PCM
    update = conn.received[0]
    assert update["type"] == "session.update"
    assert update["session"]["audio"]["input"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {
            "model": "gpt-4o-mini-transcribe",
            "language": "en",
            "prompt": "Greetings.",
        },
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        },
        "noise_reduction": {"type": "near_field"},
    }
    # the barrier after the audio; no commit was needed (the server VAD closed both)
    assert [m["type"] for m in conn.received] == ["session.update", "session.update"]
    assert not realtime.violations


async def test_realtime_passes_the_stt_conformance_check(realtime: FakeRealtime) -> None:
    text = await check_stt(
        live(realtime), AudioChunk(tone_speech(["hello there"], RATE), RATE), expect=["hello"]
    )
    assert text == "hello there"


async def test_speech_open_at_the_end_is_committed(realtime: FakeRealtime) -> None:
    pcm = tone_speech(["hello there"], RATE, tail=0.1)  # ends before the server VAD's silence
    items = await collect(live(realtime), feed(pcm))
    conn = realtime.connections[0]
    assert final_texts(items) == ["hello there"], (
        items,
        [m["type"] for m in conn.sent],
        [m["type"] for m in conn.received],
    )
    assert [m["type"] for m in realtime.connections[0].received] == [
        "session.update",
        "session.update",  # the barrier after the last audio
        "input_audio_buffer.commit",
    ]


async def test_without_server_vad_the_audio_is_one_utterance(realtime: FakeRealtime) -> None:
    items = await collect(live(realtime, turn_detection=None, noise_reduction=None), feed(PCM))
    assert final_texts(items) == [" ".join(UTTERANCES)]
    assert not any(t.end_of_turn for t in items)
    update = realtime.connections[0].received[0]["session"]["audio"]["input"]
    assert update["turn_detection"] is None
    assert update["noise_reduction"] is None


async def test_finals_come_in_speaking_order_when_completions_do_not(
    realtime: FakeRealtime,
) -> None:
    realtime.knobs.complete_out_of_order = True
    items = await collect(live(realtime), feed(PCM))
    sent = [m["item_id"] for m in realtime.connections[0].sent if m["type"].endswith("completed")]
    assert sent == ["item_0_2", "item_0_1"]  # the fake really answered out of order
    assert final_texts(items) == UTTERANCES


async def test_pings_keep_the_connection_alive_while_no_audio_flows(
    realtime: FakeRealtime,
) -> None:
    resume = anyio.Event()
    stt = live(realtime, ping_interval=0.05)
    items: list[Transcript] = []

    async def run() -> None:
        items.extend(await collect(stt, feed(PCM, pause_at=2.0, resume=resume)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await realtime.wait_for(
            lambda: bool(realtime.connections) and realtime.connections[0].pings >= 5
        )
        resume.set()
    assert final_texts(items) == UTTERANCES
    assert len(realtime.connections) == 1


@pytest.mark.parametrize("drop_at", [0.6, 1.5, 2.5, 3.6])
async def test_a_dropped_connection_loses_and_repeats_nothing(
    realtime: FakeRealtime, drop_at: float, caplog: pytest.LogCaptureFixture
) -> None:
    realtime.knobs.drop_after_audio = drop_at
    with caplog.at_level(logging.WARNING):
        items = await collect(live(realtime), feed(PCM))
    assert len(realtime.connections) == 2
    assert realtime.connections[0].ended == "dropped"
    assert final_texts(items) == UTTERANCES
    starts = [t.start for t in items if t.kind == "final"]
    assert starts[0] == pytest.approx(0.0, abs=0.011)
    assert "reconnecting" in caplog.text
    second = bytes(realtime.connections[1].audio)
    assert PCM.endswith(second)
    assert realtime.connections[1].received[0]["type"] == "session.update"


async def test_a_lasting_outage_is_a_clear_error_after_the_finals_received(
    realtime: FakeRealtime,
) -> None:
    realtime.knobs.drop_after_audio = 3.6  # in the second utterance
    realtime.knobs.refuse_reconnects = True
    items: list[Transcript] = []

    async def consume() -> None:
        async with aclosing(live(realtime, max_reconnects=1).transcribe(feed(PCM))) as it:
            async for t in it:
                items.append(t)

    with pytest.raises(ProviderConnectionError) as caught:
        await consume()
    assert final_texts(items) == UTTERANCES[:1]
    assert "1 reconnection(s) failed" in str(caught.value)
    assert "1 final transcript(s) were delivered" in str(caught.value)


async def test_realtime_bad_key_is_a_clear_error_that_never_shows_the_key(
    realtime: FakeRealtime, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "sk-bad-key-9876543210abcdef"
    stt = OpenAISTT(api_key=bad, base_url=realtime.base_url)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderHTTPError) as caught:
        await collect(stt, feed(tone_speech(["hello"], RATE)))
    assert caught.value.status_code == 401
    assert "authentication failed" in str(caught.value)
    assert "OPENAI_API_KEY" in str(caught.value)
    assert "Incorrect API key provided" in str(caught.value)  # the refusal's body, read
    assert len(realtime.handshakes) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "websockets.server")
    for text in (str(caught.value), repr(stt), str(caught.value.body), logged):
        assert bad not in text


async def test_a_failed_transcription_is_an_error_not_silence(realtime: FakeRealtime) -> None:
    realtime.knobs.fail_item = 1
    items: list[Transcript] = []

    async def consume() -> None:
        async with aclosing(live(realtime).transcribe(feed(PCM))) as it:
            async for t in it:
                items.append(t)

    with pytest.raises(ProviderError, match="transcribing an utterance failed: boom"):
        await consume()
    assert final_texts(items) == UTTERANCES[:1]


async def test_realtime_audio_at_another_rate_is_refused(realtime: FakeRealtime) -> None:
    with pytest.raises(ProviderError, match=r"16000 Hz.*24000 Hz"):
        await collect(live(realtime), feed(tone_speech(["hello"], 16000), 16000))


# -- http ----------------------------------------------------------------------------------------


def http(fake, **options: object) -> OpenAISTT:  # type: ignore[no-untyped-def]
    return OpenAISTT(mode="http", api_key=fake.key, base_url=fake.url, **options)  # type: ignore[arg-type]


HTTP_PCM = tone_speech(["tell me a joke please"], 16000)


async def test_http_streams_deltas_then_one_final(fake_openai, gate: ResponseGate) -> None:  # type: ignore[no-untyped-def]
    fake_openai.script = [fake_openai.transcription(stream=True, gate=gate)]
    items: list[Transcript] = []
    async with http(fake_openai, language="en", prompt="Jokes.") as stt:
        async with aclosing(stt.transcribe(feed(HTTP_PCM, 16000))) as it:
            async for t in it:
                items.append(t)
                gate.open()
    assert gate.server_finished_first is False  # deltas were handed on as they came
    assert [t.text for t in items if t.kind == "interim"][:2] == ["tell", "tell me"]
    assert final_texts(items) == ["tell me a joke please"]
    assert items[-1].end == pytest.approx(len(HTTP_PCM) / 2 / 16000)
    [request] = fake_openai.requests
    assert request.headers["authorization"] == f"Bearer {fake_openai.key}"


async def test_http_without_streaming(fake_openai) -> None:  # type: ignore[no-untyped-def]
    fake_openai.script = [fake_openai.transcription(stream=False)]
    async with http(fake_openai, stream=False, model="whisper-1") as stt:
        items = await collect(stt, feed(HTTP_PCM, 16000))
    assert [(t.kind, t.text) for t in items] == [("final", "tell me a joke please")]


async def test_http_passes_the_stt_conformance_check(fake_openai) -> None:  # type: ignore[no-untyped-def]
    fake_openai.script = [fake_openai.transcription()]
    async with http(fake_openai) as stt:
        text = await check_stt(stt, AudioChunk(HTTP_PCM, 16000), expect=["joke"])
    assert text == "tell me a joke please"


async def test_http_a_dropped_stream_is_sent_again_without_loss(fake_openai) -> None:  # type: ignore[no-untyped-def]
    fake_openai.script = [fake_openai.transcription(cut_after=2), fake_openai.transcription()]
    async with http(fake_openai) as stt:
        items = await collect(stt, feed(HTTP_PCM, 16000))
    assert final_texts(items) == ["tell me a joke please"]
    assert len(fake_openai.requests) == 2


async def test_http_a_lasting_drop_is_a_clear_error(fake_openai) -> None:  # type: ignore[no-untyped-def]
    fake_openai.script = [fake_openai.transcription(cut_after=1)]
    async with http(fake_openai, max_retries=1) as stt:
        with pytest.raises(ProviderConnectionError, match="dropped"):
            await collect(stt, feed(HTTP_PCM, 16000))
    assert len(fake_openai.requests) == 2


async def test_http_bad_key_is_a_clear_error_that_never_shows_the_key(  # type: ignore[no-untyped-def]
    fake_openai, caplog: pytest.LogCaptureFixture
) -> None:
    fake_openai.script = [fake_openai.transcription()]
    stt = OpenAISTT(mode="http", api_key="sk-wrong-0123456789", base_url=fake_openai.url)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderHTTPError) as caught:
        await collect(stt, feed(HTTP_PCM, 16000))
    await stt.close()
    assert caught.value.status_code == 401
    for text in (str(caught.value), repr(stt), str(caught.value.body), caplog.text):
        assert "sk-wrong-0123456789" not in text


async def test_http_empty_audio_makes_no_request(fake_openai) -> None:  # type: ignore[no-untyped-def]
    fake_openai.script = [fake_openai.transcription()]
    async with http(fake_openai) as stt:
        items = await collect(stt, feed(b"", 16000))
    assert [(t.kind, t.text) for t in items] == [("final", "")]
    assert fake_openai.requests == []


async def test_a_half_open_connection_is_found_and_replaced(realtime: FakeRealtime) -> None:
    """The server stops reading and answering mid-utterance, the TCP connection stays up: an
    unanswered ping, or a send that cannot complete within ``timeout`` once the socket buffers
    are full, gives it away, and the audio goes again on a new connection."""
    realtime.knobs.freeze_after_audio = 1.5
    stt = live(realtime, ping_interval=0.1, ping_timeout=1.0, timeout=2.0)
    items = await collect(stt, feed(PCM))
    assert realtime.connections[0].ended == "frozen"
    # replaced (a loaded machine may cost one more, healthy, reconnection: timeouts are short)
    assert len(realtime.connections) >= 2
    assert realtime.connections[-1].ended != "frozen"
    assert final_texts(items) == UTTERANCES


async def test_two_realtime_calls_at_once_are_independent(realtime: FakeRealtime) -> None:
    stt = live(realtime)
    results: dict[int, list[Transcript]] = {}

    async def one(n: int, text: str) -> None:
        results[n] = await collect(stt, feed(tone_speech([text], RATE)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, "hello there")
        tg.start_soon(one, 1, "tell me a joke")
    assert final_texts(results[0]) == ["hello there"]
    assert final_texts(results[1]) == ["tell me a joke"]
    assert len(realtime.connections) == 2
