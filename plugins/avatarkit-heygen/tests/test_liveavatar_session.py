"""Whole YAML-configured sessions on the liveavatar renderer, against the fake LiveAvatar.

``avatarkit.load_session`` builds everything from a session file; the engine picks the route and
the renderer follows it (configure_route) and asks LiveAvatar for that mode. FakeLLM/FakeTTS come
from avatarkit.testing; LITE mode runs over real HTTP and a real WebSocket on 127.0.0.1.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from avatarkit import AvatarSession, load_session
from avatarkit.config import dump_config, load_config
from avatarkit.errors import CapabilityError, ConfigError
from avatarkit.plugins import ProviderRegistry
from avatarkit.testing import FakeLLM, FakeProvidersPlugin, FakeTTS, registered
from avatarkit_heygen import plugin as heygen_plugin
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar, FakeRoom

REPLY = "Hello there. It is a fine day to talk about avatars!"


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


@pytest.fixture
def fakes() -> FakeProvidersPlugin:
    return FakeProvidersPlugin()


@pytest.fixture
def registry(fakes: FakeProvidersPlugin) -> Iterator[ProviderRegistry]:
    with registered(fakes, heygen_plugin) as registry:
        yield registry


class Sessions:
    """Writes a session file and loads it, with the fake's address and key from the env."""

    def __init__(self, fake: FakeLiveAvatar, tmp_path: Path, registry: ProviderRegistry) -> None:
        self.fake = fake
        self.path = tmp_path / "session.yaml"
        self.registry = registry
        self.env = {"LIVEAVATAR_API_KEY": API_KEY, "LIVEAVATAR_URL": fake.base_url}

    def write(
        self,
        *,
        prefer: str | None = "audio",
        reply: str = REPLY,
        tts: str | None = "{provider: fake, sample_rate: 22050, ms_per_char: 10}",
        extra: str = "",
        keep_alive: bool = False,
    ) -> Path:
        lines = [
            "system_prompt: Be brief.",
            "llm:",
            "  provider: fake",
            f"  replies: [{reply!r}]",
        ]
        if tts is not None:
            lines.append(f"tts: {tts}")
        lines += [
            "renderer:",
            "  provider: liveavatar",
            *([f"  prefer: {prefer}"] if prefer else []),
            "  api_key: ${LIVEAVATAR_API_KEY}",
            "  avatar_id: av-1",
            "  base_url: ${LIVEAVATAR_URL}",
            f"  keep_alive: {str(keep_alive).lower()}",
            *(f"  {line}" for line in extra.splitlines() if line),
        ]
        self.path.write_text("\n".join(lines) + "\n")
        return self.path

    def load(self, **kwargs: Any) -> AvatarSession:
        return load_session(self.write(**kwargs), registry=self.registry, env=self.env)


@pytest.fixture
def sessions(fake: FakeLiveAvatar, tmp_path: Path, registry: ProviderRegistry) -> Sessions:
    return Sessions(fake, tmp_path, registry)


def renderer(fake: FakeLiveAvatar, **options: Any) -> LiveAvatarRenderer:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "avatar_id": "av-1",
        "base_url": fake.base_url,
        "keep_alive": False,
    }
    return LiveAvatarRenderer(**(settings | options))


async def test_audio_mode_with_a_22k_tts(
    sessions: Sessions, fake: FakeLiveAvatar, fakes: FakeProvidersPlugin
) -> None:
    fake.knobs.playback = 0.3  # the avatar reports speak_ended a while after speak_end
    session = sessions.load()
    assert session.route == "audio"
    assert isinstance(session.renderer, LiveAvatarRenderer)
    async with session:
        reply = await session.send("hi")
    assert reply == REPLY
    assert fake.only_session().mode == "LITE"
    (tts,) = fakes.of(FakeTTS)
    ends = fake.messages("agent.speak_end")
    assert len(ends) == len(tts.texts) == 2  # one speak_end per utterance
    for end, text in zip(ends, tts.texts, strict=True):
        event_id = end.message["event_id"]
        seconds = len(fake.audio(event_id)) / 48000  # 24 kHz PCM16 at the fake
        assert abs(seconds - len(text) * 0.010) < 0.005, (text, seconds)
        assert event_id in fake.ended_sent
    for message in fake.messages("agent.speak"):
        assert len(message.message["audio"]) < 1_000_000
        assert len(base64.b64decode(message.message["audio"])) <= 48000
    assert fake.violations == []
    assert fake.only_session().stops == 1


async def test_speak_returns_only_after_speak_ended(
    sessions: Sessions, fake: FakeLiveAvatar
) -> None:
    fake.knobs.playback = 0.5
    session = sessions.load()
    la = session.renderer
    returned: list[float] = []
    original = la.speak

    async def timed_speak(audio: Any) -> None:
        await original(audio)
        returned.append(time.perf_counter())

    la.speak = timed_speak
    async with session:
        await session.send("hi")
    ends = [r.message["event_id"] for r in fake.messages("agent.speak_end")]
    assert len(returned) == len(ends) == 2
    for returned_at, event_id in zip(returned, ends, strict=True):
        assert returned_at >= fake.ended_sent[event_id]


async def test_text_mode_needs_no_tts(sessions: Sessions, fake: FakeLiveAvatar) -> None:
    room = FakeRoom(seconds_per_word=0.001)
    session = sessions.load(prefer=None, tts=None)
    assert session.route == "text"
    assert session.tts is None
    session.renderer.transport_factory = lambda: room  # no LiveKit server here
    async with session:
        reply = await session.send("hi")
    assert reply == REPLY
    assert fake.only_session().mode == "FULL"
    assert [c["text"] for c in room.commands("avatar.speak_text")] == [
        "Hello there.",
        "It is a fine day to talk about avatars!",
    ]
    assert fake.only_session().stops == 1


async def test_prefer_text_builds_no_tts(
    sessions: Sessions, fake: FakeLiveAvatar, fakes: FakeProvidersPlugin
) -> None:
    room = FakeRoom()
    session = sessions.load(prefer="text")
    session.renderer.transport_factory = lambda: room
    async with session:
        await session.send("hi")
    assert fakes.of(FakeTTS) == []
    assert fake.only_session().mode == "FULL"


def test_prefer_audio_without_tts_fails_at_load_time(sessions: Sessions) -> None:
    with pytest.raises(CapabilityError, match=r"TTS|tts"):
        sessions.load(prefer="audio", tts=None)


def test_bad_option_is_a_config_error_with_its_place(sessions: Sessions) -> None:
    with pytest.raises(ConfigError, match=r"session.yaml:\d+.*renderer.quality"):
        sessions.load(extra="quality: ultra")


def test_the_key_never_shows(sessions: Sessions) -> None:
    config = load_config(sessions.write(), registry=sessions.registry, env=sessions.env)
    assert API_KEY not in dump_config(config)
    assert API_KEY not in repr(config)
    session = config.build()
    assert API_KEY not in repr(session.renderer)


async def test_interrupt_mid_utterance(sessions: Sessions, fake: FakeLiveAvatar) -> None:
    fake.knobs.playback = 1.0
    long_reply = "This sentence goes on and on and on for quite a long while indeed. " * 3
    session = sessions.load(
        reply=long_reply,
        tts="{provider: fake, sample_rate: 22050, ms_per_char: 20, chunk_delay: 0.01}",
    )
    async with session:
        result: list[str] = []
        async with anyio.create_task_group() as tg:

            async def talk() -> None:
                result.append(await session.send("tell me"))

            tg.start_soon(talk)
            await fake.wait_for(lambda: len(fake.messages("agent.speak")) >= 3)
            await session.interrupt()
        assert len(result) == 1
        assert len(result[0]) < len(long_reply)
        await anyio.sleep(0.1)  # late audio would have arrived by now
        kinds = [r.type for r in fake.received]
        cut = kinds.index("agent.interrupt")
        assert "agent.speak" in kinds[:cut]
        assert "agent.speak" not in kinds[cut:]
        # History holds no more than the audio the renderer took (a few chunks of the first
        # sentence, maybe not one whole word): what send() returned, if anything.
        last = session.history[-1]
        if result[0]:
            assert last.role == "assistant"
            assert last.content == result[0]
            assert long_reply.startswith(result[0])
        else:
            assert last.role == "user"
    assert fake.only_session().stops == 1


async def test_stopped_after_a_normal_end(sessions: Sessions, fake: FakeLiveAvatar) -> None:
    async with sessions.load() as session:
        await session.say("Hi.")
    assert fake.paths()[-1] == "/v1/sessions/stop"
    assert fake.only_session().stops == 1


async def test_stopped_after_an_exception(sessions: Sessions, fake: FakeLiveAvatar) -> None:
    session = sessions.load()

    async def app() -> None:
        async with session:
            await session.send("hi")
            raise RuntimeError("app bug")

    with pytest.raises(RuntimeError, match="app bug"):
        await app()
    assert fake.messages("agent.speak_end")
    assert fake.only_session().stops == 1


async def test_stopped_after_cancellation_mid_turn(
    sessions: Sessions, fake: FakeLiveAvatar
) -> None:
    fake.knobs.playback = 1.0
    session = sessions.load(
        reply="A long enough sentence to still be speaking when cancelled.",
        tts="{provider: fake, sample_rate: 22050, ms_per_char: 30}",
    )
    with anyio.CancelScope() as scope:
        async with session, anyio.create_task_group() as tg:
            tg.start_soon(session.send, "hi")
            await fake.wait_for(lambda: bool(fake.messages("agent.speak")))
            scope.cancel()
    assert scope.cancelled_caught
    assert fake.only_session().stops == 1


async def test_keep_alive_while_idle(sessions: Sessions, fake: FakeLiveAvatar) -> None:
    session = sessions.load(keep_alive=True, extra="keep_alive_interval: 0.05")
    async with session:
        await session.say("Hi.")
        before = len(fake.messages("session.keep_alive"))
        await fake.wait_for(lambda: len(fake.messages("session.keep_alive")) >= before + 2)


async def test_embedded_without_yaml(fake: FakeLiveAvatar) -> None:
    """The same renderer built in Python: the audio route is chosen because a TTS is given."""
    session = AvatarSession(llm=FakeLLM([REPLY]), tts=FakeTTS(), renderer=renderer(fake))
    assert session.route == "audio"
    async with session:
        assert await session.send("hi") == REPLY
    assert fake.only_session().mode == "LITE"


def test_prefer_audio_without_tts_in_python_too(fake: FakeLiveAvatar) -> None:
    with pytest.raises(CapabilityError, match="TTS"):
        AvatarSession(llm=FakeLLM(), renderer=renderer(fake), prefer="audio")


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_ENV = {"LIVEAVATAR_API_KEY": API_KEY, "LIVEAVATAR_AVATAR_ID": "av-1"}


def test_text_example_is_valid(registry: ProviderRegistry) -> None:
    config = load_config(EXAMPLES / "liveavatar-text.yaml", registry=registry, env=EXAMPLE_ENV)
    assert config.route == "text"
    assert config.tts is None
    assert config.renderer.options["voice_id"] is None  # ${LIVEAVATAR_VOICE_ID:-} is unset


def test_audio_example_is_valid(fakes: FakeProvidersPlugin) -> None:
    from avatarkit_piper import plugin as piper_plugin

    with registered(fakes, heygen_plugin, piper_plugin) as registry:
        config = load_config(EXAMPLES / "liveavatar-audio.yaml", registry=registry, env=EXAMPLE_ENV)
    assert config.route == "audio"
    assert config.tts is not None
    assert config.tts.provider == "piper"
    assert config.renderer.options["chunk_seconds"] == 1.0


async def test_a_liveavatar_error_event_ends_the_turn_with_an_error_event(
    sessions: Sessions, fake: FakeLiveAvatar
) -> None:
    from avatarkit.errors import AvatarKitError
    from avatarkit.events import ErrorEvent

    fake.knobs.error_after_speaks = 1
    session = sessions.load(
        reply="A long reply that the avatar would take many seconds to speak out loud.",
        tts="{provider: fake, sample_rate: 24000, ms_per_char: 200}",
        extra="speak_timeout_grace: 30",
    )
    errors: list[ErrorEvent] = []
    session.on_event(lambda e: errors.append(e) if isinstance(e, ErrorEvent) else None)
    failures: list[BaseException] = []
    ended = anyio.Event()

    async def turn() -> None:
        try:
            await session.send("hi")
        except AvatarKitError as exc:
            failures.append(exc)
        ended.set()

    async with session, anyio.create_task_group() as tg:
        tg.start_soon(turn)
        await fake.wait_for(lambda: any(e["type"] == "error" for e in fake.sent), 10)
        # from LiveAvatar's error to the end of the turn: seconds on a loaded machine, against
        # the 30 s grace it must not wait out
        with anyio.fail_after(5):
            await ended.wait()
        assert session.renderer.state == "ready"  # the session goes on
    (failure,) = failures
    assert "bad audio chunk" in str(failure)
    (error,) = errors
    assert error.stage == "renderer"
    assert "LiveAvatar reported an error" in error.message
