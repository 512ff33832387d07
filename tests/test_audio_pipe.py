"""The audio route's hand-over from TTS to renderer: the pipe, blocks and batched resampling.

The pipe keeps buffered audio as bytes and rebuilds chunks on the way out; a renderer that
declares ``max_chunk_seconds`` gets what is already buffered joined up to that length. Neither
may change the audio (bytes, format, order), delay the first audio, or make history count
anything but what the renderer took (asyncio and trio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.truth import check_truth

from avatarkit import AudioChunk, AvatarSession
from avatarkit._audio_pipe import AudioPipe
from avatarkit.audio import RateConverter
from avatarkit.events import Event
from avatarkit.testing import FakeAudioRenderer, FakeLLM, FakeTTS, wait_until

FORMATS = [(16000, 1), (24000, 1), (16000, 2)]

chunks = st.lists(
    st.tuples(
        st.sampled_from(FORMATS),
        st.integers(0, 40),  # frames
        st.booleans(),  # bytearray rather than bytes
        st.integers(0, 255),
    ),
    max_size=30,
)


def _chunk(form: tuple[int, int], frames: int, mutable: bool, fill: int) -> AudioChunk:
    data = bytes([fill]) * (2 * form[1] * frames)
    return AudioChunk(bytearray(data) if mutable else data, *form)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(chunks, st.lists(st.integers(0, 3), max_size=60))
def test_the_pipe_gives_back_every_chunk_in_order_and_format(
    spec: list[tuple[tuple[int, int], int, bool, int]], takes: list[int]
) -> None:
    """Interleaved puts, pops and joined takes return the same audio, chunk for chunk."""
    pipe = AudioPipe()
    given_ = [_chunk(*s) for s in spec]
    out: list[tuple[bytes, int, int]] = []
    pending = list(given_)
    for take in [*takes, *[0] * len(given_)]:
        if pending:
            assert pipe.put(pending.pop(0))
        if take == 0 or take == 1:
            chunk = pipe.pop()
            if chunk is not None:
                out.append((bytes(chunk.data), chunk.sample_rate, chunk.channels))
        elif take == 2 and out:  # take data in the format of the last chunk popped
            _, rate, channels = out[-1]
            data = pipe.peek_data(rate, channels)
            if data is not None:
                assert pipe.pop_data() == data
                out.append((bytes(data), rate, channels))
    while (chunk := pipe.pop()) is not None:
        out.append((bytes(chunk.data), chunk.sample_rate, chunk.channels))
    pipe.end()
    assert pipe.finished
    assert out == [(bytes(c.data), c.sample_rate, c.channels) for c in given_]


async def test_dropping_stops_the_producer_and_frees_the_audio() -> None:
    pipe = AudioPipe()
    assert pipe.put(AudioChunk(bytes(4), 16000))
    pipe.drop()
    assert pipe.finished
    assert pipe.pop() is None
    assert not pipe.put(AudioChunk(bytes(4), 16000))
    with anyio.fail_after(1):
        await pipe.wait()  # returns at once: nothing more will come


async def test_a_waiting_speaker_wakes_for_a_chunk_and_for_the_end() -> None:
    pipe = AudioPipe()
    woke: list[bool] = []

    async def speaker() -> None:
        await pipe.wait()
        woke.append(pipe.pop() is not None)
        await pipe.wait()
        woke.append(pipe.finished)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(speaker)
            await anyio.sleep(0.01)
            assert woke == []
            pipe.put(AudioChunk(bytes(4), 16000))
            # woken by the chunk (waited for: a fixed 10 ms could expire first on a loaded
            # machine, and trio may then run this task before the speaker)
            await wait_until(lambda: bool(woke))
            assert woke == [True]
            pipe.end()
    assert woke == [True, True]


def test_batched_resampling_gives_the_same_audio_as_chunk_by_chunk() -> None:
    """Joining buffered chunks before soxr changes neither the length nor (beyond soxr's
    dither, 2 LSB) the samples."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(24000) * 3000).astype("<i2").tobytes()

    def run(size: int) -> np.ndarray:
        converter, out = RateConverter(16000), []
        for i in range(0, len(data), size):
            out += converter.convert(AudioChunk(data[i : i + size], 24000))
        out += converter.finish()
        assert {(c.sample_rate, c.channels) for c in out} == {(16000, 1)}
        return np.frombuffer(b"".join(c.data for c in out), "<i2").astype(int)

    one_by_one, batched = run(960), run(960 * 5)
    assert len(one_by_one) == len(batched) == 16000
    assert np.abs(one_by_one - batched).max() <= 2


def test_a_converter_passes_matching_audio_through_untouched() -> None:
    converter = RateConverter(16000)
    chunk = AudioChunk(bytes(64), 16000)
    assert converter.passes(chunk)
    assert converter.convert(chunk)[0] is chunk
    assert RateConverter(None).convert(AudioChunk(bytes(8), 8000))[0].sample_rate == 8000


class BlockRenderer(FakeAudioRenderer):
    """Takes audio in blocks of up to ``max_chunk_seconds`` (declared), in real time."""

    def __init__(self, block: float, realtime: bool) -> None:
        super().__init__(realtime=realtime)
        self.max_chunk_seconds = block
        self.took_quarter_second = anyio.Event()

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        async def watched() -> AsyncIterator[AudioChunk]:
            taken = 0.0
            async for chunk in audio:
                taken += chunk.duration
                if taken >= 0.25:
                    self.took_quarter_second.set()
                yield chunk

        async with aclosing(watched()) as chunks:
            await super().speak(chunks)


class FirstChunkAloneTTS(FakeTTS):
    """Holds the first sentence's second chunk until the renderer has taken the first: the
    first chunk is all there is until then, whatever a loaded machine does to the timing."""

    def __init__(self, renderer: FakeAudioRenderer, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.renderer = renderer

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        first_sentence = not self.texts
        async with aclosing(super().synthesize(text)) as chunks:
            async for i, chunk in _enumerate(chunks):
                if first_sentence and i == 1:
                    await wait_until(lambda: any(u.chunks for u in self.renderer.utterances))
                yield chunk


async def _enumerate(chunks: AsyncIterator[AudioChunk]) -> AsyncIterator[tuple[int, AudioChunk]]:
    i = 0
    async for chunk in chunks:
        yield i, chunk
        i += 1


@pytest.mark.parametrize("chunk_delay", [0.0, 0.002])
@pytest.mark.parametrize("block", [0.03, 0.1, 1.0])
async def test_a_renderer_taking_blocks_gets_all_the_audio_and_history_all_of_it(
    block: float, chunk_delay: float
) -> None:
    renderer = BlockRenderer(block, realtime=True)
    tts = (
        FirstChunkAloneTTS(renderer, chunk_ms=10, ms_per_char=2, chunk_delay=chunk_delay)
        if chunk_delay
        else FakeTTS(chunk_ms=10, ms_per_char=2, chunk_delay=chunk_delay)
    )
    session = AvatarSession(
        llm=FakeLLM(["One sentence here. And another one."]), tts=tts, renderer=renderer
    )
    events: list[Event] = []
    session.on_event(events.append)
    with anyio.fail_after(10):
        async with session:
            said = await session.send("hi")
    assert said == "One sentence here. And another one."
    check_truth(session.history, events, renderer, ms_per_char=2)
    for utterance, text in zip(renderer.utterances, tts.texts, strict=True):
        assert sum(c.frames for c in utterance.chunks) == len(text) * 2 * 16
        # a block never exceeds the declared length (a TTS chunk is 10 ms)
        assert max(c.duration for c in utterance.chunks) <= max(block, 0.01) + 1e-9
    if chunk_delay:
        # the first audio is not held back to fill a block: the TTS's first chunk alone (the
        # next comes once the renderer took it; a pipe that waited to fill a block would hang)
        assert renderer.utterances[0].chunks[0].duration == pytest.approx(0.01)
    if chunk_delay == 0.0 and block >= 0.1:
        # the TTS ran ahead: blocks were joined
        pairs = zip(renderer.utterances, tts.texts, strict=True)
        assert any(len(u.chunks) < len(t) * 2 // 10 for u, t in pairs)


async def test_an_interrupt_mid_block_records_at_most_what_the_renderer_took() -> None:
    tts = FakeTTS(chunk_ms=10, ms_per_char=20)
    renderer = BlockRenderer(0.2, realtime=True)
    session = AvatarSession(
        llm=FakeLLM(["A fairly long first sentence to be cut. Never said."]),
        tts=tts,
        renderer=renderer,
    )
    events: list[Event] = []
    session.on_event(events.append)

    async def cut() -> None:
        await renderer.took_quarter_second.wait()
        await session.interrupt()

    with anyio.fail_after(10):
        async with session, anyio.create_task_group() as tg:
            tg.start_soon(cut)
            said = await session.send("hi")
    taken = renderer.utterances[0].duration
    assert 0.25 <= taken < 0.78  # some blocks, not the whole 0.78 s sentence
    assert len(said) <= taken * 1000 / 20
    assert "A fairly long first sentence to be cut.".startswith(said)
    check_truth(session.history, events, renderer, ms_per_char=20)


class TimedChunk(AudioChunk):
    """A TTS's chunk carrying more than audio (here, where it starts)."""

    def __init__(self, data: bytes, sample_rate: int, start: float) -> None:
        super().__init__(data, sample_rate)
        object.__setattr__(self, "start", start)


def test_a_chunk_subclass_is_handed_on_as_it_came() -> None:
    pipe = AudioPipe()
    plain = [AudioChunk(bytes(8), 16000) for _ in range(2)]
    timed = [TimedChunk(bytes(8), 16000, t) for t in (0.1, 0.2)]
    for chunk in [plain[0], timed[0], plain[1], timed[1]]:
        pipe.put(chunk)
    out = [pipe.pop() for _ in range(4)]
    assert out[1] is timed[0]
    assert out[3] is timed[1]
    assert [type(c) for c in out] == [AudioChunk, TimedChunk, AudioChunk, TimedChunk]
    # a subclass is never joined into a block
    pipe.put(timed[0])
    assert pipe.peek_data(16000, 1) is None
