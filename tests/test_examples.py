"""The embedding example runs as documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


async def test_embedding_example_talks(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("embed_example", EXAMPLES / "embed.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    replies = await module.main(str(EXAMPLES / "scripted.yaml"), fast=True)
    assert replies[0] == "Hello! Nice to meet you. What would you like to talk about?"
    assert replies[1] == "I am a scripted avatar. My replies come from a YAML file."
    out = capsys.readouterr().out
    assert "avatar says: Hello!" in out
    assert "avatar says: Goodbye!" in out
    assert "first speech after" in out


def test_deepgram_example_validates_and_builds_its_stt() -> None:
    """examples/deepgram.yaml loads as the CLI loads it (keys from the environment), and its
    stt section builds the deepgram STT with the options written there."""
    from avatarkit.config import load_config
    from avatarkit_deepgram.stt import DeepgramSTT

    env = {"DEEPGRAM_API_KEY": "0123456789abcdef0123456789abcdef01234567", "OPENAI_API_KEY": "sk-x"}
    config = load_config(EXAMPLES / "deepgram.yaml", env=env)
    summary = config.summary()
    assert "stt:      deepgram" in summary
    assert "0123456789abcdef" not in summary
    stt = config.stt.build() if config.stt is not None else None
    assert isinstance(stt, DeepgramSTT)
    assert (stt.options.model, stt.options.endpointing, stt.options.keyterms) == (
        "nova-3",
        300,
        ["avatarkit"],
    )
