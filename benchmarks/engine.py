"""The engine's own overhead on time to first speech, and interrupt latency.

Fake providers with known latency timestamp themselves, so what is printed is the time the
engine adds on its own: from ``send()`` to the renderer receiving the first sentence (text route)
or its first audio (audio route), minus the time the providers themselves took on that path
(LLM up to the token that ends the first sentence, TTS up to its first chunk).

    uv run python benchmarks/engine.py [--runs 300] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel

from avatarkit import AudioChunk, AvatarSession, Message
from avatarkit.testing import tone

REPLY = ["Hello", " there.", " This", " is", " the", " second", " sentence.", " And", " more."]


class TimedLLM:
    def __init__(self, token_delay: float) -> None:
        self.token_delay = token_delay
        self.called = 0.0
        self.boundary = 0.0  # when the token ending the first sentence was yielded
        self.closed = 0.0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.called = time.perf_counter()
        try:
            for token in REPLY:
                if self.token_delay:
                    await anyio.sleep(self.token_delay)
                if token == " there.":
                    self.boundary = time.perf_counter()
                yield token
        finally:
            self.closed = time.perf_counter()


class TimedTTS:
    def __init__(self) -> None:
        self.audio = tone(0.2, 16000)
        self.called = 0.0
        self.first = 0.0
        self.closed = 0.0

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        if not self.called:
            self.called = time.perf_counter()
        try:
            for i in range(0, len(self.audio), 640):
                if not self.first:
                    self.first = time.perf_counter()
                yield AudioChunk(self.audio[i : i + 640], 16000)
                await anyio.lowlevel.checkpoint()
        finally:
            self.closed = time.perf_counter()


class TimedTextRenderer:
    def __init__(self, hold: bool = False) -> None:
        self.first = 0.0
        self.interrupted = 0.0
        self.hold = hold
        self._stop = anyio.Event()

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def interrupt(self) -> None:
        self.interrupted = time.perf_counter()
        self._stop.set()

    async def speak_text(self, text: str) -> None:
        if not self.first:
            self.first = time.perf_counter()
        if self.hold:
            await self._stop.wait()


class TimedAudioRenderer(TimedTextRenderer):
    speak_text = None  # type: ignore[assignment]  # audio only

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        async for _chunk in audio:
            if not self.first:
                self.first = time.perf_counter()
            if self.hold:
                await self._stop.wait()
                return


async def first_speech_overhead(route: str, token_delay: float) -> float:
    llm = TimedLLM(token_delay)
    tts = TimedTTS() if route == "audio" else None
    renderer = TimedAudioRenderer() if route == "audio" else TimedTextRenderer()
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer) as session:
        started = time.perf_counter()
        await session.send("hi")
    providers = llm.boundary - llm.called
    if tts is not None:
        providers += tts.first - tts.called
    return (renderer.first - started) - providers


async def interrupt_latency(route: str) -> tuple[float, float, float]:
    """Seconds from interrupt() to: renderer interrupted, LLM stream closed, TTS closed."""
    llm = TimedLLM(0.001)
    tts = TimedTTS() if route == "audio" else None
    renderer = TimedAudioRenderer(hold=True) if route == "audio" else TimedTextRenderer(hold=True)
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer) as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.send, "hi")
            while not renderer.first:
                await anyio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            await session.interrupt()
    tts_closed = (tts.closed - t0) if tts is not None else 0.0
    return renderer.interrupted - t0, llm.closed - t0, tts_closed


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def row(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"  {label:<44} p50 {pct(ms, 50):7.3f} ms   p95 {pct(ms, 95):7.3f} ms"
        f"   max {max(ms):7.3f} ms"
    )


async def main(runs: int) -> None:
    print(f"avatarkit engine benchmark: {runs} runs each")
    print(f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print("time-to-first-speech overhead (engine only; provider latency subtracted):")
    for route in ("text", "audio"):
        for delay, label in ((0.0, "zero-latency LLM"), (0.02, "LLM token every 20 ms")):
            n = runs if delay == 0 else max(20, runs // 5)
            values = [await first_speech_overhead(route, delay) for _ in range(n)]
            print(row(f"{route} route, {label} (n={n})", values))
    print("interrupt latency (from interrupt() call):")
    for route in ("text", "audio"):
        results = [await interrupt_latency(route) for _ in range(runs)]
        print(row(f"{route} route: renderer.interrupt() called", [r[0] for r in results]))
        print(row(f"{route} route: LLM stream closed", [r[1] for r in results]))
        if route == "audio":
            print(row(f"{route} route: TTS stream closed", [r[2] for r in results]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    print(f"backend: {args.backend}")
    anyio.run(main, args.runs, backend=args.backend)
