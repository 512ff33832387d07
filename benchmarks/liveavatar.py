"""LiveAvatar LITE mode latency against the fake LiveAvatar on 127.0.0.1.

1. From the TTS yielding its first chunk to the first ``agent.speak`` arriving at the fake
   (target: under 2 ms p95): the renderer driven directly with 24 kHz audio, and through a whole
   AvatarSession with a 22.05 kHz TTS (the engine resamples to 24 kHz on the way).
2. From ``interrupt()`` to ``agent.interrupt`` arriving at the fake, while audio is streaming;
   also when ``interrupt()`` and the pending ``speak()`` returned.

The fake runs in its own process (in-process, its threads would wait for the GIL while the
renderer runs, adding up to a switch interval, 5 ms, that is not ours). Arrival is stamped by
its WebSocket thread right after reading and parsing the frame, with ``time.perf_counter``
(CLOCK_MONOTONIC: one clock for both processes on Linux), so the numbers include the loopback
TCP hop and the other process waking up, not only our code.

    uv run python benchmarks/liveavatar.py [--runs 200] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from avatarkit import AudioChunk, AvatarSession
from avatarkit.testing import FakeLLM, tone
from avatarkit_heygen.liveavatar import LiveAvatarRenderer
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar

Record = tuple[float, str, str]  # (arrived at, type, event_id)


def serve_fake(conn: Any) -> None:
    """Child process: run the fake, answer "records" with what arrived, stop on "stop"."""
    with FakeLiveAvatar() as fake:
        conn.send(fake.base_url)
        while (command := conn.recv()) != "stop":
            assert command == "records"
            conn.send([(r.at, r.type, str(r.message.get("event_id"))) for r in fake.messages()])


class RemoteFake:
    """The fake LiveAvatar in another process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve_fake, args=(child,), daemon=True)

    def __enter__(self) -> RemoteFake:
        self._process.start()
        self.base_url: str = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)

    async def records(self, kind: str | None = None) -> list[Record]:
        def ask() -> list[Record]:
            self._conn.send("records")
            return list(self._conn.recv())

        records = await anyio.to_thread.run_sync(ask)
        return [r for r in records if kind is None or r[1] == kind]

    async def wait_for(self, kind: str, count: int) -> list[Record]:
        with anyio.fail_after(10):
            while len(records := await self.records(kind)) < count:  # noqa: ASYNC110
                await anyio.sleep(0.002)
        return records


PACE = 0.0


class TimedTTS:
    """Yields ``seconds`` of tone in 20 ms chunks and stamps its first chunk."""

    def __init__(self, rate: int, seconds: float = 0.2, pace: float = 0.0) -> None:
        self.rate = rate
        self.audio = tone(seconds, rate)
        self.pace = pace
        self.first: list[float] = []

    async def synthesize(self, text: str = "") -> AsyncIterator[AudioChunk]:
        step = self.rate // 50 * 2
        for i in range(0, len(self.audio), step):
            if i == 0:
                self.first.append(time.perf_counter())
            yield AudioChunk(self.audio[i : i + step], self.rate)
            if self.pace:
                await anyio.sleep(self.pace)


def make_renderer(fake: RemoteFake) -> LiveAvatarRenderer:
    # first_chunk_seconds=0: measure our code path, not the TTS gathering the first 400 ms
    renderer = LiveAvatarRenderer(
        api_key=API_KEY,
        avatar_id="bench",
        base_url=fake.base_url,
        keep_alive=False,
        first_chunk_seconds=0,
    )
    renderer.configure_route("audio")
    return renderer


async def first_speak_arrivals(fake: RemoteFake, skip: int) -> list[float]:
    """Arrival time of each utterance's first agent.speak, in order, after ``skip`` of them."""
    firsts: dict[str, float] = {}
    for at, _, event_id in await fake.records("agent.speak"):
        firsts.setdefault(event_id, at)
    return list(firsts.values())[skip:]


async def tts_to_first_speak_direct(fake: RemoteFake, runs: int) -> dict[str, list[float]]:
    """Per utterance, from the TTS's first chunk to: the message handed to the WebSocket (our
    code only), the WebSocket write returning, and its arrival at the fake."""
    tts = TimedTTS(24000, pace=PACE)
    entered: dict[str, float] = {}
    written: dict[str, float] = {}
    async with make_renderer(fake) as renderer:
        link = renderer._link
        assert link is not None
        send = link.send

        async def stamped(message: dict[str, Any], *, at_most_once: bool = False) -> bool:
            first = message["type"] == "agent.speak" and message["event_id"] not in entered
            if first:
                entered[message["event_id"]] = time.perf_counter()
            sent = await send(message, at_most_once=at_most_once)
            if first:
                written[message["event_id"]] = time.perf_counter()
            return sent

        link.send = stamped  # type: ignore[method-assign]
        for _ in range(5):  # warm-up
            await renderer.speak(tts.synthesize())
        tts.first.clear()
        for _ in range(runs):
            await renderer.speak(tts.synthesize())
    arrivals = await first_speak_arrivals(fake, skip=5)

    def since_first(stamps: list[float]) -> list[float]:
        return [s - t for s, t in zip(stamps, tts.first, strict=True)]

    return {
        "handed to the WebSocket (our code only)": since_first(list(entered.values())[5:]),
        "WebSocket write returned": since_first(list(written.values())[5:]),
        "arrived at the fake": since_first(arrivals),
    }


async def tts_to_first_speak_session(fake: RemoteFake, runs: int) -> list[float]:
    tts = TimedTTS(22050)
    before = len({event_id for _, _, event_id in await fake.records("agent.speak")})
    session = AvatarSession(llm=FakeLLM(), tts=tts, renderer=make_renderer(fake))
    async with session:
        for _ in range(5):
            await session.say("Warm up.")
        tts.first.clear()
        for _ in range(runs):
            await session.say("Hello.")
    arrivals = await first_speak_arrivals(fake, skip=before + 5)
    return [a - t for a, t in zip(arrivals, tts.first, strict=True)]


async def interrupt_latency(fake: RemoteFake, runs: int) -> list[tuple[float, float, float]]:
    """(to agent.interrupt at the fake, to interrupt() returning, to speak() returning)."""
    results = []
    async with make_renderer(fake) as renderer:
        for i in range(runs):
            tts = TimedTTS(24000, seconds=30.0, pace=0.005)
            speaks = len(await fake.records("agent.speak"))
            returned: list[float] = []

            async def speak(source: TimedTTS = tts, done: list[float] = returned) -> None:
                await renderer.speak(source.synthesize())
                done.append(time.perf_counter())

            async with anyio.create_task_group() as tg:
                tg.start_soon(speak)
                await fake.wait_for("agent.speak", speaks + 3)
                t0 = time.perf_counter()
                await renderer.interrupt()
                t_call = time.perf_counter()
            arrived = (await fake.wait_for("agent.interrupt", i + 1))[-1][0]
            results.append((arrived - t0, t_call - t0, returned[0] - t0))
    return results


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def row(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"  {label:<67} p50 {pct(ms, 50):7.3f} ms   p95 {pct(ms, 95):7.3f} ms"
        f"   max {max(ms):7.3f} ms   (n={len(ms)})"
    )


async def main(runs: int) -> None:
    print("liveavatar LITE benchmark against the fake LiveAvatar on 127.0.0.1")
    print(
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("  TTS: 20 ms chunks; renderer: chunk_seconds=1.0; fake answers speak_ended at once")
    with RemoteFake() as fake:
        print("TTS first chunk -> first agent.speak at the fake (target < 2 ms p95):")
        for label, values in (await tts_to_first_speak_direct(fake, runs)).items():
            print(row(f"renderer.speak, 24 kHz TTS: {label}", values))
        print(
            row(
                "AvatarSession.say, 22.05 kHz TTS: arrived at the fake",
                await tts_to_first_speak_session(fake, runs),
            )
        )
    with RemoteFake() as fake:
        n = max(10, runs // 4)
        results = await interrupt_latency(fake, n)
        print("interrupt() while streaming audio (TTS paced at 4x real time):")
        print(row("-> agent.interrupt at the fake", [r[0] for r in results]))
        print(row("-> interrupt() returned", [r[1] for r in results]))
        print(row("-> the pending speak() returned", [r[2] for r in results]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    print(f"backend: {args.backend}")
    anyio.run(main, args.runs, backend=args.backend)
