"""Voice input: what the engine adds, the offline STT's speed, and end of speech → first speech.

1. Engine overhead on the voice path (fakes, no provider time): from the audio frame that
   completes the silence hangover reaching ``listen`` to the renderer receiving the reply's
   first sentence (text route) or first audio (audio route). The VAD's own decision and the
   STT's final are already in when that frame arrives, so everything measured is the engine's:
   the turn decision, ``send``, the LLM call and the first sentence's way to the renderer.
2. The listener's cost per 20 ms frame of 48 kHz stereo audio (resampling, fan-out, clock).
3. Offline STT real-time factor: Whisper tiny.en (int8, 2 threads) on Piper and espeak-ng
   sentences; Silero VAD's cost per 32 ms frame.
4. End of user speech → first avatar speech with the offline default (Whisper + Silero, scripted
   LLM, console renderer), audio played in real time, from ``VoiceMetrics``.

    uv run python benchmarks/voice.py [--runs 200] [--backend asyncio|trio] [--skip-models]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from avatarkit import AudioChunk, AvatarSession, Message, TurnOptions
from avatarkit.events import Event, VoiceMetrics
from avatarkit.listening import Listener
from avatarkit.testing import FakeSTT, FakeVAD, tone

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, row, summary, write_json

RATE = 16000
FRAME = 0.02


class InstantLLM:
    def __init__(self) -> None:
        self.called = 0.0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.called = time.perf_counter()
        for token in ("Hello", " there.", " More", " words."):
            yield token


class FirstTextRenderer:
    def __init__(self) -> None:
        self.first = 0.0

    async def start(self) -> None: ...
    async def interrupt(self) -> None: ...
    async def close(self) -> None: ...

    async def speak_text(self, text: str) -> None:
        if not self.first:
            self.first = time.perf_counter()


class InstantTTS:
    chunk = AudioChunk(tone(0.05, RATE), RATE)  # made once: its cost is not the engine's

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        yield self.chunk


class FirstAudioRenderer(FirstTextRenderer):
    sample_rate = RATE

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        async for _ in audio:
            if not self.first:
                self.first = time.perf_counter()


async def voice_overhead(route: str) -> float:
    """Seconds from the hangover-completing frame to the renderer's first sentence/audio."""
    renderer: FirstTextRenderer = FirstAudioRenderer() if route == "audio" else FirstTextRenderer()
    turn = TurnOptions(end_silence=0.4)
    session = AvatarSession(
        llm=InstantLLM(),
        renderer=renderer,
        tts=InstantTTS() if route == "audio" else None,
        stt=FakeSTT(["hello avatar"]),
        vad=FakeVAD(min_silence=0.2),
        turn=turn,
    )
    speech_end = 0.2 + 0.5
    crossing = speech_end + turn.end_silence  # the frame ending here ends the turn
    sent = 0.0
    async with session:
        listener = Listener(session, stt=session.stt, vad=session.vad, options=turn)
        frames = [AudioChunk(bytes(640), RATE)] * 10
        speech = tone(0.5, RATE)
        frames += [AudioChunk(speech[i : i + 640], RATE) for i in range(0, len(speech), 640)]
        frames += [AudioChunk(bytes(640), RATE)] * 40

        async def feed() -> AsyncIterator[AudioChunk]:
            nonlocal sent
            position = 0.0
            for frame in frames:
                if abs(position + FRAME - crossing) < 1e-6:
                    # let everything before it settle (the VAD's end, the STT's final)
                    while listener._clock < position - 1e-6 or any(  # noqa: ASYNC110
                        u.pending for u in listener._open
                    ):
                        await anyio.sleep(0.001)
                    for _ in range(20):
                        await anyio.lowlevel.checkpoint()
                    sent = time.perf_counter()
                position += FRAME
                yield frame

        await listener.run(feed())
    return renderer.first - sent


async def listener_cost(seconds: float) -> float:
    """Seconds of CPU per 20 ms frame of 48 kHz stereo silence through listen()."""

    class NullVAD:
        async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[Any]:
            async for _ in audio:
                pass
            if False:
                yield None

    session = AvatarSession(
        llm=InstantLLM(), renderer=FirstTextRenderer(), stt=FakeSTT(), vad=NullVAD()
    )
    frame = AudioChunk(bytes(4 * 960), 48000, 2)
    n = round(seconds / FRAME)

    async def feed() -> AsyncIterator[AudioChunk]:
        for _ in range(n):
            yield frame

    async with session:
        t0 = time.process_time()
        await session.listen(feed())
        return (time.process_time() - t0) / n


def _espeak(text: str) -> AudioChunk:
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        return AudioChunk(w.readframes(w.getnframes()), w.getframerate())


async def _piper(text: str) -> AudioChunk:
    from avatarkit_piper.tts import PiperTTS

    pieces = [c async for c in PiperTTS().synthesize(text)]
    return AudioChunk(b"".join(c.data for c in pieces), pieces[0].sample_rate)


def _to16k(chunk: AudioChunk) -> bytes:
    from avatarkit.audio import Resampler

    r = Resampler(chunk.sample_rate, RATE)
    return r.process(chunk).data + r.flush().data


SENTENCES = (
    "What is the weather like in Madrid today?",
    "Can you recommend a good book about history?",
    "Tell me about the moon.",
    "Please stop talking, I have a question about my order from last week.",
)


async def model_figures(results: dict[str, Any]) -> None:
    from avatarkit_whisper.stt import WhisperSTT
    from avatarkit_whisper.vad import SileroVAD

    clips = [await _piper(s) for s in SENTENCES] + [_espeak(s) for s in SENTENCES]
    stt = WhisperSTT()
    t0 = time.perf_counter()
    await stt.start()
    load = time.perf_counter() - t0
    print(f"  Whisper tiny.en model load: {load:.2f} s (once per process)")
    rtf, per_call = [], []
    for clip in clips:
        pcm = _to16k(clip) + bytes(2 * round(0.3 * RATE))

        async def one(data: bytes = pcm) -> AsyncIterator[AudioChunk]:
            yield AudioChunk(data, RATE)

        t0 = time.perf_counter()
        out = [t async for t in stt.transcribe(one())]
        took = time.perf_counter() - t0
        per_call.append(took)
        rtf.append(took / (len(pcm) / 2 / RATE))
        del out
    results["whisper/rtf"] = {"p50": statistics.median(rtf), "max": max(rtf), "n": len(rtf)}
    results["whisper/call"] = summary(per_call)
    print(
        f"  Whisper real-time factor (decode time / audio length, {len(rtf)} sentences of "
        f"2-5 s, Piper and espeak-ng): median {statistics.median(rtf):.2f}, max {max(rtf):.2f}"
    )
    print(row("Whisper time per utterance", summary(per_call)))

    vad = SileroVAD()
    await vad.start()
    audio = b"".join(_to16k(c) for c in clips)
    frames = len(audio) // 2 // 512

    async def feed() -> AsyncIterator[AudioChunk]:
        for i in range(0, len(audio), 640):
            yield AudioChunk(audio[i : i + 640], RATE)

    t0 = time.process_time()
    async for _ in vad.detect(feed()):
        pass
    per_frame = (time.process_time() - t0) / frames
    results["silero/cpu_per_frame_ms"] = per_frame * 1000
    print(
        f"  Silero VAD: {per_frame * 1000:.3f} ms CPU per 32 ms frame "
        f"(real-time factor {per_frame / 0.032:.3f}), worker-thread hand-off included"
    )

    # 4. end of speech -> first speech, the offline default, in real time
    import avatarkit

    session = avatarkit.load_session(Path(__file__).parents[1] / "examples" / "voice.yaml")
    session.renderer.words_per_minute = 0  # type: ignore[attr-defined]
    session.llm.delay = 0.0  # type: ignore[attr-defined]
    metrics: list[VoiceMetrics] = []

    def on(event: Event) -> None:
        if isinstance(event, VoiceMetrics):
            metrics.append(event)

    gap = bytes(2 * round(1.5 * RATE))
    audio = gap + b"".join(_to16k(c) + gap for c in clips[:4])

    async def live() -> AsyncIterator[AudioChunk]:
        from avatarkit.audio_input import wav_frames

        async for chunk in wav_frames(AudioChunk(audio, RATE), realtime=True):
            yield chunk

    async with session:
        session.on_event(on)
        await session.listen(live())
    for name in ("to_final_transcript", "to_first_token", "to_first_speech"):
        values = [getattr(m, name) for m in metrics if getattr(m, name) is not None]
        if values:
            s = summary(values)
            results[f"offline/{name}"] = s
            print(row(f"end of speech -> {name.removeprefix('to_').replace('_', ' ')}", s))
    print(
        "  (includes the 0.6 s end_silence hangover and Silero's 0.3 s min_silence, which "
        "overlap: the turn ends 0.6 s after the speech, Whisper runs after that)"
    )


async def main(runs: int, backend: str, json_path: str | None, models: bool) -> None:
    results: dict[str, Any] = {"conditions": {**conditions(), "backend": backend}}
    print(f"avatarkit voice benchmark: backend {backend}")
    print(f"  conditions: {results['conditions']}")
    print("engine overhead on the voice path (hangover-ending frame -> renderer; fakes):")
    for route in ("text", "audio"):
        values = [await voice_overhead(route) for _ in range(runs)]
        s = summary(values)
        results[f"overhead/{route}"] = s
        print(row(f"{route} route (n={runs})", s))
    cost = await listener_cost(60.0)
    results["listener/cpu_per_frame_ms"] = cost * 1000
    print(
        f"  listener CPU per 20 ms frame of 48 kHz stereo (resample to 16 kHz, VAD and STT "
        f"fan-out, clock): {cost * 1000:.3f} ms ({cost / FRAME * 100:.2f} % of one core)"
    )
    if models and backend == "asyncio":
        print("offline models (avatarkit-whisper):")
        await model_figures(results)
    write_json(json_path, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--skip-models", action="store_true", help="only the engine figures")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    anyio.run(main, args.runs, args.backend, args.json, not args.skip_models, backend=args.backend)
