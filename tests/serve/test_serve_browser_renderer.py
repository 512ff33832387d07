"""The ``browser`` renderer against a recording page link (no browser): wire format, timing."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from avatarkit import AudioChunk, AvatarSession, SessionError, renderer_capabilities
from avatarkit.builtins.browser import AUDIO_HEADER, BrowserRenderer, audio_frame
from avatarkit.plugins import default_registry
from avatarkit.testing import FakeLLM, FakeTTS, tone


class RecordingPage:
    """What the server would send to the page; ``auto_play`` answers ``played`` like a page."""

    def __init__(self, renderer: BrowserRenderer | None = None, *, delay: float = 0.0) -> None:
        self.messages: list[dict[str, Any] | bytes] = []
        self.renderer = renderer
        self.delay = delay
        self.audio_ended = anyio.Event()
        self.got_audio = anyio.Event()
        self.first_audio_at: float | None = None

    async def send_json(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "audio_end":
            self.audio_ended.set()
        if message["type"] == "audio_end" and self.renderer is not None:
            await anyio.sleep(self.delay)
            self.renderer.played(message["utterance"])

    async def send_bytes(self, data: bytes) -> None:
        self.messages.append(data)
        if self.first_audio_at is None:
            self.first_audio_at = anyio.current_time()
        self.got_audio.set()

    def json(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict)]

    def frames(self) -> list[bytes]:
        return [m for m in self.messages if isinstance(m, bytes)]


async def chunks(*items: AudioChunk) -> AsyncIterator[AudioChunk]:
    for item in items:
        yield item


def test_registered_as_an_audio_renderer() -> None:
    spec = default_registry(refresh=True).get("renderer", "browser")
    assert spec.source.distribution == "avatarkit-core"
    caps = spec.capabilities()
    assert caps is not None
    assert caps.audio
    assert not caps.text
    renderer = spec.create(sample_rate=24000)
    assert isinstance(renderer, BrowserRenderer)
    assert renderer.sample_rate == 24000


def test_options_are_validated() -> None:
    spec = default_registry().get("renderer", "browser")
    with pytest.raises(ValueError, match="extra"):
        spec.validate({"sample_rte": 16000})
    with pytest.raises(ValueError, match="greater than or equal"):
        spec.validate({"sample_rate": 100})


def test_audio_frame_layout_is_header_then_mono_pcm() -> None:
    stereo = struct.pack("<4h", 1000, 3000, -2000, -4000)
    frame = audio_frame(7, AudioChunk(stereo, 22050, channels=2))
    utterance, rate = AUDIO_HEADER.unpack_from(frame)
    assert (utterance, rate) == (7, 22050)
    assert struct.unpack("<2h", frame[AUDIO_HEADER.size :]) == pytest.approx((2000, -3000), abs=1)


async def test_start_without_a_page_says_to_use_serve() -> None:
    with pytest.raises(SessionError, match="avatarkit serve"):
        await BrowserRenderer().start()


async def test_speak_streams_frames_and_returns_when_the_page_has_played() -> None:
    renderer = BrowserRenderer(playback_grace=30)
    page = RecordingPage(renderer, delay=0.05)
    renderer.attach_page(page)
    await renderer.start()
    audio = [AudioChunk(tone(0.02, 16000), 16000) for _ in range(3)]
    with anyio.fail_after(10):  # generous bound: the page answers after 0.05 s
        await renderer.speak(chunks(*audio))
    start, *_, end = page.json()
    assert start == {"type": "audio_start", "utterance": 1}
    assert end == {"type": "audio_end", "utterance": 1, "duration": 0.06}
    assert [f[AUDIO_HEADER.size :] for f in page.frames()] == [c.data for c in audio]
    assert all(AUDIO_HEADER.unpack_from(f) == (1, 16000) for f in page.frames())


async def test_speak_waits_for_the_page_not_just_for_sending() -> None:
    renderer = BrowserRenderer(playback_grace=30)
    page = RecordingPage()  # never answers by itself
    renderer.attach_page(page)
    done = anyio.Event()

    async def speak() -> None:
        await renderer.speak(chunks(AudioChunk(tone(0.01, 8000), 8000)))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(speak)
        with anyio.fail_after(5):
            await page.audio_ended.wait()
        await anyio.sleep(0.05)
        assert not done.is_set()
        renderer.played(999)  # another utterance's report does not count
        await anyio.sleep(0.02)
        assert not done.is_set()
        renderer.played(1)
        with anyio.fail_after(5):
            await done.wait()


async def test_speak_gives_up_after_the_audio_length_plus_grace() -> None:
    renderer = BrowserRenderer(playback_grace=0.05)
    renderer.attach_page(RecordingPage())  # a page whose audio never plays
    started = anyio.current_time()
    with anyio.fail_after(5):
        await renderer.speak(chunks(AudioChunk(tone(0.1, 8000), 8000)))
    assert anyio.current_time() - started >= 0.1


async def test_audio_is_pulled_at_playback_speed_not_all_at_once() -> None:
    """The engine counts pulled audio as spoken: the renderer must not race ahead of playback."""
    renderer = BrowserRenderer(playback_grace=60, buffer_ahead=0.1)
    page = RecordingPage()
    renderer.attach_page(page)
    audio = [AudioChunk(tone(0.02, 8000), 8000) for _ in range(100)]  # 2 s, available at once
    async with aclosing(chunks(*audio)) as stream, anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, stream)
        with anyio.fail_after(5):
            await page.got_audio.wait()
        # timed from the first frame, not from when this task woke to see it (later, on a
        # loaded machine, by more than the one chunk of slack below)
        started = page.first_audio_at
        assert started is not None
        await anyio.sleep(0.3)
        sent = len(page.frames()) * 0.02
        elapsed = anyio.current_time() - started
        assert sent <= elapsed + 0.1 + 0.02 + 0.02  # played so far + buffer_ahead + one chunk
        assert sent >= 0.1  # but it does keep a buffer ahead
        await renderer.interrupt()
    assert len(page.frames()) < 100


async def test_interrupt_returns_speak_at_once_and_tells_the_page_to_stop() -> None:
    renderer = BrowserRenderer(playback_grace=60)
    page = RecordingPage()
    renderer.attach_page(page)
    async with anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, chunks(AudioChunk(tone(0.5, 8000), 8000)))
        with anyio.fail_after(5):
            await page.audio_ended.wait()
        with anyio.fail_after(5):  # speak must not wait out its 60 s grace
            await renderer.interrupt()
    assert page.json()[-1] == {"type": "audio_stop"}


async def test_close_is_idempotent_and_ends_a_waiting_speak() -> None:
    renderer = BrowserRenderer(playback_grace=60)
    renderer.attach_page(RecordingPage())
    async with anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, chunks(AudioChunk(tone(0.5, 8000), 8000)))
        await anyio.sleep(0.05)
        with anyio.fail_after(5):
            await renderer.close()
            await renderer.close()
    with pytest.raises(SessionError):
        await renderer.speak(chunks())


async def test_session_turn_lasts_as_long_as_the_page_plays() -> None:
    """The engine's timing follows the page: a turn is not over until the page played it."""
    renderer = BrowserRenderer(playback_grace=30)
    page = RecordingPage(renderer, delay=0.2)
    renderer.attach_page(page)
    assert renderer_capabilities(renderer).audio
    session = AvatarSession(llm=FakeLLM(["One. Two."]), tts=FakeTTS(), renderer=renderer)
    async with session:
        started = anyio.current_time()
        reply = await session.send("hi")
        elapsed = anyio.current_time() - started
    assert reply == "One. Two."
    assert elapsed >= 0.4  # two utterances, each reported played 0.2 s after its end
    assert [m["utterance"] for m in page.json() if m["type"] == "audio_end"] == [1, 2]
