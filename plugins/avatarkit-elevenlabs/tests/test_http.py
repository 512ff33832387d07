"""The ``elevenlabs-http`` TTS against the fake's HTTP streaming endpoint (httpx client)."""

from __future__ import annotations

import pytest

from avatarkit import ProviderConnectionError, ProviderHTTPError
from avatarkit.providers import tts_capabilities
from avatarkit.testing import check_tts
from avatarkit_elevenlabs.http_tts import ElevenLabsHTTPTTS
from avatarkit_elevenlabs.testing import KEY, VOICE, FakeElevenLabs


def make(fake: FakeElevenLabs, **options: object) -> ElevenLabsHTTPTTS:
    return ElevenLabsHTTPTTS(
        **{"api_key": KEY, "voice_id": VOICE, "base_url": fake.http_url, **options}
    )


async def drain(tts: ElevenLabsHTTPTTS, text: str) -> None:
    async for _ in tts.synthesize(text):
        pass


def test_sentence_path_only() -> None:
    caps = tts_capabilities(ElevenLabsHTTPTTS)
    assert caps.sentences
    assert not caps.incremental


async def test_streams_whole_samples(fake_elevenlabs: FakeElevenLabs) -> None:
    async with make(fake_elevenlabs, sample_rate=16000, voice_settings={"stability": 0.3}) as tts:
        chunks = await check_tts(tts, "Hello there.")
        chunks = [c async for c in tts.synthesize("Hello there.")]
    assert all(len(c.data) % 2 == 0 and c.sample_rate == 16000 for c in chunks)
    assert sum(c.frames for c in chunks) == len("Hello there.") * 160
    assert fake_elevenlabs.requests[-1] == {
        "text": "Hello there.",
        "model_id": "eleven_flash_v2_5",
        "voice_settings": {"stability": 0.3},
    }


async def test_bad_key(fake_elevenlabs: FakeElevenLabs) -> None:
    secret = "sk_wrongwrongwrongwrong0123456789"
    async with make(fake_elevenlabs, api_key=secret) as tts:
        with pytest.raises(ProviderHTTPError, match="HTTP 401: authentication failed") as info:
            await drain(tts, "Hi.")
    assert secret not in str(info.value)
    assert secret not in str(info.value.body)


async def test_unknown_voice(fake_elevenlabs: FakeElevenLabs) -> None:
    async with make(fake_elevenlabs, voice_id="nobody") as tts:
        with pytest.raises(ProviderHTTPError, match="voice 'nobody' was not found"):
            await drain(tts, "Hi.")


async def test_unreachable() -> None:
    tts = ElevenLabsHTTPTTS(api_key=KEY, voice_id=VOICE, base_url="http://127.0.0.1:9")
    async with tts:
        with pytest.raises(ProviderConnectionError, match="cannot reach"):
            await drain(tts, "Hi.")
