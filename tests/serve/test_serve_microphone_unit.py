"""avatarkit.serve.microphone on its own: frames into listen(), the backlog bound, a listener
that fails, restarts; on asyncio and trio, with a stand-in session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from avatarkit.errors import ProviderError
from avatarkit.providers import AudioChunk
from avatarkit.serve.microphone import BACKLOG_FRAMES, Microphone
from avatarkit.serve.protocol import ProtocolError
from avatarkit.testing import wait_until

FRAME = b"\x01\x00" * 320  # 20 ms at 16 kHz


class Session:
    """Has an STT; listen() records the audio, starting to read when ``go`` is set."""

    stt = object()

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.go = anyio.Event()
        self.heard: list[AudioChunk] = []
        self.listens = 0
        self.fail_after = fail_after
        self.returned = anyio.Event()

    async def listen(self, audio: AsyncIterator[AudioChunk]) -> None:
        self.listens += 1
        await self.go.wait()
        try:
            async for chunk in audio:
                self.heard.append(chunk)
                if self.fail_after is not None and len(self.heard) >= self.fail_after:
                    raise ProviderError("the line went dead", provider="fake STT")
        finally:
            self.returned.set()


class Page:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


async def test_frames_reach_listen_in_order_and_stop_ends_it() -> None:
    session, page = Session(), Page()
    mic = Microphone(session, page.send_json)
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
        session.go.set()
        for n in range(10):
            await mic.frame(bytes([n, 0]) * 320)
        await mic.stop()
        await session.returned.wait()
    assert [c.data[0] for c in session.heard] == list(range(10))
    assert {(c.sample_rate, c.channels) for c in session.heard} == {(16000, 1)}
    assert [m["state"] for m in page.of("mic")] == ["on", "off"]
    assert page.of("mic")[-1]["dropped"] == 0
    assert not mic.active


async def test_a_listener_behind_real_time_loses_frames_not_the_page() -> None:
    session, page = Session(), Page()
    mic = Microphone(session, page.send_json)
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
        for _ in range(BACKLOG_FRAMES + 7):  # never blocks, although nothing reads yet
            await mic.frame(FRAME)
        assert mic.dropped == 7
        assert [e["stage"] for e in page.of("error")] == ["limit"]  # told once
        session.go.set()
        await mic.stop()
    assert len(session.heard) == BACKLOG_FRAMES
    assert page.of("mic")[-1] == {"type": "mic", "state": "off", "dropped": 7}


@pytest.mark.parametrize("size", [1, 641, 48002])
async def test_frames_that_are_not_whole_samples_or_too_big_are_refused(size: int) -> None:
    session, page = Session(), Page()
    mic = Microphone(session, page.send_json)
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
        with pytest.raises(ProtocolError, match="whole 16-bit samples") as caught:
            await mic.frame(b"\x00" * size)
        assert caught.value.code == "bad_frame"
        await mic.frame(FRAME)  # the stream goes on
        session.go.set()
        await mic.stop()
    assert len(session.heard) == 1


async def test_a_failing_listener_is_reported_and_the_microphone_can_start_again() -> None:
    session, page = Session(fail_after=2), Page()
    mic = Microphone(session, page.send_json)
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
        session.go.set()
        for _ in range(3):
            await mic.frame(FRAME)
        await session.returned.wait()
        await wait_until(lambda: page.of("mic")[-1]["state"] == "off" and not mic.active)
        [error] = page.of("error")
        assert (error["stage"], error["code"]) == ("session", "listen_failed")
        assert (error["provider"], error["retryable"]) == ("fake STT", False)
        assert "the line went dead" not in error["message"]  # details go to the server log
        with pytest.raises(ProtocolError, match="mic_start"):
            await mic.frame(FRAME)  # no stream now
        session.fail_after = None
        session.returned = anyio.Event()
        await mic.start(16000, tg)  # again
        await mic.frame(FRAME)
        await mic.stop()
    assert session.listens == 2


async def test_start_twice_or_while_finishing_is_refused() -> None:
    session, page = Session(), Page()
    mic = Microphone(session, page.send_json)
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
        with pytest.raises(ProtocolError, match="already on"):
            await mic.start(16000, tg)
        await mic.stop()  # listen has not returned yet: it finishes the turn being heard
        with pytest.raises(ProtocolError, match="still finishing"):
            await mic.start(16000, tg)
        session.go.set()


async def test_a_session_that_cannot_listen_gets_a_config_error() -> None:
    class Deaf:
        stt = None

        async def listen(self, audio: AsyncIterator[AudioChunk]) -> None:
            raise AssertionError("not called")

    page = Page()
    mic = Microphone(Deaf(), page.send_json)
    assert not mic.available
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
    assert [e["stage"] for e in page.of("error")] == ["config"]
    assert not mic.active


async def test_the_turns_target_reaches_listen() -> None:
    class Listening(Session):
        def __init__(self) -> None:
            super().__init__()
            self.targets: list[object] = []

        async def listen(self, audio: AsyncIterator[AudioChunk], **kwargs: Any) -> None:
            self.targets.append(kwargs.get("turns"))
            await super().listen(audio)

    target = object()
    session, page = Listening(), Page()
    mic = Microphone(session, page.send_json, turns=target)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await mic.start(16000, tg)
        session.go.set()
        await mic.stop()
    assert session.targets == [target]
