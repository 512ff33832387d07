"""The ``cartesia`` TTS against a fake Cartesia WebSocket on 127.0.0.1 (httpx-ws client)."""

from __future__ import annotations

import itertools
import logging

import anyio
import pytest

from avatarkit import AudioChunk, ConfigError, ProviderConnectionError, ProviderError
from avatarkit.providers import IncrementalTTS, WordTiming, tts_capabilities
from avatarkit.testing import cancel_once, check_tts, wait_until
from avatarkit_cartesia.testing import KEY, VOICE, FakeCartesia
from avatarkit_cartesia.tts import CartesiaTTS


def make(fake: FakeCartesia, **options: object) -> CartesiaTTS:
    return CartesiaTTS(**{"api_key": KEY, "voice_id": VOICE, "base_url": fake.base_url, **options})


async def collect_into(stream: object, items: list[AudioChunk | WordTiming]) -> None:
    async for item in stream:  # type: ignore[attr-defined]
        items.append(item)


async def collect(stream: object) -> tuple[list[AudioChunk], list[WordTiming]]:
    items: list[AudioChunk | WordTiming] = []
    await collect_into(stream, items)
    audio = [i for i in items if isinstance(i, AudioChunk)]
    return audio, [i for i in items if isinstance(i, WordTiming)]


async def speak(tts: CartesiaTTS, text: str) -> None:
    async with tts, tts.open_stream() as stream:
        await stream.push(text)
        await stream.end()
        await collect(stream)


def test_declares_both_capabilities() -> None:
    caps = tts_capabilities(CartesiaTTS)
    assert caps.incremental
    assert caps.sentences
    assert isinstance(CartesiaTTS(api_key="k", voice_id="v"), IncrementalTTS)


async def test_continuations_audio_and_word_timestamps(fake_cartesia: FakeCartesia) -> None:
    pieces = ["Hello ", "there, how ", "are you? ", "I am ", "fine."]
    async with make(fake_cartesia, sample_rate=16000) as tts:
        async with tts.open_stream() as stream:
            for piece in pieces:
                await stream.push(piece)
                if piece.endswith("? "):
                    await stream.flush()
            await stream.end()
            audio, words = await collect(stream)
        context = stream.context_id
    text = "".join(pieces)
    assert all(c.sample_rate == 16000 and len(c.data) % 2 == 0 for c in audio)
    assert sum(c.frames for c in audio) == len(text) * 160
    assert [w.word for w in words] == text.split()
    assert words[0].start == pytest.approx(0.0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))
    assert words[-1].end == pytest.approx(len(text) * 0.01)
    sent = [m for m in fake_cartesia.received if m.get("context_id") == context]
    assert [m["continue"] for m in sent] == [True] * 6 + [False]
    assert sum(1 for m in sent if m.get("flush")) == 1
    assert all(m["voice"] == {"mode": "id", "id": VOICE} and m["add_timestamps"] for m in sent)
    assert sent[0]["output_format"] == {
        "container": "raw",
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
    }
    assert fake_cartesia.transcript(context) == text
    assert not fake_cartesia.violations


async def test_first_audio_before_the_text_is_finished(fake_cartesia: FakeCartesia) -> None:
    async with make(fake_cartesia) as tts, tts.open_stream() as stream:
        await stream.push("The first sentence is done. ")
        await stream.push("The second is still being")
        iterator = stream.__aiter__()
        with anyio.fail_after(5):
            assert isinstance(await iterator.__anext__(), AudioChunk)
        await stream.push(" written.")
        await stream.end()
        await collect(stream)


async def test_sentence_path(fake_cartesia: FakeCartesia) -> None:
    async with make(fake_cartesia) as tts:
        chunks = await check_tts(tts)
    assert all(c.sample_rate == 24000 for c in chunks)


async def test_options_reach_the_service(fake_cartesia: FakeCartesia) -> None:
    tts = make(fake_cartesia, model="sonic-turbo", speed=1.2, max_buffer_delay_ms=200)
    await speak(tts, "Hi there.")
    first = fake_cartesia.received[0]
    assert first["model_id"] == "sonic-turbo"
    assert first["generation_config"] == {"speed": 1.2}
    assert first["max_buffer_delay_ms"] == 200
    assert first["language"] == "en"


async def test_bad_key_is_refused_without_showing_it(
    fake_cartesia: FakeCartesia, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk_car_wrongwrongwrong0123456789"
    tts = make(fake_cartesia, api_key=secret)
    with pytest.raises(ProviderError, match="HTTP 401: authentication failed") as info:
        await speak(tts, "Hello.")
    assert "CARTESIA_API_KEY" in str(info.value)
    assert "server said: Invalid API key" in str(info.value)  # the refusal's body, read
    logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    for text in (str(info.value), repr(info.value), repr(tts), logs):
        assert secret not in text


async def test_unknown_voice_names_the_option(fake_cartesia: FakeCartesia) -> None:
    tts = make(fake_cartesia, voice_id="nobody")
    with pytest.raises(ProviderError, match="voice 'nobody' was not found: check the voice_id"):
        await speak(tts, "Hello.")


async def test_dropped_socket_is_an_error(fake_cartesia: FakeCartesia) -> None:
    fake_cartesia.knobs.drop_after_chunks = 1
    received: list[AudioChunk | WordTiming] = []
    async with make(fake_cartesia) as tts, tts.open_stream() as stream:
        await stream.push("A sentence that the service will not finish speaking today. ")
        await stream.end()
        with pytest.raises(ProviderConnectionError, match="dropped"):
            await collect_into(stream, received)
    assert received


async def test_leaving_early_cancels_the_context(fake_cartesia: FakeCartesia) -> None:
    fake_cartesia.knobs.chars_per_chunk = 2
    async with make(fake_cartesia) as tts:
        async with tts.open_stream() as stream:
            await stream.push("A long sentence that keeps the service busy for a while. ")
            async for _ in stream:
                break
        await wait_until(lambda: fake_cartesia.stopped(stream.context_id))
        await wait_until(lambda: fake_cartesia.closed_by_client == 1)
        async with tts.open_stream() as again:
            await again.push("Again.")
            await again.end()
            audio, _ = await collect(again)
        assert audio


async def test_cancelled_while_waiting_cancels_the_context(fake_cartesia: FakeCartesia) -> None:
    fake_cartesia.knobs.delay = 0.3
    async with make(fake_cartesia) as tts:
        # Cancelled once the service has the text (a fixed 50 ms could end before a loaded
        # machine had sent it, and there was then no context to cancel).
        streams = []

        async def speak() -> None:
            async with tts.open_stream() as stream:
                streams.append(stream)
                await stream.push("Hello there. ")
                await stream.end()
                await collect(stream)

        assert await cancel_once(lambda: "Hello" in fake_cartesia.transcript(), speak)
        [stream] = streams
        await wait_until(lambda: fake_cartesia.stopped(stream.context_id))


async def test_an_empty_turn_sends_nothing(fake_cartesia: FakeCartesia) -> None:
    async with make(fake_cartesia) as tts, tts.open_stream() as stream:
        await stream.flush()
        await stream.end()
        assert await collect(stream) == ([], [])
    assert fake_cartesia.received == []


def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="CARTESIA_API_KEY"):
        CartesiaTTS(voice_id="v")


async def test_conformance(fake_cartesia: FakeCartesia) -> None:
    from avatarkit.testing import check_incremental_tts

    items = await check_incremental_tts(make(fake_cartesia))
    assert any(isinstance(i, WordTiming) for i in items)
