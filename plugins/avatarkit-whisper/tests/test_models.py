"""The real models on generated speech: Whisper's words and Silero's utterances.

Kept few (the machine is slow); each loads the models once per process.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from avatarkit.errors import ProviderError
from avatarkit.providers import AudioChunk
from avatarkit.testing import check_stt, check_vad
from avatarkit_whisper.stt import WhisperSTT
from avatarkit_whisper.vad import SileroVAD


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


async def test_whisper_gets_the_key_words_of_both_voices(
    piper_speech: Any, espeak_speech: Any, kit: Any
) -> None:
    chunks, silence = kit.chunks16, kit.silence
    stt = WhisperSTT()
    await stt.start()
    try:
        text = await check_stt(
            stt, chunks(silence(0.3), piper_speech.clips[0], silence(0.3)), expect=["weather"]
        )
        assert {"weather", "madrid", "today"} <= words(text)
        text = await check_stt(
            stt, chunks(silence(0.3), espeak_speech.clips[1], silence(0.3)), expect=["moon"]
        )
        assert {"tell", "me", "about", "moon"} <= words(text)
    finally:
        await stt.close()


async def test_silero_finds_each_utterance(piper_speech: Any, espeak_speech: Any, kit: Any) -> None:
    chunks, silence, RATE = kit.chunks, kit.silence, kit.RATE
    gap = silence(0.9)
    audio = [silence(0.4)]
    for clip in (*piper_speech.clips, *espeak_speech.clips[:2]):
        audio += [clip, gap]
    # min_silence above the 0.3 s pause Piper makes at a comma, below the 0.9 s between lines
    events = await check_vad(SileroVAD(min_silence=0.5), chunks(*audio), utterances=5)
    # each reported utterance lies around a sentence (VAD onsets may be a frame early/late)
    position = 0.4
    for i, clip in enumerate((*piper_speech.clips, *espeak_speech.clips[:2])):
        length = len(clip) / 2 / RATE
        start, end = events[2 * i].at, events[2 * i + 1].at
        assert position - 0.1 <= start <= position + length / 2, (i, start, position)
        assert position + length / 2 <= end <= position + length + 0.4, (i, end, position)
        position += length + 0.9


async def test_silero_ignores_silence_and_a_click(kit: Any) -> None:
    chunks, silence, noise_burst = kit.chunks, kit.silence, kit.noise_burst
    events = await check_vad(
        SileroVAD(), chunks(silence(1.0), noise_burst(0.03), silence(1.0)), utterances=0
    )
    assert events == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_cancelling_during_decoding_returns_at_once_and_the_model_still_works(
    piper_speech: Any, kit: Any
) -> None:
    chunks, silence = kit.chunks16, kit.silence
    stt = WhisperSTT()
    await stt.start()
    decoding = anyio.Event()

    async def audio() -> AsyncGenerator[AudioChunk, None]:
        for chunk in chunks(piper_speech.clips[1], silence(0.2)):
            yield chunk
        decoding.set()  # the STT has all the audio: it decodes now

    async def run() -> None:
        source = audio()
        async with aclosing(source), aclosing(stt.transcribe(source)) as transcripts:
            async for _ in transcripts:
                pytest.fail("a cancelled transcription yielded")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await decoding.wait()
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    # the next call waits for the abandoned decode to stop, then works
    source = _once(chunks(piper_speech.clips[2]))
    async with aclosing(source), aclosing(stt.transcribe(source)) as transcripts:
        out = [t async for t in transcripts]
    assert "wonderful" in words(out[-1].text)


async def _once(items: list[AudioChunk]) -> AsyncGenerator[AudioChunk, None]:
    for item in items:
        yield item


async def test_wrong_rate_is_a_provider_error() -> None:
    stt = WhisperSTT()
    source = _once([AudioChunk(bytes(800), 8000)])
    async with aclosing(source), aclosing(stt.transcribe(source)) as transcripts:
        with pytest.raises(ProviderError, match="16000 Hz"):
            await transcripts.__anext__()
