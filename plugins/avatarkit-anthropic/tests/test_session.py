"""A whole session: anthropic LLM + a fake text renderer, against the fake Messages API."""

from __future__ import annotations

import anyio

from avatarkit import AvatarSession, Message
from avatarkit.testing import FakeTextRenderer, wait_until
from avatarkit_anthropic.llm import AnthropicLLM


def make(fake) -> AnthropicLLM:
    return AnthropicLLM(model="claude-test", api_key=fake.key, base_url=fake.url)


async def test_history_and_system_prompt_reach_the_api(fake_anthropic) -> None:
    fake_anthropic.script = [
        fake_anthropic.reply(["Hello", " there.", " Nice day."]),
        fake_anthropic.reply(["It is."]),
    ]
    renderer = FakeTextRenderer()
    async with AvatarSession(
        llm=make(fake_anthropic), renderer=renderer, system_prompt="Be kind."
    ) as session:
        await session.say("Welcome!")  # the avatar speaks first
        assert await session.send("Hi") == "Hello there. Nice day."
        assert await session.send("Is it?") == "It is."
    assert renderer.spoken == ["Welcome!", "Hello there.", "Nice day.", "It is."]
    first, second = (r.json() for r in fake_anthropic.requests)
    assert first["system"] == second["system"] == "Be kind."
    assert first["messages"][0]["role"] == "user"  # a conversation must open with the user
    assert second["messages"][1:] == [
        {"role": "assistant", "content": "Welcome!"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there. Nice day."},
        {"role": "user", "content": "Is it?"},
    ]
    assert session.history[-1] == Message("assistant", "It is.")


async def test_interrupt_closes_the_stream(fake_anthropic) -> None:
    fake_anthropic.script = [
        fake_anthropic.reply(["One.", *[" more" for _ in range(300)]], delay=0.01)
    ]
    renderer = FakeTextRenderer(seconds_per_char=0.05)
    async with AvatarSession(llm=make(fake_anthropic), renderer=renderer) as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.send, "Talk")
            await wait_until(lambda: bool(renderer.spoken))
            await session.interrupt()
        assert await fake_anthropic.server.wait_for_disconnects(1, within=5)
    assert renderer.spoken == ["One."]


async def test_anthropic_example_runs(fake_anthropic, monkeypatch) -> None:
    from pathlib import Path

    from avatarkit import load_session
    from avatarkit.testing import registered

    fake_anthropic.script = [fake_anthropic.reply(["Hello", " from", " Claude."])]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.url)  # the example's default URL
    example = Path(__file__).parents[3] / "examples" / "anthropic.yaml"
    with registered(entry_points=True) as registry:
        session = load_session(
            example, registry=registry, env={"ANTHROPIC_API_KEY": fake_anthropic.key}
        )
    session.renderer.words_per_minute = 0  # pacing is not under test
    async with session:
        assert await session.send("Hi") == "Hello from Claude."
    body = fake_anthropic.requests[0].json()
    assert (body["model"], body["max_tokens"]) == ("claude-haiku-4-5", 400)
    assert body["system"].startswith("You are a concise, friendly assistant.")
