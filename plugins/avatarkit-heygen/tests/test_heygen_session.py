"""A whole YAML-configured session with the heygen renderer: an LLM streaming three sentences,
HeyGen (the fake on 127.0.0.1) saying them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

import avatarkit_heygen.plugin
from avatarkit import AvatarSession, ConfigError, ProviderHTTPError, load_session
from avatarkit.testing import FakeLLM, FakeProvidersPlugin, FakeTTS, registered
from avatarkit_heygen import HeyGenRenderer, HeyGenSession, HeyGenTaskResult

from .conftest import API_KEY, AVATAR, BACKEND_TOKEN, FakeBackend, FakeHeyGen

REPLY = "The first sentence is short. The second one takes a while to say. The third ends it."
SENTENCES = [
    "The first sentence is short.",
    "The second one takes a while to say.",
    "The third ends it.",
]


@pytest.fixture
def fakes() -> FakeProvidersPlugin:
    return FakeProvidersPlugin()


@pytest.fixture
def registry(fakes: FakeProvidersPlugin) -> Iterator[Any]:
    with registered(fakes, avatarkit_heygen.plugin) as registry:
        yield registry


ENV = {"HEYGEN_API_KEY": API_KEY, "APP_BACKEND_TOKEN": BACKEND_TOKEN}


@pytest.fixture
def load(registry: Any, tmp_path: Path) -> Callable[[dict[str, Any]], AvatarSession]:
    """Write ``config`` as a YAML file and load it the way ``avatarkit run`` does."""

    def load(config: dict[str, Any]) -> AvatarSession:
        path = tmp_path / "session.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return load_session(path, registry=registry, env=ENV)

    return load


def direct_config(heygen: FakeHeyGen, **renderer: Any) -> dict[str, Any]:
    return {
        "system_prompt": "You are a helpful avatar.",
        "llm": {"provider": "fake", "replies": [REPLY]},
        "renderer": {
            "provider": "heygen",
            "api_key": "${HEYGEN_API_KEY}",
            "base_url": heygen.base_url,
            "avatar_id": AVATAR,
            "lead_time": 0.0,
            "retry_backoff": 0.0,
            "keep_alive": False,
            **renderer,
        },
    }


async def wait_for(predicate: Any, limit: float = 5.0) -> None:
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the fake server changes state in a thread
            await anyio.sleep(0.01)


async def test_three_sentences_three_tasks_no_tts(
    heygen: FakeHeyGen, load: Any, fakes: FakeProvidersPlugin
) -> None:
    session = load(direct_config(heygen))
    assert session.route == "text"
    assert session.tts is None
    async with session:
        assert isinstance(session.renderer, HeyGenRenderer)
        assert session.renderer.viewer is not None
        spoken = await session.send("Tell me three things.")
    assert fakes.of(FakeTTS) == []
    assert heygen.texts() == SENTENCES
    assert {b["task_type"] for b in heygen.bodies("task")} == {"repeat"}
    assert spoken == " ".join(SENTENCES)
    assert heygen.ops() == ["new", "start", "task", "task", "task", "stop"]
    assert heygen.open_sessions() == []


async def test_an_llm_failure_is_reported_and_the_session_still_stopped(
    heygen: FakeHeyGen, load: Any
) -> None:
    session = load(direct_config(heygen))
    session.llm = FakeLLM([REPLY], error=RuntimeError("model overloaded"), error_after=8)
    failures: list[BaseException] = []
    try:
        async with session:
            try:
                await session.send("Hi")
            except Exception as exc:
                failures.append(exc)
            raise LookupError("the app fails too")
    except LookupError:
        pass
    assert "model overloaded" in str(failures[0])
    assert heygen.ops()[:2] == ["new", "start"]
    assert heygen.ops()[-1] == "stop"
    assert heygen.open_sessions() == []


async def test_cancellation_stops_the_session(heygen: FakeHeyGen, load: Any) -> None:
    heygen.ms_per_char = 1000
    session = load(direct_config(heygen))
    # Cancelled while the first sentence is spoken (a fixed 0.5 s could end before a loaded
    # machine had started the avatar session and sent it).
    with anyio.CancelScope() as scope:
        async with session, anyio.create_task_group() as tg:

            async def cancel_once_speaking() -> None:
                await wait_for(lambda: len(heygen.texts()) == 1, limit=60)
                scope.cancel()

            tg.start_soon(cancel_once_speaking)
            await session.send("Hi")
    assert scope.cancelled_caught
    assert heygen.texts() == SENTENCES[:1]
    assert heygen.ops()[-1] == "stop"
    assert heygen.open_sessions() == []


async def test_interrupt_during_the_second_sentence(heygen: FakeHeyGen, load: Any) -> None:
    heygen.durations[SENTENCES[1]] = 30_000
    session = load(direct_config(heygen))
    async with session:
        async with anyio.create_task_group() as tg:
            result: list[str] = []

            async def talk() -> None:
                result.append(await session.send("Hi"))

            tg.start_soon(talk)
            await wait_for(lambda: len(heygen.texts()) == 2)
            await session.interrupt()
        await anyio.sleep(0.1)
        assert heygen.texts() == SENTENCES[:2]
        # one interrupt; a second one when the second task's answer was still on its way
        assert heygen.ops("interrupt") in (["interrupt"], ["interrupt", "interrupt"])
        assert heygen.ops()[-1] == "interrupt"
        assert result
        assert result[0].startswith(SENTENCES[0])
        assert SENTENCES[2] not in result[0]
    assert heygen.ops()[-1] == "stop"


async def test_keep_alive_while_the_session_is_idle(heygen: FakeHeyGen, load: Any) -> None:
    session = load(direct_config(heygen, keep_alive=True, keep_alive_interval=0.05))
    async with session:
        await session.say("Hello.")
        await wait_for(lambda: len(heygen.ops("keep_alive")) >= 2)
    assert heygen.ops()[-1] == "stop"
    assert heygen.open_sessions() == []


@pytest.mark.parametrize(
    ("setup", "renderer", "match"),
    [
        (lambda h: None, {"api_key": "bad-key"}, "check the renderer's api_key"),
        (lambda h: None, {"avatar_id": "Ghost_1"}, "set avatar_id"),
        (lambda h: setattr(h, "max_sessions", 0), {}, "concurrent-session limit"),
        (
            lambda h: h.fail("new", 502, b"<html>bad gateway</html>", content_type="text/html"),
            {},
            "HTML error page",
        ),
    ],
)
async def test_start_errors_map_and_leave_nothing_running(
    heygen: FakeHeyGen, load: Any, setup: Any, renderer: dict[str, Any], match: str
) -> None:
    setup(heygen)
    session = load(direct_config(heygen, **renderer))
    with pytest.raises(ProviderHTTPError, match=match):
        async with session:
            raise AssertionError("not reached")
    assert heygen.open_sessions() == []


# -- backend mode ----------------------------------------------------------------------------


async def test_backend_url_session(heygen: FakeHeyGen, backend: FakeBackend, load: Any) -> None:
    config = {
        "llm": {"provider": "fake", "replies": [REPLY]},
        "renderer": {
            "provider": "heygen",
            "backend_url": backend.url,
            "backend_token": "${APP_BACKEND_TOKEN}",
            "lead_time": 0.0,
            "keep_alive": False,
        },
    }
    session = load(config)
    async with session:
        await session.send("Hi")
    assert [c.body["text"] for c in backend.calls if c.op == "task"] == SENTENCES
    assert backend.ops() == ["session", "task", "task", "task", "close"]
    assert heygen.texts() == SENTENCES
    assert heygen.open_sessions() == []


async def test_callback_session_interrupt() -> None:
    calls: list[tuple[str, ...]] = []

    async def create_session() -> HeyGenSession:
        calls.append(("create",))
        return HeyGenSession("cb-1", "wss://127.0.0.1:7881", "jwt")

    async def send_task(session_id: str, text: str) -> HeyGenTaskResult:
        calls.append(("task", text))
        return HeyGenTaskResult(None, 60_000 if "second" in text else 10)

    async def interrupt_session(session_id: str) -> None:
        calls.append(("interrupt",))

    async def close_session(session_id: str) -> None:
        calls.append(("close",))

    renderer = HeyGenRenderer(
        create_session=create_session,
        send_task=send_task,
        interrupt_session=interrupt_session,
        close_session=close_session,
        lead_time=0.0,
    )
    session = AvatarSession(llm=FakeLLM([REPLY]), renderer=renderer)
    async with session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.send, "Hi")
            with anyio.fail_after(5):
                while len([c for c in calls if c[0] == "task"]) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await session.interrupt()
    assert calls == [
        ("create",),
        ("task", SENTENCES[0]),
        ("task", SENTENCES[1]),
        ("interrupt",),
        ("close",),
    ]


def test_config_mistakes_are_config_errors_with_the_place(load: Any, heygen: FakeHeyGen) -> None:
    config = direct_config(heygen, avatar_idd="typo")
    with pytest.raises(ConfigError) as info:
        load(config)
    assert "avatar_idd" in str(info.value)
    assert "session.yaml" in str(info.value)
    config = direct_config(heygen)
    del config["renderer"]["api_key"]
    with pytest.raises(ConfigError, match="give api_key"):
        load(config)


def test_the_key_is_masked_when_the_session_config_is_shown(load: Any, heygen: FakeHeyGen) -> None:
    session = load(direct_config(heygen))
    assert API_KEY not in repr(session.renderer)
    assert API_KEY not in repr(vars(session.renderer))
