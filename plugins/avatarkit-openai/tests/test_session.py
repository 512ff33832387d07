"""A whole session: openai LLM + openai TTS + a fake audio renderer, against the fake OpenAI.

``avatarkit.load_session`` (config.py) is not on main yet, so the session is built directly;
a YAML-configured variant belongs here once it lands.
"""

from __future__ import annotations

import anyio
import pytest

from avatarkit import AvatarSession, Message
from avatarkit.testing import FakeAudioRenderer, wait_until
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


async def test_interrupt_closes_the_llm_stream(fake_openai) -> None:
    words = [" and on" for _ in range(300)]
    fake_openai.script = [
        fake_openai.router(
            chat=fake_openai.chat(["First sentence.", " Then", *words], delay=0.01),
            speech=fake_openai.speech(),
        )
    ]
    llm, tts = providers(fake_openai)
    renderer = FakeAudioRenderer(realtime=True)
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer) as session:
        replies: list[str] = []

        async def talk() -> None:
            replies.append(await session.send("Go on forever."))

        async with anyio.create_task_group() as tg:
            tg.start_soon(talk)
            await wait_until(lambda: any(u.chunks for u in renderer.utterances))
            await session.interrupt()
        assert await fake_openai.server.wait_for_disconnects(1, within=5)
    [disconnected] = fake_openai.server.disconnects
    assert disconnected.path.endswith("/chat/completions")
    assert replies[0].startswith("First")
    assert "on and on" not in replies[0]
    assert renderer.utterances[0].interrupted
