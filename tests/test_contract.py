"""The routing contract, end to end, through a test plugin installed for real.

The fakes come from a distribution laid out on sys.path the way pip installs one (a .dist-info
with an ``avatarkit`` entry point), are discovered by the plugin loader, and are configured from
YAML: nothing is registered by hand.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from avatarkit import load_session
from avatarkit.events import SentenceEnded
from avatarkit.plugins import ProviderRegistry, load_registry
from avatarkit.testing import (
    FakeAudioRenderer,
    FakeLLM,
    FakeTextRenderer,
    FakeTTS,
    installed_distribution,
    wait_until,
)

PLUGIN = textwrap.dedent(
    """
    from avatarkit.testing import FakeProvidersPlugin

    plugin = FakeProvidersPlugin()
    """
)
REPLY = "First sentence here. Second one follows. Third is the last one."


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ModuleType, ProviderRegistry]]:
    root = tmp_path_factory.mktemp("site")
    with installed_distribution(
        root,
        "avatarkit-contract-fakes",
        entry_points={"contract-fakes": "contract_fakes:plugin"},
        files={"contract_fakes.py": PLUGIN},
    ):
        registry = load_registry()
        spec = registry.get("llm", "fake")
        assert spec.source.distribution == "avatarkit-contract-fakes"
        import contract_fakes  # type: ignore[import-not-found]

        yield contract_fakes, registry


def session_yaml(tmp_path: Path, body: str) -> str:
    path = tmp_path / "session.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


def built(module: ModuleType, cls: type) -> list:  # type: ignore[type-arg]
    return module.plugin.of(cls)  # type: ignore[no-any-return]


async def test_text_renderer_never_builds_or_calls_tts(
    tmp_path: Path, installed: tuple[ModuleType, ProviderRegistry]
) -> None:
    module, registry = installed
    tts_before = len(built(module, FakeTTS))
    path = session_yaml(
        tmp_path,
        f"""
        llm: {{provider: fake, replies: ["{REPLY}"]}}
        tts: {{provider: fake}}
        renderer: {{provider: fake-text}}
        """,
    )
    session = load_session(path, registry=registry)
    async with session:
        await session.send("hi")
    assert session.route == "text"
    assert len(built(module, FakeTTS)) == tts_before  # never built, so never called
    renderer = built(module, FakeTextRenderer)[-1]
    assert renderer.spoken == [
        "First sentence here.",
        "Second one follows.",
        "Third is the last one.",
    ]


async def test_audio_renderer_gets_tts_audio_for_every_sentence_in_order(
    tmp_path: Path, installed: tuple[ModuleType, ProviderRegistry]
) -> None:
    module, registry = installed
    path = session_yaml(
        tmp_path,
        f"""
        llm: {{provider: fake, replies: ["{REPLY}"]}}
        tts: {{provider: fake, sample_rate: 22050, ms_per_char: 4}}
        renderer: {{provider: fake-audio, sample_rate: 24000}}
        """,
    )
    session = load_session(path, registry=registry)
    async with session:
        await session.send("hi")
    tts = built(module, FakeTTS)[-1]
    renderer = built(module, FakeAudioRenderer)[-1]
    assert tts.texts == ["First sentence here.", "Second one follows.", "Third is the last one."]
    assert len(renderer.utterances) == 3
    for text, utterance in zip(tts.texts, renderer.utterances, strict=True):
        assert {c.sample_rate for c in utterance.chunks} == {24000}  # resampled for the renderer
        assert utterance.duration == pytest.approx(len(text) * 0.004, abs=0.002)


async def test_first_sentence_reaches_the_renderer_before_the_llm_finishes(
    tmp_path: Path, installed: tuple[ModuleType, ProviderRegistry]
) -> None:
    module, registry = installed
    path = session_yaml(
        tmp_path,
        f"""
        llm: {{provider: fake, replies: ["{REPLY}"], token_delay: 0.01}}
        renderer: {{provider: fake-text}}
        """,
    )
    session = load_session(path, registry=registry)
    renderer = built(module, FakeTextRenderer)[-1]
    llm = built(module, FakeLLM)[-1]
    # What stood when the first sentence had been said, seen by the session's own event (a
    # test polling for it could look only after the LLM's next 30 ms had brought more).
    at_first_end: list[tuple[list[str], int]] = []
    session.on_event(
        lambda e: (
            at_first_end.append((list(renderer.spoken), llm.completed))
            if isinstance(e, SentenceEnded) and e.index == 0
            else None
        )
    )
    async with session:
        await session.send("hi")
    assert at_first_end == [(["First sentence here."], 0)]  # the LLM was still streaming
    assert llm.completed == 1


async def test_interrupt_stops_llm_and_pending_tts_and_keeps_the_spoken_part(
    tmp_path: Path, installed: tuple[ModuleType, ProviderRegistry]
) -> None:
    module, registry = installed
    long_tail = " and more" * 60
    # The TTS is slower than real time, so while "Short one." plays the next sentence is still
    # being synthesised (look-ahead); the LLM is still streaming its long last sentence.
    # "Short one." lasts 1 s and takes 1.5 s to synthesise, so the interrupt lands while it
    # plays however late a loaded machine runs it (at 10 ms a character it ended 90 ms after
    # the test's trigger, and sentence two then began).
    path = session_yaml(
        tmp_path,
        f"""
        llm: {{provider: fake, replies: ["Short one. Second sentence. Then{long_tail}."],
               token_delay: 0.01}}
        tts: {{provider: fake, ms_per_char: 100, chunk_delay: 0.03}}
        renderer: {{provider: fake-audio, realtime: true}}
        """,
    )
    session = load_session(path, registry=registry)
    reply: list[str] = []

    async def talk() -> None:
        reply.append(await session.send("hi"))

    async with session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(talk)
            renderer = built(module, FakeAudioRenderer)[-1]
            llm = built(module, FakeLLM)[-1]
            tts = built(module, FakeTTS)[-1]
            await wait_until(lambda: len(tts.texts) == 2 and bool(renderer.utterances))
            await session.interrupt()
        assert renderer.interrupts == 1
        assert llm.cancelled == 1
        assert llm.completed == 0
        assert tts.texts == ["Short one.", "Second sentence."]
        assert tts.cancelled >= 1  # the synthesis in flight was stopped
        assert tts.completed + tts.cancelled == 2
        assert len(renderer.utterances) == 1  # sentence two was never played
        spoken = reply[0]
        assert "Short one.".startswith(spoken)  # only what was actually said
        assert session.history[-1].content == (spoken or "hi")
