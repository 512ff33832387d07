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
