"""Gapless speech: the silence between consecutive sentences at the renderer.

The TTS is faster than real time (first chunk after 5 ms, then 1 ms per 20 ms chunk); the
renderer plays each chunk for its duration on the event loop's clock. The gap is the time from
the renderer finishing one sentence's audio to receiving the next sentence's first chunk. With
look-ahead the next sentence is synthesised while the current one plays, so the gap is the
engine's own hand-over; ``lookahead=0`` is shown for comparison (the gap is then the TTS latency).

    uv run python benchmarks/gapless.py [--turns 20] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from avatarkit import AudioChunk, AvatarSession
from avatarkit.testing import FakeLLM, FakeTTS

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, row, summary, write_json

REPLY = (
    "This is the first sentence. Here comes the second one. A third follows it. "
    "Then a fourth. And the fifth ends the reply."
)


class PlayingRenderer:
    """Plays audio in real time and records when each sentence ended and the next began."""

    sample_rate = None

    def __init__(self) -> None:
        self.ended: list[float] = []
        self.first_audio: list[float] = []

    async def interrupt(self) -> None: ...

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        first = True
        async for chunk in audio:
            if first:
                self.first_audio.append(time.perf_counter())
                first = False
            await anyio.sleep(chunk.duration)
        self.ended.append(time.perf_counter())

    def gaps(self) -> list[float]:
        return [self.first_audio[i + 1] - self.ended[i] for i in range(len(self.ended) - 1)]


async def measure(turns: int, lookahead: int) -> list[float]:
    gaps: list[float] = []
    for _ in range(turns):
        renderer = PlayingRenderer()
        tts = FakeTTS(ms_per_char=4, chunk_ms=20, first_chunk_delay=0.005, chunk_delay=0.001)
        llm = FakeLLM([REPLY], token_delay=0.002)
        session = AvatarSession(llm=llm, tts=tts, renderer=renderer, lookahead=lookahead)
        async with session:
            await session.send("go")
        gaps.extend(renderer.gaps())
    return gaps


async def main(turns: int, backend: str, json_path: str | None) -> None:
    results: dict[str, object] = {"conditions": {**conditions(), "backend": backend}}
    print(f"gapless speech: {turns} turns of 5 sentences, backend {backend}")
    print(f"  conditions: {results['conditions']}")
    print("  TTS: first chunk 5 ms, 1 ms per 20 ms chunk (20x faster than real time)")
    for lookahead in (1, 0):
        s = summary(await measure(turns, lookahead))
        results[f"gap/lookahead{lookahead}"] = s
        print(row(f"silence between sentences, lookahead={lookahead}", s))
    write_json(json_path, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--json")
    args = parser.parse_args()
    anyio.run(main, args.turns, args.backend, args.json, backend=args.backend)
