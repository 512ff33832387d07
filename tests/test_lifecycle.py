"""Start, close and subscribe under concurrency and cancellation; bounded cleanup (asyncio, trio).

Every provider started is closed exactly once, whatever the interleaving; a provider that hangs
while closing cannot make ``interrupt()`` or ``close()`` wait forever.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from avatarkit import AvatarSession, Message, SessionError
from avatarkit.session import Timeouts
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTextRenderer, FakeTTS, wait_until


class GatedRenderer(FakeTextRenderer):
    """A renderer whose start() waits for ``gate`` (a paid avatar session being created);
    with ``stubborn`` it finishes starting even when cancelled."""

    def __init__(self, *, stubborn: bool = False) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.stubborn = stubborn
        self.starting = False

    async def start(self) -> None:
        self.starting = True
        with anyio.CancelScope(shield=self.stubborn):
            await self.gate.wait()
        await super().start()


@pytest.mark.parametrize("stubborn", [False, True])
async def test_close_during_start_closes_every_provider_started(stubborn: bool) -> None:
    llm, tts, renderer = FakeLLM(), FakeTTS(), GatedRenderer(stubborn=stubborn)
    session = AvatarSession(llm=llm, renderer=renderer, tts=tts, prefer="text")
    outcome: list[BaseException] = []

    async def start() -> None:
        try:
            await session.start()
        except SessionError as exc:
            outcome.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await wait_until(lambda: renderer.starting)
            if stubborn:
                tg.start_soon(session.close)
                # close() has begun (waited for: after a fixed 10 ms on a loaded machine, trio
                # could run this before the close task, and the start then simply succeeded)
                await wait_until(lambda: session._closed)
                renderer.gate.set()  # it finishes starting after close() began
            else:
                await session.close()
    assert len(outcome) == 1, "start() must fail: the session was closed"
    assert session.state == "closed"
    assert (llm.started, llm.closed) == (1, 1)
    assert (renderer.started, renderer.closed) == (int(stubborn), 1)
    with pytest.raises(SessionError):
        await session.start()


async def test_two_concurrent_starts_start_once_and_close_once() -> None:
    llm, renderer = FakeLLM(), GatedRenderer()
    session = AvatarSession(llm=llm, renderer=renderer)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.start)
            tg.start_soon(session.start)
            await wait_until(lambda: renderer.starting)
            renderer.gate.set()
        assert await session.send("hi")
        await session.close()
    assert (llm.started, llm.closed) == (1, 1)
    assert (renderer.started, renderer.closed) == (1, 1)


async def test_subscribe_after_close_is_an_ended_stream() -> None:
    session = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer())
    async with session:
        pass
    with anyio.fail_after(5):
        async with session.subscribe() as events:
            assert [e async for e in events] == []


class HangingCloseStream:
    """An LLM stream (an async iterator, like an SDK's) whose aclose() never returns."""

    def __init__(self) -> None:
        self.tokens = iter(["Hello there. ", "How are ", "you ", "today?"])
        self.closing = False

    def __aiter__(self) -> HangingCloseStream:
        return self

    async def __anext__(self) -> str:
        await anyio.sleep(0.01)
        try:
            return next(self.tokens)
        except StopIteration:
            await anyio.sleep(3600)  # a stream that never ends by itself
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closing = True
        await anyio.sleep(3600)


class HangingLLM(FakeLLM):
    def __init__(self) -> None:
        super().__init__()
        self.streams: list[HangingCloseStream] = []

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.streams.append(HangingCloseStream())
        return self.streams[-1]


class HangingClose(FakeTextRenderer):
    async def close(self) -> None:
        await super().close()
        await anyio.sleep(3600)


async def test_a_stream_whose_aclose_hangs_cannot_make_interrupt_unbounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm = HangingLLM()
    session = AvatarSession(llm=llm, renderer=FakeTextRenderer(), timeouts=Timeouts(cleanup=0.1))
    with anyio.fail_after(10), caplog.at_level(logging.WARNING, logger="avatarkit.session"):
        async with session, anyio.create_task_group() as tg:
            tg.start_soon(session.send, "hi")
            await wait_until(lambda: session.state == "speaking")
            await session.interrupt()
            assert session.state == "idle"
    assert llm.streams[0].closing
    assert "did not close within 0.1 s" in caplog.text


async def test_a_provider_whose_close_hangs_cannot_make_close_unbounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llm, renderer = FakeLLM(), HangingClose()
    session = AvatarSession(llm=llm, renderer=renderer, timeouts=Timeouts(cleanup=0.1))
    with anyio.fail_after(10), caplog.at_level(logging.WARNING, logger="avatarkit.session"):
        async with session:
            await session.send("hi")
    assert (llm.closed, renderer.closed) == (1, 1)
    assert "HangingClose did not close within 0.1 s" in caplog.text


class SlowCloseStream(HangingCloseStream):
    """aclose() takes longer than close() used to wait for a turn (5 s), then returns."""

    def __init__(self, closed: anyio.Event) -> None:
        super().__init__()
        self.closed = closed

    async def aclose(self) -> None:
        self.closing = True
        with anyio.move_on_after(6):
            await anyio.sleep(3600)
        self.closed.set()


class SlowCloseLLM(FakeLLM):
    def __init__(self) -> None:
        super().__init__()
        self.stream_closed = anyio.Event()

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        return SlowCloseStream(self.stream_closed)


class CheckingRenderer(FakeTextRenderer):
    """Records, when closed, whether the session's turn had ended."""

    def __init__(self) -> None:
        super().__init__()
        self.session: AvatarSession | None = None
        self.turn_running_at_close: bool | None = None

    async def close(self) -> None:
        assert self.session is not None
        self.turn_running_at_close = self.session._turn is not None
        await super().close()


async def test_close_waits_for_the_running_turn_before_closing_providers() -> None:
    renderer = CheckingRenderer()
    llm = SlowCloseLLM()
    session = AvatarSession(llm=llm, renderer=renderer, timeouts=Timeouts(cleanup=0.2))
    renderer.session = session
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await session.start()

            async def talk() -> None:
                try:
                    await session.send("hi")
                except SessionError:
                    pass

            tg.start_soon(talk)
            await wait_until(lambda: session.state == "speaking")
            await session.close()
    assert renderer.turn_running_at_close is False
    assert (llm.closed, renderer.closed) == (1, 1)


class LLMAndTTS(FakeTTS, FakeLLM):
    """One object serving as both the LLM and the TTS (as one vendor's client may)."""

    def __init__(self) -> None:
        FakeLLM.__init__(self)
        FakeTTS.__init__(self)


async def test_a_provider_in_two_roles_starts_and_closes_once() -> None:
    both = LLMAndTTS()
    session = AvatarSession(llm=both, tts=both, renderer=FakeAudioRenderer())
    assert session.route == "audio"
    async with session:
        assert await session.send("hi")
    assert (both.started, both.closed) == (1, 1)
