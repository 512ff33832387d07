"""The incremental TTS route: engine overhead to first audio, and first audio against the
sentence path.

Fake providers with known latency timestamp themselves. *Overhead* is the time from ``send()`` to
the renderer receiving the first audio, minus the providers' own time on that path (the LLM up
to the token after which the first text was pushed, the TTS from that push to its first audio),
measured the same way as the first-speech overhead in ``engine.py``. *Gain* is the time to first
audio on the sentence path minus on the incremental path, with the same LLM writing a token
every 20 ms and TTSs that answer at once: what starting before the first full stop is worth.

    uv run python benchmarks/incremental.py [--runs 200] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from avatarkit import AudioChunk, AvatarSession, Message
from avatarkit.testing import tone

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, row, summary, write_json

# A first sentence of twelve tokens, as replies usually open.
REPLY = (
    "Well, I think the answer depends on what you want to do next. "
    "Tell me more. And then we can plan."
).split(" ")
REPLY = [t if i == 0 else " " + t for i, t in enumerate(REPLY)]
CHUNK = tone(0.02, 16000)


class TimedLLM:
    def __init__(self, token_delay: float) -> None:
        self.token_delay = token_delay
        self.called = 0.0
        self.yielded: list[float] = []

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.called = time.perf_counter()
        for token in REPLY:
            if self.token_delay:
                await anyio.sleep(self.token_delay)
            self.yielded.append(time.perf_counter())
            yield token


class SentenceTTS:
    """Answers each sentence at once with ten 20 ms chunks."""

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        for _ in range(10):
            yield AudioChunk(CHUNK, 16000)
            await anyio.lowlevel.checkpoint()


class StreamTTS:
    """An incremental TTS answering every push at once: a 20 ms chunk per word."""

    def __init__(self) -> None:
        self.first_push = 0.0
        self.first_audio = 0.0

    def open_stream(self) -> _Stream:
        return _Stream(self)


class _Stream:
    def __init__(self, tts: StreamTTS) -> None:
        self.tts = tts
        self.send, self.receive = anyio.create_memory_object_stream[AudioChunk](1000)

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.send.close()
        self.receive.close()

    async def push(self, text: str) -> None:
        if not self.tts.first_push:
            self.tts.first_push = time.perf_counter()
        for _ in text.split():
            self.send.send_nowait(AudioChunk(CHUNK, 16000))

    async def flush(self) -> None: ...

    async def end(self) -> None:
        self.send.close()

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> AudioChunk:
        try:
            chunk = await self.receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        if not self.tts.first_audio:
            self.tts.first_audio = time.perf_counter()
        return chunk


class Renderer:
    def __init__(self) -> None:
        self.first = 0.0

    async def start(self) -> None: ...
    async def interrupt(self) -> None: ...
    async def close(self) -> None: ...

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        async for _chunk in audio:
            if not self.first:
                self.first = time.perf_counter()


async def first_audio(path: str, token_delay: float) -> tuple[float, float]:
    """(seconds from send() to the renderer's first audio, the engine's own share of it)."""
    llm = TimedLLM(token_delay)
    tts: Any = StreamTTS() if path == "incremental" else SentenceTTS()
    renderer = Renderer()
    async with AvatarSession(llm=llm, tts=tts, renderer=renderer) as session:
        started = time.perf_counter()
        await session.send("hi")
    total = renderer.first - started
    if path != "incremental":
        return total, float("nan")
    trigger = max(t for t in llm.yielded if t <= tts.first_push)
    providers = (trigger - llm.called) + (tts.first_audio - tts.first_push)
    return total, total - providers


async def main(runs: int, backend: str, json_path: str | None) -> None:
    results: dict[str, object] = {"conditions": {**conditions(), "backend": backend}}
    print(f"avatarkit incremental-TTS benchmark: {runs} runs each, backend {backend}")
    print(f"  conditions: {results['conditions']}")
    print("time-to-first-audio overhead, incremental route (engine only; providers subtracted):")
    for delay, label in ((0.0, "zero-latency LLM"), (0.02, "LLM token every 20 ms")):
        n = runs if delay == 0 else max(20, runs // 5)
        values = [(await first_audio("incremental", delay))[1] for _ in range(n)]
        s = summary(values)
        results[f"overhead/incremental/{'zero' if delay == 0 else '20ms'}"] = s
        print(row(f"incremental route, {label} (n={n})", s))
    print("first audio at 20 ms per token (first sentence: 12 tokens):")
    n = max(20, runs // 5)
    sentence = [(await first_audio("sentence", 0.02))[0] for _ in range(n)]
    incremental = [(await first_audio("incremental", 0.02))[0] for _ in range(n)]
    for name, values in (("sentence path", sentence), ("incremental path", incremental)):
        s = summary(values)
        results[f"first_audio/{name.split()[0]}"] = s
        print(row(f"{name} (n={n})", s))
    gain = summary([a - b for a, b in zip(sorted(sentence), sorted(incremental), strict=True)])
    results["gain"] = gain
    print(row("gain (sentence minus incremental, by rank)", gain))
    write_json(json_path, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    anyio.run(main, args.runs, args.backend, args.json, backend=args.backend)
