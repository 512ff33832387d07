"""Cost of one audio-route turn in counts, not times: event-loop callbacks, Python calls and
the garbage collector's young collections (which the allocation of tracked objects drives).

On a shared machine CPU milliseconds move with the load; these counts do not. 50 sessions hold
two turns each with scale.py's fakes (LLM token every 20 ms, TTS 40 ms chunks at 10x real time,
a renderer playing in real time). ``--no-engine`` runs the same fakes without a session (the
LLM stream read, then each sentence's TTS straight into the renderer): the floor any engine
adds to. Runs on asyncio (the counter wraps asyncio's ``Handle._run``).

    uv run python benchmarks/audio_turn_cost.py [--renderer-block 0.2] [--no-engine]
"""

from __future__ import annotations

import argparse
import asyncio.events
import gc
import sys
from pathlib import Path
from typing import Any

import anyio

from avatarkit import AvatarSession
from avatarkit.testing import FakeLLM

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_json
from scale import REPLY, CannedTTS, PlayingRenderer

SESSIONS = 50
SENTENCES = ("Sure, I can help with that.", "Tell me a little more about what you need.")


async def main(
    block: float, engine: bool, json_path: str | None, calls_too: bool = True, turns: int = 2
) -> None:
    callbacks = 0
    calls = 0
    run = asyncio.events.Handle._run

    def counted(self: asyncio.events.Handle) -> None:
        nonlocal callbacks
        callbacks += 1
        run(self)

    collections = [0, 0, 0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    async def converse(i: int) -> None:
        renderer = PlayingRenderer()
        if block:
            renderer.max_chunk_seconds = block  # type: ignore[attr-defined]
        llm, tts = FakeLLM([REPLY], first_token_delay=0.2, token_delay=0.02), CannedTTS()
        await anyio.sleep(i / SESSIONS)
        if not engine:
            for _ in range(turns):
                async for _token in llm.stream([]):
                    pass
                for sentence in SENTENCES:
                    await renderer.speak(tts.synthesize(sentence))
            return
        async with AvatarSession(llm=llm, tts=tts, renderer=renderer, max_history=20) as session:
            for _ in range(turns):
                await session.send("hello")

    asyncio.events.Handle._run = counted  # type: ignore[method-assign]
    gc.collect()
    gc.callbacks.append(collected)
    if calls_too:
        sys.setprofile(profile)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(SESSIONS):
                tg.start_soon(converse, i)
    finally:
        sys.setprofile(None)
        gc.callbacks.remove(collected)
        asyncio.events.Handle._run = run  # type: ignore[method-assign]
    turns = SESSIONS * turns
    label = "fakes alone, no engine" if not engine else "engine"
    if block:
        label += f", renderer taking {block:g} s blocks"
    young = (collections[0] + collections[1]) / turns
    print(
        f"  audio turn ({label}): {callbacks / turns:6.1f} loop callbacks, "
        f"{calls / turns:8.0f} Python calls, {young:5.2f} young GC collections "
        f"({collections[1] / turns:4.2f} of them gen1) per turn"
    )
    write_json(
        json_path,
        {
            "callbacks_per_turn": callbacks / turns,
            "calls_per_turn": calls / turns,
            "gc_young_per_turn": young,
            "gc_gen1_per_turn": collections[1] / turns,
            "label": label,
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer-block", type=float, default=0.0)
    parser.add_argument("--no-engine", action="store_true")
    parser.add_argument("--no-calls", action="store_true", help="skip the (slow) call count")
    parser.add_argument("--turns", type=int, default=2, help="turns per session (2)")
    parser.add_argument("--json")
    args = parser.parse_args()
    anyio.run(
        main,
        args.renderer_block,
        not args.no_engine,
        args.json,
        not args.no_calls,
        args.turns,
        backend="asyncio",
    )
