"""Pacing, interruption, lifecycle, and the renderer driven by a real AvatarSession."""

from __future__ import annotations

import time

import anyio
import numpy as np
import pytest

from avatarkit import AvatarSession
from avatarkit.errors import SessionError
from avatarkit.testing import FakeLLM, FakeTTS, check_renderer
from avatarkit.text import estimate_speech_seconds
from avatarkit_video.renderer import VideoRenderer


async def aenumerate(iterator):
    i = 0
    async for item in iterator:
        yield i, item
        i += 1


async def test_realtime_speaks_at_the_pace_of_speech_and_records_the_gaps(media, options) -> None:
    renderer = VideoRenderer(**options(realtime=True))
    await renderer.start()
    began = time.monotonic()
    await renderer.speak(media.chunks(media.speech(0.5), chunk_ms=100))
    spoke = time.monotonic() - began
    await anyio.sleep(0.3)
    await renderer.speak(media.chunks(media.speech(0.4)))
    await renderer.close()

    assert spoke >= 0.5 - 1 / media.FPS  # returned once the utterance was played, not before
    first, second = renderer.cues
    assert first.end - first.start == pytest.approx(0.5, abs=1e-6)
    assert second.end - second.start == pytest.approx(0.4, abs=1e-6)
    # The wall-clock gap is on the timeline, as idle frames (silence in the WAV).
    assert second.start - first.end >= 0.3 - 1 / media.FPS
    wav, rate = media.read_wav(renderer.files.audio)
    between = wav[round(first.end * rate) : round(second.start * rate)]
    assert between.size
    assert not between.any()
    rec = media.read(renderer.files.video)
    assert len(rec.frames) * rate == wav.size * media.FPS


async def test_interrupt_cuts_a_streaming_utterance_and_speak_returns(media, options) -> None:
    renderer = VideoRenderer(**options(pause=0.0))
    full = media.speech(4.0)
    await renderer.start()
    caption = "One two three four five six seven eight nine ten eleven."
    renderer.caption(caption)
    reached = anyio.Event()

    async def source():
        async for i, chunk in aenumerate(media.chunks(full, chunk_ms=40, delay=0.01)):
            if i == 12:  # half a second in
                reached.set()
            yield chunk

    async with anyio.create_task_group() as tg:
        done = anyio.Event()

        async def speak() -> None:
            await renderer.speak(source())
            done.set()

        tg.start_soon(speak)
        await reached.wait()
        await renderer.interrupt()
        with anyio.fail_after(10):  # generous: it returns at once, but machines are noisy
            await done.wait()
    await renderer.close()

    (cue,) = renderer.cues
    assert cue.interrupted
    spoken = round((cue.end - cue.start) * media.RATE)
    assert 0 < spoken < full.size
    wav, _ = media.read_wav(renderer.files.audio)
    assert wav.size < full.size
    np.testing.assert_array_equal(wav[:spoken], full[:spoken])
    # The cue holds only the words spoken: the share of the utterance rendered (its stream had
    # not ended, so of at least the text's estimated speaking time), cut at a word boundary.
    words, said = caption.split(), cue.text.split()
    assert said == words[: len(said)]
    seconds = cue.end - cue.start
    estimate = estimate_speech_seconds(caption)
    assert int(len(words) * seconds / max(estimate, 4.0)) <= len(said)
    assert len(said) <= int(len(words) * seconds / estimate)
    vtt = renderer.files.transcript.read_text(encoding="utf-8")
    assert caption not in vtt
    assert "eleven" not in vtt
    if said:
        assert cue.text in vtt


def test_expected_length_of_a_cut_utterance(options) -> None:
    renderer = VideoRenderer(**options())
    rate = renderer.sample_rate
    text = "One two three four five six seven eight nine ten eleven."
    estimate = round(estimate_speech_seconds(text) * rate)
    assert renderer._expected(text, [rate, 1]) == rate  # stream ended: what it received
    assert renderer._expected(text, [rate, 0]) == max(rate, estimate)  # not ended: at least
    assert renderer._expected(text, [10 * estimate, 0]) == 10 * estimate
    assert renderer._expected(None, [rate, 0]) == rate


def test_spoken_text_is_the_rendered_share_cut_at_a_word() -> None:
    from avatarkit_video.transcript import spoken_text

    assert spoken_text("one two three four", 50, 100) == "one two"
    assert spoken_text("one two three four", 0, 100) == ""
    assert spoken_text("one two three four", 100, 100) == "one two three four"
    assert spoken_text("one two three four", 10, 0) == ""


async def test_interrupt_in_realtime_cuts_at_the_point_reached(media, options) -> None:
    renderer = VideoRenderer(**options(realtime=True))
    await renderer.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(renderer.speak, media.chunks(media.speech(5.0), chunk_ms=500))
        await anyio.sleep(0.3)
        await renderer.interrupt()
    await renderer.close()
    (cue,) = renderer.cues
    assert cue.interrupted
    assert cue.end - cue.start < 5.0


async def test_interrupt_when_idle_is_harmless(media, options) -> None:
    renderer = VideoRenderer(**options())
    await renderer.start()
    await renderer.interrupt()
    await renderer.speak(media.chunks(media.speech(0.2)))
    await renderer.close()
    (cue,) = renderer.cues
    assert not cue.interrupted


async def test_lifecycle_errors_and_idempotent_close(media, options) -> None:
    renderer = VideoRenderer(**options())
    with pytest.raises(SessionError, match="not started"):
        await renderer.speak(media.chunks(media.speech(0.1)))
    await renderer.start()
    await renderer.start()  # no-op
    await renderer.close()
    await renderer.close()
    with pytest.raises(SessionError, match="closed"):
        await renderer.speak(media.chunks(media.speech(0.1)))


async def test_close_under_cancellation_still_finishes_the_files(media, options) -> None:
    renderer = VideoRenderer(**options(pause=0.0))
    await renderer.start()
    await renderer.speak(media.chunks(media.speech(1.0)))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await renderer.close()
    rec = media.read(renderer.files.video)
    assert len(rec.frames) == media.FPS
    assert rec.audio_seconds >= 1.0


async def test_cancelled_speak_leaves_a_consistent_recording(media, options) -> None:
    renderer = VideoRenderer(**options(pause=0.0, realtime=True))
    await renderer.start()
    with anyio.move_on_after(0.2):
        await renderer.speak(media.chunks(media.speech(3.0)))
    await renderer.speak(media.chunks(media.speech(0.2)))
    await renderer.close()
    assert len(renderer.cues) == 2
    assert renderer.cues[0].end <= renderer.cues[1].start


async def test_in_a_session_the_transcript_holds_each_sentence(media, options) -> None:
    renderer = VideoRenderer(**options())
    session = AvatarSession(
        llm=FakeLLM(["Hello there. I am drawn with numpy!", "Bye now."]),
        tts=FakeTTS(sample_rate=22050, ms_per_char=20),
        renderer=renderer,
    )
    async with session:
        await session.send("hi")
        await session.send("bye")
    assert [c.text for c in renderer.cues] == ["Hello there.", "I am drawn with numpy!", "Bye now."]
    for cue in renderer.cues:  # FakeTTS: 20 ms of audio per character
        assert cue.end - cue.start == pytest.approx(len(cue.text) * 0.02, abs=0.01)
    rec = media.read(renderer.files.video)
    assert [s[2] for s in rec.subtitles] == [c.text for c in renderer.cues]


@pytest.mark.parametrize("realtime", [False, True])
async def test_follows_the_renderer_contract(options, realtime: bool) -> None:
    renderer = VideoRenderer(**options(realtime=realtime, pause=0.0))
    await check_renderer(renderer)
    assert renderer.files.video.stat().st_size > 0
