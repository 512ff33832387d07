"""The openai TTS through the real SDK against a fake speech endpoint on 127.0.0.1."""

from __future__ import annotations

import anyio
import pytest

from avatarkit import AudioChunk, ConfigError, ProviderConnectionError, ProviderHTTPError
from avatarkit.testing import tone
from avatarkit_openai.tts import OpenAITTS

PCM = tone(0.5, 24000)  # 24 000 bytes of 16-bit mono


def make(fake, **options) -> OpenAITTS:
    return OpenAITTS(**{"api_key": fake.key, "base_url": fake.url, **options})


async def test_pcm_arrives_incrementally_at_24khz(fake_openai, gate) -> None:
    fake_openai.script = [fake_openai.speech(PCM, piece=4801, gate=gate)]
    chunks: list[AudioChunk] = []
    async with make(fake_openai, voice="coral", speed=1.25, instructions="Cheerful.") as tts:
        assert tts.sample_rate == 24000
        async for piece in tts.synthesize("Hello there."):
            chunks.append(piece)
            gate.open()  # the server holds the rest until the first chunk reached us
    assert gate.server_finished_first is False
    assert len(chunks) > 1
    assert all(c.sample_rate == 24000 and c.channels == 1 for c in chunks)
    assert all(len(c.data) % 2 == 0 for c in chunks)  # whole samples, although pieces are odd
    assert b"".join(c.data for c in chunks) == PCM
    assert sum(c.duration for c in chunks) == pytest.approx(0.5)
    body = fake_openai.requests[0].json()
    assert body == {
        "model": "gpt-4o-mini-tts",
        "voice": "coral",
        "input": "Hello there.",
        "response_format": "pcm",
        "speed": 1.25,
        "instructions": "Cheerful.",
    }


async def test_blank_text_makes_no_request(fake_openai) -> None:
    fake_openai.script = [fake_openai.speech(PCM)]
    async with make(fake_openai) as tts:
        assert [c async for c in tts.synthesize("  ")] == []
    assert fake_openai.requests == []


async def test_interrupting_synthesis_closes_the_connection(fake_openai) -> None:
    fake_openai.script = [fake_openai.speech(tone(10, 24000), piece=960, delay=0.01)]
    async with make(fake_openai) as tts:
        with anyio.CancelScope() as scope:
            async for _ in tts.synthesize("A long sentence."):
                scope.cancel()
        assert await fake_openai.server.wait_for_disconnects(1, within=5)


async def test_cut_mid_audio(fake_openai) -> None:
    fake_openai.script = [fake_openai.speech(PCM, piece=4800, cut_after=2)]
    async with make(fake_openai, max_retries=0) as tts:
        with pytest.raises(ProviderConnectionError, match="dropped in the middle"):
            _ = [c async for c in tts.synthesize("Hello.")]


async def test_rate_limit_then_success(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.error(429, "Rate limit", "requests", None, {"retry-after-ms": "5"}),
        fake_openai.speech(PCM),
    ]
    async with make(fake_openai) as tts:
        audio = b"".join([c.data async for c in tts.synthesize("Hi.")])
    assert audio == PCM
    assert len(fake_openai.requests) == 2


async def test_unknown_voice_is_a_clear_error(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.error(
            400,
            "Invalid value: 'robot'. Supported voices are alloy, ...",
            "invalid_request_error",
            "invalid_value",
        )
    ]
    async with make(fake_openai, voice="robot") as tts:
        with pytest.raises(ProviderHTTPError, match="Supported voices") as info:
            _ = [c async for c in tts.synthesize("Hi.")]
    assert info.value.status_code == 400
    assert info.value.provider == "openai TTS"


async def test_server_error_repeated(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.error(503, "overloaded", "server_error", None, {"retry-after-ms": "5"})
    ]
    async with make(fake_openai, max_retries=1) as tts:
        with pytest.raises(ProviderHTTPError, match="after 2 attempts"):
            _ = [c async for c in tts.synthesize("Hi.")]
    assert len(fake_openai.requests) == 2


def test_instructions_with_a_model_that_ignores_them() -> None:
    with pytest.raises(ConfigError, match="does not support instructions"):
        OpenAITTS(model="tts-1", instructions="Whisper.", api_key="sk-x")
