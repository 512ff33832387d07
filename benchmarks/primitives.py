"""What the event loop's building blocks cost on this machine, for reading the other figures.

A turn is built from these (task groups, tasks, cancel scopes, memory streams, loop rounds);
their cost here sets the floor under the engine's overhead.

    uv run python benchmarks/primitives.py [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio
import anyio.lowlevel

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, write_json

N = 3000


async def noop() -> None:
    pass


async def main(backend: str, json_path: str | None) -> None:
    results: dict[str, object] = {"conditions": {**conditions(), "backend": backend}}

    async def checkpoint() -> None:
        await anyio.lowlevel.checkpoint()

    async def task_group() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(noop)

    async def cancel_scope() -> None:
        with anyio.CancelScope():  # noqa: ASYNC100 - the cost of the scope itself
            pass

    async def memory_stream() -> None:
        send, receive = anyio.create_memory_object_stream[int](1)
        send.send_nowait(1)
        receive.receive_nowait()
        send.close()
        receive.close()

    def python_call() -> None:
        sum(range(10))

    print(f"event-loop primitives, backend {backend} (mean of {N}):")
    for label, fn in (
        ("one loop round (checkpoint)", checkpoint),
        ("task group running one empty task", task_group),
        ("cancel scope enter/exit", cancel_scope),
        ("memory stream create/send/receive/close", memory_stream),
    ):
        started = time.perf_counter()
        for _ in range(N):
            await fn()
        us = (time.perf_counter() - started) / N * 1e6
        results[label] = us
        print(f"  {label:<45} {us:8.1f} µs")
    started = time.perf_counter()
    for _ in range(N * 10):
        python_call()
    us = (time.perf_counter() - started) / N / 10 * 1e6
    results["sum(range(10)) (CPU speed)"] = us
    print(f"  {'sum(range(10)) (plain CPU speed)':<45} {us:8.2f} µs")
    write_json(json_path, results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--json")
    args = parser.parse_args()
    anyio.run(main, args.backend, args.json, backend=args.backend)
