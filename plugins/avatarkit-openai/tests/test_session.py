"""Whole sessions against the fake OpenAI: built directly, from YAML, and the examples."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
import yaml

from avatarkit import AudioChunk, AvatarSession, Message, load_session
from avatarkit.testing import FakeAudioRenderer, FakeProvidersPlugin, registered, wait_until
from avatarkit_openai.llm import OpenAILLM
from avatarkit_openai.tts import OpenAITTS


def providers(fake) -> tuple[OpenAILLM, OpenAITTS]:
    llm = OpenAILLM(model="test-model", api_key=fake.key, base_url=fake.url)
    tts = OpenAITTS(api_key=fake.key, base_url=fake.url, voice="sage")
    return llm, tts


async def test_a_turn_is_spoken_sentence_by_sentence(fake_openai) -> None:
    fake_openai.script = [
        fake_openai.router(
            chat=fake_openai.chat(["Hello", " there.", " How are", " you today?"]),
            speech=fake_openai.speech(),
        )
    ]
    llm, tts = providers(fake_openai)
    renderer = FakeAudioRenderer()
    async with AvatarSession(
        llm=llm, tts=tts, renderer=renderer, system_prompt="Be kind."
    ) as session:
        assert session.route == "audio"
        reply = await session.send("Hi")
    assert reply == "Hello there. How are you today?"
    chat = [r.json() for r in fake_openai.requests if r.path.endswith("/chat/completions")]
    speech = [r.json() for r in fake_openai.requests if r.path.endswith("/audio/speech")]
    assert chat[0]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    # the TTS of the second sentence runs while the first plays, so they may arrive in any order
    assert sorted(s["input"] for s in speech) == ["Hello there.", "How are you today?"]
    assert [u.duration for u in renderer.utterances] == pytest.approx([0.12, 0.18])
    assert {c.sample_rate for u in renderer.utterances for c in u.chunks} == {24000}
    assert session.history[-1] == Message("assistant", reply)
    assert llm._client is None  # the session closed the providers
    assert tts._client is None


class HoldsTheSecondUtterance(FakeAudioRenderer):
    """Plays in real time, but holds the second utterance after its first chunk until it is
    interrupted: the interrupt lands while it plays however late a loaded machine runs it
    (played through, its 0.37 s could end first, and the utterance was not interrupted)."""

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        second = len(self.utterances) == 1

        async def held() -> AsyncIterator[AudioChunk]:
            async for chunk in audio:
                yield chunk
                if second:
                    await self._interrupted.wait()  # this utterance's (set by speak)
                    return

        async with aclosing(held()) as chunks:
            await super().speak(chunks)


async def test_interrupt_closes_the_llm_stream(fake_openai) -> None:
    words = [" and on" for _ in range(300)]
    fake_openai.script = [
        fake_openai.router(
            chat=fake_openai.chat(
                ["First sentence.", " Second sentence takes a while to say.", " Then", *words],
                delay=0.01,
            ),
            speech=fake_openai.speech(),
        )
    ]
    llm, tts = providers(fake_openai)
    renderer = HoldsTheSecondUtterance(realtime=True)
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer) as session:
        replies: list[str] = []

        async def talk() -> None:
            replies.append(await session.send("Go on forever."))

        async with anyio.create_task_group() as tg:
            tg.start_soon(talk)
            # Interrupt once the second sentence is playing (held by the renderer): the first
            # was then said in full, whatever sizes the speech responses were read in, and the
            # LLM is still streaming the endless third.
            await wait_until(
                lambda: len(renderer.utterances) > 1 and bool(renderer.utterances[1].chunks)
            )
            await session.interrupt()
        assert await fake_openai.server.wait_for_disconnects(1, within=5)
    [disconnected] = fake_openai.server.disconnects
    assert disconnected.path.endswith("/chat/completions")
    assert replies[0].startswith("First sentence.")
    assert "on and on" not in replies[0]
    assert len(renderer.utterances) == 2
    assert renderer.utterances[1].interrupted


EXAMPLES = Path(__file__).parents[3] / "examples"

YAML = """
system_prompt: Be kind.
llm:
  provider: openai
  base_url: ${FAKE_URL}
  api_key: ${OPENAI_API_KEY}
  model: test-model
  max_tokens: 100
tts:
  provider: openai
  base_url: ${FAKE_URL}
  api_key: ${OPENAI_API_KEY}
  voice: sage
  speed: 1.1
renderer:
  provider: fake-audio
"""


async def test_a_session_described_in_yaml(fake_openai, tmp_path) -> None:
    fake_openai.script = [
        fake_openai.router(
            chat=fake_openai.chat(["Hello there.", " Nice to", " meet you."]),
            speech=fake_openai.speech(),
        )
    ]
    path = tmp_path / "session.yaml"
    path.write_text(YAML)
    plugin = FakeProvidersPlugin()
    env = {"FAKE_URL": fake_openai.url, "OPENAI_API_KEY": fake_openai.key}
    with registered(plugin, entry_points=True) as registry:
        session = load_session(path, registry=registry, env=env)
    assert isinstance(session.llm, OpenAILLM)
    assert isinstance(session.tts, OpenAITTS)
    assert fake_openai.key not in repr(session.llm) + repr(session.tts)
    async with session:
        assert await session.send("Hi") == "Hello there. Nice to meet you."
    [renderer] = plugin.of(FakeAudioRenderer)
    assert len(renderer.utterances) == 2
    assert all(u.audio for u in renderer.utterances)
    speech = [r.json() for r in fake_openai.requests if r.path.endswith("/audio/speech")]
    assert {(s["voice"], s["speed"]) for s in speech} == {("sage", 1.1)}


async def test_openai_example_runs_with_a_fake_renderer(
    fake_openai, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai.script = [
        fake_openai.router(chat=fake_openai.chat(["Hi! I am here."]), speech=fake_openai.speech())
    ]
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url)  # the example uses OpenAI's default
    example = yaml.safe_load((EXAMPLES / "openai.yaml").read_text())
    example["renderer"] = {"provider": "fake-audio"}  # the video renderer is another plugin's
    plugin = FakeProvidersPlugin()
    with registered(plugin, entry_points=True) as registry:
        session = load_session(example, registry=registry, env={"OPENAI_API_KEY": fake_openai.key})
    async with session:
        assert await session.send("Hello") == "Hi! I am here."
    chat = fake_openai.requests[0].json()
    assert chat["max_tokens"] == 600  # max_completion_tokens on api.openai.com itself
    assert chat["reasoning_effort"] == "low"


async def test_ollama_example_runs_against_a_local_server(fake_openai) -> None:
    fake_openai.key = "avatarkit-local"  # what is sent to a server on this machine without a key
    fake_openai.script = [fake_openai.chat(["Local", " and", " private."])]
    with registered(entry_points=True) as registry:
        session = load_session(
            EXAMPLES / "ollama.yaml", registry=registry, env={"OLLAMA_URL": fake_openai.url}
        )
    session.renderer.words_per_minute = 0  # pacing is not under test
    async with session:
        assert await session.send("Hi") == "Local and private."
    body = fake_openai.requests[0].json()
    assert (body["model"], body["temperature"]) == ("llama3.2", 0.7)
