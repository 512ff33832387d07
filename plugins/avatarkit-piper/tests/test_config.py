"""piper from a YAML session: options reach the provider, mistakes point at their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarkit import ConfigError, load_session
from avatarkit.testing import FakeAudioRenderer, FakeProvidersPlugin, registered
from avatarkit_piper.tts import PiperTTS


def write(tmp_path: Path, tts: str) -> Path:
    path = tmp_path / "session.yaml"
    path.write_text(
        "llm:\n"
        "  provider: fake\n"
        "  replies: ['Hello there. Nice to meet you.']\n"
        f"tts:\n{tts}"
        "renderer:\n"
        "  provider: fake-audio\n"
    )
    return path


def test_a_bad_voice_path_points_at_its_line(tmp_path: Path) -> None:
    missing = tmp_path / "voices" / "nobody.onnx"
    path = write(tmp_path, f"  provider: piper\n  rate: 1.2\n  voice: {missing}\n")
    with registered(FakeProvidersPlugin(), entry_points=True) as registry:
        with pytest.raises(ConfigError) as info:
            load_session(path, registry=registry)
    error = info.value
    assert (error.path, error.line, error.field) == (str(path), 7, "tts.voice")
    assert f"Piper voice model not found: {missing}" in str(error)


def test_a_misspelled_option_points_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "  provider: piper\n  speed: 1.2\n")
    with registered(FakeProvidersPlugin(), entry_points=True) as registry:
        with pytest.raises(ConfigError, match="speed") as info:
            load_session(path, registry=registry)
    assert info.value.line == 6


async def test_a_yaml_session_speaks_with_piper(tmp_path: Path) -> None:
    path = write(tmp_path, "  provider: piper\n  rate: 1.2\n  sentence_silence: 0.1\n")
    plugin = FakeProvidersPlugin()
    with registered(plugin, entry_points=True) as registry:
        session = load_session(path, registry=registry)
    assert isinstance(session.tts, PiperTTS)
    assert (session.tts.options.rate, session.tts.options.sentence_silence) == (1.2, 0.1)
    async with session:
        await session.send("Hi!")
    (renderer,) = plugin.of(FakeAudioRenderer)
    assert len(renderer.utterances) == 2
    assert all(u.duration > 0.4 for u in renderer.utterances)
