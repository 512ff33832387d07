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


def test_deepgram_example_voice_sections_validate() -> None:
    """examples/deepgram.yaml's stt and turn sections are what the deepgram STT and the
    listener accept (the rest is checked like every example's, once the loader reads stt:)."""
    import yaml

    from avatarkit.listening import TurnOptions
    from avatarkit_deepgram.options import DeepgramSTTOptions

    data = yaml.safe_load((EXAMPLES / "deepgram.yaml").read_text())
    stt = dict(data["stt"])
    assert stt.pop("provider") == "deepgram"
    assert stt.pop("api_key") == "${DEEPGRAM_API_KEY}"
    options = DeepgramSTTOptions.model_validate(stt)
    assert (options.model, options.endpointing, options.keyterms) == ("nova-3", 300, ["avatarkit"])
    TurnOptions.model_validate(data["turn"])
    assert data["renderer"]["provider"] == "browser"
