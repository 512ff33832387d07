"""Scale in one process: N concurrent sessions holding conversations against fake providers.

Each session loops: the user "speaks" (a random 0.5-1.5 s pause), then a turn: the LLM answers
after 200 ms with a token every 20 ms (two sentences); on the text route the renderer speaks
each sentence for its spoken length (a cloud avatar such as HeyGen); on the audio route a TTS
(first chunk after 50 ms, 40 ms chunks, 10x faster than real time) feeds a renderer that plays
the audio in real time (in the chunks the TTS made, or with ``--renderer-block S`` in blocks of
up to S seconds, which the renderer declares as ``max_chunk_seconds``). Sessions start
staggered over a second. Once every session has finished a turn (the steady state: at least
2 s, at most 60 s; with ``--gc tuned`` it ends with the full collection that policy runs after
the process grew; the longest collector pause of this ramp is reported apart), for
``--seconds`` we record CPU time per completed turn, resident memory per session, event-loop
lag (a ticker that sleeps 10 ms and records how late it wakes) and the garbage collector's
pauses; then what one full collection costs with every session open.

``--gc tuned`` applies the garbage-collector policy of an ``avatarkit serve`` process and runs
its ``collect_periodically`` (:mod:`avatarkit.serve.collector`: survivors frozen every second,
young collections only on a burst of 100,000 objects, full ones every 10 minutes or when peak
memory grew by half); ``--gc python`` (the default) keeps Python's settings.

``--loop uvloop`` runs on uvloop, the event loop ``avatarkit serve`` uses when it is installed
(the ``serve`` extra installs it on Linux and macOS); ``asyncio`` (the default) is Python's own.

``--no-engine`` runs the same conversations without a session (the LLM stream read, then each
sentence's TTS straight into the renderer, no look-ahead): the floor that the fakes and the
event loop cost, which any engine adds to.

    uv run python benchmarks/scale.py --sessions 1000 [--route text|audio] [--seconds 8]
        [--renderer-block 0.2] [--gc tuned] [--loop uvloop] [--no-engine]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from avatarkit import AudioChunk, AvatarSession
from avatarkit.testing import FakeLLM

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, pct, write_json

REPLY = "Sure, I can help with that. Tell me a little more about what you need."
SENTENCES = ("Sure, I can help with that.", "Tell me a little more about what you need.")
SPEECH_SECONDS_PER_CHAR = 0.06 / 6  # ~160 words a minute


class CloudTextRenderer:
    async def interrupt(self) -> None: ...

    async def speak_text(self, text: str) -> None:
        await anyio.sleep(len(text) * SPEECH_SECONDS_PER_CHAR)


class CannedTTS:
    """Pre-computed audio (so the fake costs no CPU of its own): 60 ms per character, in 40 ms
    chunks, the first after 50 ms, then one every 4 ms (10x faster than real time)."""

    chunk = bytes(2 * 640)  # 40 ms at 16 kHz

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        await anyio.sleep(0.05)
        for _ in range(len(text) * 60 // 40):
            yield AudioChunk(self.chunk, 16000)
            await anyio.sleep(0.004)


class PlayingRenderer:
    sample_rate = None

    async def interrupt(self) -> None: ...

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        async for chunk in audio:
            await anyio.sleep(chunk.duration)


def running_loop() -> str:
    """The event loop this runs on, as it is (not as asked): asyncio, uvloop or trio."""
    import asyncio

    try:
        module = type(asyncio.get_running_loop()).__module__
    except RuntimeError:
        return "trio"
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class GCPauses:
    """The collector's pauses by generation while ``measuring``, and the longest one before
    (while the sessions ramp up)."""

    def __init__(self) -> None:
        self.measuring: bool | None = False  # None: neither in the window nor in the ramp
        self.pauses: list[tuple[int, float]] = []
        self.ramp_max = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self.measuring:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))
        elif self.measuring is False:
            self.ramp_max = max(self.ramp_max, time.perf_counter() - self._start)

    def summary(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for gen in (0, 1, 2):
            ms = [p * 1000 for g, p in self.pauses if g == gen]
            result[f"gc{gen}_count"] = len(ms)
            result[f"gc{gen}_max_ms"] = max(ms, default=0.0)
        result["gc_total_ms"] = sum(p for _, p in self.pauses) * 1000
        result["gc_ramp_max_ms"] = self.ramp_max * 1000
        return result


async def converse_without_engine(llm: FakeLLM, tts: CannedTTS, renderer: PlayingRenderer) -> None:
    """One turn of the fakes alone: what any engine adds to."""
    async for _token in llm.stream([]):
        pass
    for sentence in SENTENCES:
        await renderer.speak(tts.synthesize(sentence))


async def main(
    sessions: int,
    route: str,
    seconds: float,
    json_path: str | None,
    block: float = 0.0,
    engine: bool = True,
    gc_policy: str = "python",
) -> None:
    if gc_policy != "python":
        from avatarkit.serve.collector import tune_collector

        tune_collector(gc_policy)  # type: ignore[arg-type]
    rng = random.Random(1)
    turns = 0
    measuring = False
    lags: list[float] = []
    stop = anyio.Event()
    gc_pauses = GCPauses()
    settled = 0  # sessions that finished a turn: the window opens once all have
    all_settled = anyio.Event()

    def turn_done() -> None:
        nonlocal turns, settled
        if measuring:
            turns += 1
        elif settled < sessions:
            settled += 1
            if settled == sessions:
                all_settled.set()

    async def converse(i: int) -> None:
        llm = FakeLLM([REPLY], first_token_delay=0.2, token_delay=0.02)
        if route == "text":
            session = AvatarSession(llm=llm, renderer=CloudTextRenderer(), max_history=20)
        else:
            renderer = PlayingRenderer()
            if block:
                renderer.max_chunk_seconds = block  # type: ignore[attr-defined]
            session = AvatarSession(llm=llm, tts=CannedTTS(), renderer=renderer, max_history=20)
        await anyio.sleep(i / sessions)  # staggered start
        if not engine:
            assert route == "audio", "--no-engine is for the audio route"
            while not stop.is_set():
                await anyio.sleep(rng.uniform(0.5, 1.5))
                await converse_without_engine(llm, CannedTTS(), renderer)
                turn_done()
            return
        async with session:
            while not stop.is_set():
                await anyio.sleep(rng.uniform(0.5, 1.5))
                await session.send("hello")
                turn_done()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await anyio.sleep(0.01)
            if measuring:
                lags.append(time.perf_counter() - t - 0.01)

    gc.collect()
    gc.callbacks.append(gc_pauses)
    rss0 = rss_bytes()
    async with anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(converse, i)
        tg.start_soon(ticker)
        collecting = anyio.CancelScope()
        if gc_policy == "tuned":
            from avatarkit.serve.collector import collect_periodically

            async def collect() -> None:
                with collecting:
                    await collect_periodically()  # what serve's lifespan runs

            tg.start_soon(collect)
        # Steady state: every session started and each has finished a turn (at most 60 s).
        ramp = time.perf_counter()
        await anyio.sleep(2.0)
        with anyio.move_on_after(60):
            await all_settled.wait()
        if gc_policy == "tuned":
            from avatarkit.serve.collector import full_collection

            # The full collection the tuned policy runs once the process has grown (by half,
            # checked every 15 s): a server reaches 1000 sessions over minutes and has run it
            # by then; this ramp is a few seconds, so it is run here, as part of the ramp.
            full_collection()
            await anyio.sleep(2.0)  # the loop catches up on what that pause held back
        ramp = time.perf_counter() - ramp
        rss1 = rss_bytes()
        measuring = gc_pauses.measuring = True
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await anyio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        measuring = gc_pauses.measuring = False
        # What one full collection costs with every session still open: the pause serve's
        # tuned policy takes every 10 minutes (collect_periodically), and Python's own takes
        # whenever enough objects reached the oldest generation.
        gc_pauses.measuring = None  # neither the window nor the ramp
        started = time.perf_counter()
        if gc_policy == "tuned":
            from avatarkit.serve.collector import full_collection

            full_collection()  # frozen objects too
        else:
            gc.collect()
        full_ms = (time.perf_counter() - started) * 1000
        collecting.cancel()
        stop.set()
    gc.callbacks.remove(gc_pauses)
    lag_ms = [x * 1000 for x in lags]
    result = {
        "sessions": sessions,
        "route": route,
        "renderer_block": block,
        "engine": engine,
        "gc_policy": gc_policy,
        "loop": running_loop(),
        "ramp_s": ramp,
        "turns": turns,
        "turns_per_s": turns / wall,
        "cpu_ms_per_turn": cpu * 1000 / max(turns, 1),
        "cpu_load": cpu / wall,
        "rss_kib_per_session": (rss1 - rss0) / 1024 / sessions,
        "lag_p50_ms": pct(lag_ms, 50),
        "lag_p99_ms": pct(lag_ms, 99),
        "lag_max_ms": max(lag_ms),
        "full_collection_ms": full_ms,
        **gc_pauses.summary(),
    }
    label = f"{route}, blocks {block:g} s" if block else route
    if not engine:
        label += ", fakes alone"
    if gc_policy != "python":
        label += f", GC {gc_policy}"
    if result["loop"] != "asyncio":
        label += f", {result['loop']}"
    print(
        f"  {label:5} route {sessions:5} sessions: {turns / wall:7.1f} turns/s, "
        f"CPU {result['cpu_ms_per_turn']:6.2f} ms/turn (loop busy {cpu / wall:4.0%}), "
        f"RSS {result['rss_kib_per_session']:6.1f} KiB/session, event-loop lag "
        f"p50 {result['lag_p50_ms']:6.2f} ms p99 {result['lag_p99_ms']:7.2f} ms "
        f"max {result['lag_max_ms']:7.2f} ms; GC pauses {result['gc_total_ms']:5.0f} ms in all, "
        f"gen2 {result['gc2_count']:.0f}x max {result['gc2_max_ms']:.0f} ms; a full collection "
        f"{full_ms:.0f} ms; ramp {ramp:.1f} s, its longest GC pause "
        f"{result['gc_ramp_max_ms']:.0f} ms"
    )
    write_json(json_path, {"conditions": conditions(), **result})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--route", choices=["text", "audio"], default="text")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--renderer-block", type=float, default=0.0)
    parser.add_argument("--no-engine", action="store_true")
    parser.add_argument("--gc", choices=["python", "tuned"], default="python")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="asyncio's event loop: Python's own or uvloop (what serve runs when installed)",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    anyio.run(
        main,
        args.sessions,
        args.route,
        args.seconds,
        args.json,
        args.renderer_block,
        not args.no_engine,
        args.gc,
        backend=args.backend,
        backend_options={"use_uvloop": True} if args.loop == "uvloop" else {},
    )
