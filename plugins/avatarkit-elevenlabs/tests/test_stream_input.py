"""The ``elevenlabs`` TTS against a fake stream-input WebSocket on 127.0.0.1 (httpx-ws client)."""

from __future__ import annotations

import itertools
import logging

import anyio
import pytest

from avatarkit import AudioChunk, ConfigError, ProviderConnectionError, ProviderError
from avatarkit.providers import IncrementalTTS, WordTiming, tts_capabilities
from avatarkit.testing import cancel_once, check_tts, wait_until
from avatarkit_elevenlabs.testing import KEY, VOICE, FakeElevenLabs
from avatarkit_elevenlabs.tts import ElevenLabsTTS


def make(fake: FakeElevenLabs, **options: object) -> ElevenLabsTTS:
    return ElevenLabsTTS(**{"api_key": KEY, "voice_id": VOICE, "base_url": fake.ws_url, **options})


async def speak(tts: ElevenLabsTTS, text: str) -> list[AudioChunk | WordTiming]:
    """One turn of ``text`` through a fresh stream; everything it yielded."""
    items: list[AudioChunk | WordTiming] = []
    async with tts, tts.open_stream() as stream:
        await stream.push(text)
        await stream.end()
        async for item in stream:
            items.append(item)
    return items


async def collect_into(stream: object, items: list[AudioChunk | WordTiming]) -> None:
    async for item in stream:  # type: ignore[attr-defined]
        items.append(item)


async def collect(stream: object) -> tuple[list[AudioChunk], list[WordTiming]]:
    audio: list[AudioChunk] = []
    words: list[WordTiming] = []
    async for item in stream:  # type: ignore[attr-defined]
        (audio if isinstance(item, AudioChunk) else words).append(item)
    return audio, words


def test_declares_both_capabilities() -> None:
    caps = tts_capabilities(ElevenLabsTTS)
    assert caps.incremental
    assert caps.sentences
    assert isinstance(ElevenLabsTTS(api_key="k", voice_id="v"), IncrementalTTS)


async def test_text_in_pieces_audio_and_word_timings_out(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.knobs.ms_per_char = 10
    pieces = ["Hello ", "there, ", "how are ", "you ", "today? "]
    async with make(fake_elevenlabs, sample_rate=16000) as tts:
        async with tts.open_stream() as stream:
            for piece in pieces:
                await stream.push(piece)
            await stream.flush()
            await stream.push("Fine. ")
            await stream.end()
            audio, words = await collect(stream)
    text = "".join(pieces) + "Fine. "
    # every character's audio arrived, as whole 16 kHz samples
    assert all(c.sample_rate == 16000 and len(c.data) % 2 == 0 for c in audio)
    frames = sum(c.frames for c in audio)
    spoken = fake_elevenlabs.texts()[1:]  # all but the opening " ", spaces take time too
    assert frames == len(spoken) * 160
    assert [w.word for w in words] == text.split()
    # timings count from the turn's first sample, increase, and lie inside the audio
    assert words[0].start == pytest.approx(0.0)
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(words))
    assert words[-1].end <= frames / 16000 + 0.011
    first = fake_elevenlabs.received[0]
    assert first["text"] == " "
    assert first["generation_config"] == {"chunk_length_schedule": [50, 90, 120, 150]}
    assert fake_elevenlabs.texts().split() == text.split()
    assert fake_elevenlabs.received[-1] == {"text": ""}
    assert {"text": " ", "flush": True} in fake_elevenlabs.received
    assert not fake_elevenlabs.violations


async def test_first_audio_arrives_before_the_text_is_finished(
    fake_elevenlabs: FakeElevenLabs,
) -> None:
    """The point of the stream-input socket: audio for early text while more is still coming."""
    async with make(fake_elevenlabs) as tts, tts.open_stream() as stream:
        await stream.push("This sentence is long enough to pass the first fifty characters ")
        await stream.push("of the schedule ")
        iterator = stream.__aiter__()
        with anyio.fail_after(5):
            item = await iterator.__anext__()
        assert isinstance(item, (AudioChunk, WordTiming))
        await stream.end()
        async for _ in iterator:
            pass


async def test_words_split_across_messages_are_joined(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.knobs.chars_per_message = 3
    async with make(fake_elevenlabs) as tts, tts.open_stream() as stream:
        await stream.push("extraordinary words ")
        await stream.end()
        _, words = await collect(stream)
    assert [w.word for w in words] == ["extraordinary", "words"]
    assert words[0].end - words[0].start == pytest.approx(0.13, abs=0.002)


async def test_sentence_path_uses_the_same_socket(fake_elevenlabs: FakeElevenLabs) -> None:
    async with make(fake_elevenlabs, sample_rate=22050) as tts:
        chunks = await check_tts(tts, "Hello there, this is a test.")
    assert sum(c.frames for c in chunks) > 0
    assert all(c.sample_rate == 22050 for c in chunks)


async def test_voice_settings_and_model_reach_the_service(fake_elevenlabs: FakeElevenLabs) -> None:
    tts = make(
        fake_elevenlabs,
        model="eleven_turbo_v2_5",
        voice_settings={"stability": 0.4, "speed": 1.1},
        chunk_length_schedule=None,
    )
    async with tts, tts.open_stream() as stream:
        await stream.push("Hi. ")
        await stream.end()
        await collect(stream)
    assert fake_elevenlabs.received[0] == {
        "text": " ",
        "voice_settings": {"stability": 0.4, "speed": 1.1},
    }


@pytest.mark.parametrize("at_handshake", [False, True])
async def test_bad_key_is_a_clear_error_without_the_key(
    fake_elevenlabs: FakeElevenLabs, at_handshake: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_elevenlabs.knobs.auth_at_handshake = at_handshake
    secret = "sk_wrongwrongwrongwrong0123456789"
    tts = make(fake_elevenlabs, api_key=secret)
    with pytest.raises(ProviderError) as info:
        await speak(tts, "Hello. ")
    message = str(info.value)
    assert "authentication failed" in message or "HTTP 401" in message
    assert "ELEVENLABS_API_KEY" in message
    if at_handshake:  # the refusal's body, read
        assert "server said: Invalid API key" in message
    # the client's logs (the fake server's own websockets logger prints the headers it got)
    logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    for text in (message, repr(info.value), repr(tts), logs, str(info.value.__cause__)):
        assert secret not in text


async def test_unknown_voice_names_the_option(fake_elevenlabs: FakeElevenLabs) -> None:
    tts = make(fake_elevenlabs, voice_id="no-such-voice")
    with pytest.raises(ProviderError, match="'no-such-voice' was not found: check the voice_id"):
        await speak(tts, "Hello. ")


async def test_dropped_socket_mid_utterance_is_an_error_not_silence(
    fake_elevenlabs: FakeElevenLabs,
) -> None:
    fake_elevenlabs.knobs.drop_after_messages = 2
    received: list[AudioChunk | WordTiming] = []
    async with make(fake_elevenlabs) as tts, tts.open_stream() as stream:
        await stream.push("A sentence that will not be finished by the service. ")
        await stream.end()
        with pytest.raises(ProviderConnectionError, match="dropped"):
            await collect_into(stream, received)
    assert any(isinstance(item, AudioChunk) for item in received)  # what came, came


async def test_leaving_early_closes_the_socket(fake_elevenlabs: FakeElevenLabs) -> None:
    """An interrupt: the engine leaves the stream mid-way; the service sees the socket close."""
    fake_elevenlabs.knobs.chars_per_message = 2
    async with make(fake_elevenlabs) as tts:
        async with tts.open_stream() as stream:
            await stream.push("A long sentence that keeps the service busy for a while. ")
            await stream.flush()
            async for _ in stream:
                break
        await wait_until(lambda: fake_elevenlabs.closed_by_client == 1)
        # the provider is still usable for the next turn
        async with tts.open_stream() as stream:
            await stream.push("Again. ")
            await stream.end()
            audio, _ = await collect(stream)
        assert audio


async def test_cancelled_mid_stream_closes_the_socket(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.knobs.delay = 0.2
    async with make(fake_elevenlabs) as tts:
        # Cancelled once the service has the text, mid-stream (a fixed 50 ms could end before
        # a loaded machine had even opened the socket).
        async def speak() -> None:
            async with tts.open_stream() as stream:
                await stream.push("Hello there, anyone? ")
                await stream.end()
                await collect(stream)

        assert await cancel_once(lambda: "Hello" in fake_elevenlabs.texts(), speak)
        await wait_until(lambda: fake_elevenlabs.closed_by_client == 1)


async def test_push_after_end_is_refused(fake_elevenlabs: FakeElevenLabs) -> None:
    async with make(fake_elevenlabs) as tts, tts.open_stream() as stream:
        await stream.end()
        with pytest.raises(ProviderError, match="after end"):
            await stream.push("late ")
        await collect(stream)


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        ElevenLabsTTS(voice_id="v")


def test_schedule_values_are_checked() -> None:
    with pytest.raises(ValueError, match="chunk_length_schedule"):
        ElevenLabsTTS(api_key="k", voice_id="v", chunk_length_schedule=[10])


async def test_conformance(fake_elevenlabs: FakeElevenLabs) -> None:
    from avatarkit.testing import check_incremental_tts

    items = await check_incremental_tts(make(fake_elevenlabs))
    assert any(isinstance(i, WordTiming) for i in items)
