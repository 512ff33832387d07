"""``avatarkit serve`` with 1 and 2 workers: sessions per worker and the turn latency curve.

Starts ``avatarkit serve --workers N`` on 127.0.0.1 (a subprocess) with the scripted LLM (a word
every 20 ms) and a cloud-avatar stand-in renderer (speaks text for its spoken length, like
HeyGen: the text route). A client in this process opens S pages over WebSockets, starts each
session and holds a conversation (a 0.5-1.5 s pause, then a turn). It reports how the pages
spread over the workers and, from the ``metrics`` messages, time to first speech (the server's
own figure) and the turn's round trip as the page sees it (send → metrics), p50/p95.

The client shares the machine with the server: on a 2-CPU machine the client's own work is part
of what is measured; compare rows of the same run.

    uv run python benchmarks/serve_workers.py [--sessions 100 300] [--workers 1 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import conditions, pct, write_json

PLUGIN = '''
import anyio
import avatarkit


class BenchCloudRenderer:
    """Speaks text for its spoken length (~160 words a minute), like a cloud avatar."""

    async def interrupt(self):
        pass

    async def speak_text(self, text):
        await anyio.sleep(len(text) * 0.01)


@avatarkit.hookimpl
def register_providers(registry):
    registry.renderer("bench-cloud", BenchCloudRenderer)
'''

SESSION = """
llm:
  provider: scripted
  delay: 0.02
  replies: ["Sure, I can help with that. Tell me a little more about what you need."]
renderer:
  provider: bench-cloud
"""


def start_server(root: Path, workers: int, sessions: int) -> tuple[subprocess.Popen[bytes], str]:
    from avatarkit.testing import installed_distribution

    site = root / "site"
    with installed_distribution(
        site,
        "bench-cloud",
        entry_points={"bench-cloud": "bench_cloud"},
        files={"bench_cloud.py": PLUGIN},
    ):
        pass
    (root / "session.yaml").write_text(SESSION)
    log = root / f"serve-{workers}.log"
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    per_worker = sessions  # no limit in the way: the kernel decides the spread
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "avatarkit",
                "serve",
                str(root / "session.yaml"),
                "--port",
                "0",
                "--workers",
                str(workers),
                "--max-sessions",
                str(per_worker),
                "--starts-per-minute",
                "100000",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on http://(127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return process, found.group(1)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"serve did not start:\n{log.read_text()}")


async def page(address: str, until: float, out: dict[str, Any], rng: random.Random) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://{address}/ws", max_size=None, open_timeout=60) as ws:
        hello = json.loads(await ws.recv())
        out["workers"][hello["worker"]] += 1
        await ws.send(json.dumps({"type": "start"}))
        while json.loads(await ws.recv())["type"] != "ready":
            pass
        await asyncio.sleep(rng.uniform(0, 1.0))
        while time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "send", "text": "hello"}))
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "metrics":
                    out["round_trip"].append(time.perf_counter() - sent)
                    if message["time_to_first_speech"] is not None:
                        out["first_speech"].append(message["time_to_first_speech"])
                    break
                if message["type"] == "error":
                    out["errors"] += 1
                    break


async def run_load(address: str, sessions: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workers": Counter(),
        "round_trip": [],
        "first_speech": [],
        "errors": 0,
    }
    rng = random.Random(1)
    until = time.monotonic() + seconds + 2.0
    results = await asyncio.gather(
        *(page(address, until, out, random.Random(rng.random())) for _ in range(sessions)),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    out["failed_pages"] = len(failures)
    if failures:
        print(f"  ({len(failures)} pages failed, e.g. {failures[0]!r})", flush=True)
    return out


def wait_for_workers(address: str, workers: int) -> None:
    """Until ``workers`` different processes have answered /healthz (bounded)."""
    import httpx

    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while len(seen) < workers and time.monotonic() < deadline:
        try:
            with httpx.Client(trust_env=False) as client:
                seen.add(client.get(f"http://{address}/healthz").json()["worker"])
        except httpx.TransportError:
            time.sleep(0.1)


def measure(workers: int, sessions: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        process, address = start_server(Path(folder), workers, sessions)
        try:
            wait_for_workers(address, workers)
            out = asyncio.run(run_load(address, sessions, seconds))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    rt = [s * 1000 for s in out["round_trip"]]
    fs = [s * 1000 for s in out["first_speech"]]
    return {
        "workers": workers,
        "sessions": sessions,
        "per_worker": sorted(out["workers"].values(), reverse=True),
        "turns": len(rt),
        "errors": out["errors"],
        "failed_pages": out["failed_pages"],
        "first_speech_p50_ms": pct(fs, 50) if fs else None,
        "first_speech_p95_ms": pct(fs, 95) if fs else None,
        "round_trip_p50_ms": pct(rt, 50) if rt else None,
        "round_trip_p95_ms": pct(rt, 95) if rt else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"serve_workers.py  {conditions()}")
    print(
        "  workers sessions  pages per worker   turns errors  first speech p50/p95 ms"
        "   round trip p50/p95 ms"
    )
    for sessions in args.sessions:
        for workers in args.workers:
            r = measure(workers, sessions, args.seconds)
            rows.append(r)
            spread = "/".join(str(n) for n in r["per_worker"])
            print(
                f"  {workers:>7} {sessions:>8}  {spread:<17} {r['turns']:>6} "
                f"{r['errors'] + r['failed_pages']:>6}  "
                f"{r['first_speech_p50_ms'] or 0:8.0f} {r['first_speech_p95_ms'] or 0:8.0f}   "
                f"{r['round_trip_p50_ms'] or 0:10.0f} {r['round_trip_p95_ms'] or 0:8.0f}",
                flush=True,
            )
    write_json(args.json, {"conditions": conditions(), "rows": rows})


if __name__ == "__main__":
    main()
