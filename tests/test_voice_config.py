"""YAML `stt:`, `vad:` and `turn:` sections: built into the session, errors with file:line."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatarkit import TurnOptions
from avatarkit.config import dump_config, load_config, load_session
from avatarkit.errors import ConfigError, ProviderNotFound
from avatarkit.plugins import ProviderRegistry
from avatarkit.testing import FakeProvidersPlugin, FakeSTT, FakeVAD, registered

BASE = """
llm: {provider: fake}
renderer: {provider: fake-text}
"""


@pytest.fixture
def registry() -> Iterator[ProviderRegistry]:
    with registered(FakeProvidersPlugin()) as reg:
        yield reg


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "voice.yaml"
    path.write_text(textwrap.dedent(BASE).lstrip("\n") + textwrap.dedent(text).lstrip("\n"))
    return str(path)


def test_voice_sections_build_the_listening_session(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    path = write(
        tmp_path,
        """
        stt:
          provider: fake
          transcripts: [hello]
        vad: {provider: fake, min_silence: 0.25}
        turn:
          end_silence: 0.9
          false_interruption: drop
        """,
    )
    session = load_session(path, registry=registry)
    assert isinstance(session.stt, FakeSTT)
    assert session.stt.transcripts == ["hello"]
    assert isinstance(session.vad, FakeVAD)
    assert session.vad.min_silence == 0.25
    assert session.turn == TurnOptions(end_silence=0.9, false_interruption="drop")
    config = load_config(path, registry=registry)
    assert "stt:      fake" in config.summary()
    dumped = dump_config(config)
    assert "stt:" in dumped
    assert "end_silence: 0.9" in dumped


def test_a_session_without_voice_sections_has_no_stt(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    session = load_session(write(tmp_path, ""), registry=registry)
    assert session.stt is None
    assert session.vad is None


def test_streaming_stt_needs_no_vad(tmp_path: Path, registry: ProviderRegistry) -> None:
    session = load_session(
        write(tmp_path, "stt: {provider: fake, streaming: true}\n"), registry=registry
    )
    assert session.vad is None


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "stt: {provider: fake}\nvad: {provider: fake}\nturn:\n  end_silence: -1\n",
            ":6:16: turn.end_silence",
            "greater than or equal",
        ),
        (
            "stt: {provider: fake, streaming: true}\nturn:\n  end_silnce: 1\n",
            ":5:3: turn.end_silnce",
            "end_silence",
        ),
        ("vad: {provider: fake}\n", ":3:1: vad", "needs an `stt:` section"),
        ("stt: {provider: fake}\nvad:\n  provider: nope\n", ":5:13: vad.provider", "installed"),
        ("stt:\n  provider: fake\n  colour: red\n", ":5:3: stt.colour", "colour"),
        ("stt: {provider: fake}\n", ":3:6: stt", "needs a `vad:` section"),
        (
            "stt: {provider: fake}\nvad: {provider: fake}\nturn: {false_interruption: maybe}\n",
            "turn.false_interruption",
            "resume",
        ),
    ],
)
def test_errors_say_where(
    tmp_path: Path, registry: ProviderRegistry, text: str, where: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises((ConfigError, ProviderNotFound)) as info:
        load_config(path, registry=registry)
    assert f"voice.yaml{where}" in str(info.value) or where in str(info.value)
    assert message in str(info.value)


def test_unknown_stt_names_the_offline_plugin(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(tmp_path, "stt: {provider: whisper}\nvad: {provider: fake}\n")
    with pytest.raises(ProviderNotFound, match="pip install avatarkit-whisper"):
        load_config(path, registry=registry)
