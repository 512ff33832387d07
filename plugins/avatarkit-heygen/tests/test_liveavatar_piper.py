"""LITE mode with a real TTS: Piper (offline, bundled voice) through a YAML session.

Piper's voice speaks at 22.05 kHz; the engine resamples to the renderer's 24 kHz and the fake
LiveAvatar on 127.0.0.1 receives every byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from avatarkit import load_session
from avatarkit.audio import rms
from avatarkit.providers import AudioChunk
from avatarkit.testing import FakeProvidersPlugin, registered
from avatarkit_heygen import plugin as heygen_plugin
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar
from avatarkit_piper import plugin as piper_plugin

SESSION = """\
llm: {provider: fake, replies: ["Hello there. Piper speaks and LiveAvatar moves the lips."]}
tts: {provider: piper}
renderer:
  provider: liveavatar
  prefer: audio
  api_key: ${LIVEAVATAR_API_KEY}
  avatar_id: av-1
  base_url: ${LIVEAVATAR_URL}
  keep_alive: false
"""


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


async def test_piper_voice_reaches_liveavatar_as_24k_pcm(
    fake: FakeLiveAvatar, tmp_path: Path
) -> None:
    path = tmp_path / "piper.yaml"
    path.write_text(SESSION)
    env = {"LIVEAVATAR_API_KEY": API_KEY, "LIVEAVATAR_URL": fake.base_url}
    with registered(FakeProvidersPlugin(), heygen_plugin, piper_plugin) as registry:
        session = load_session(path, registry=registry, env=env)
    assert session.route == "audio"
    synthesized: list[float] = []  # seconds Piper produced per sentence
    synthesize = session.tts.synthesize  # type: ignore[union-attr]

    async def measured(text: str) -> AsyncIterator[AudioChunk]:
        seconds = 0.0
        async for chunk in synthesize(text):
            assert chunk.sample_rate == 22050
            seconds += chunk.duration
            yield chunk
        synthesized.append(seconds)

    session.tts.synthesize = measured  # type: ignore[union-attr,method-assign]
    async with session:
        await session.send("hi")
    ends = fake.messages("agent.speak_end")
    assert len(ends) == len(synthesized) == 2
    for end, seconds in zip(ends, synthesized, strict=True):
        pcm = fake.audio(end.message["event_id"])
        assert seconds > 0.5
        assert abs(len(pcm) / 48000 - seconds) < 0.01  # 24 kHz, same length as spoken
        assert rms(pcm) > 0.01  # speech, not silence
    assert all(len(m.message["audio"]) < 1_000_000 for m in fake.messages("agent.speak"))
    assert fake.violations == []
    assert fake.only_session().stops == 1
