"""End to end through the real ``openai`` SDK: what the whole stack adds to the network wait.

A fake OpenAI on 127.0.0.1 answers with fixed latencies (chat: first token after
``--first-token`` ms, then a token every ``--token-gap`` ms; speech: first PCM after
``--tts-first`` ms, then faster than real time). A session with the ``openai`` LLM, the ``openai``
TTS and a fake audio renderer runs turns against it. The server timestamps its own waits, so

    overhead = time to first speech - (chat request received -> token ending the first sentence
               sent) - (speech request received -> first PCM sent)

is what the SDKs, HTTP, SSE parsing, the engine and the loopback network add on the path to the
first audio. The fake server runs on a thread of this process and shares its GIL, so the figure
is an upper bound. Also printed: from ``session.interrupt()`` to the server seeing the chat stream's
connection close.

    uv run python benchmarks/e2e_openai.py [--turns 40] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from avatarkit import AudioChunk, AvatarSession, TurnMetrics
from avatarkit.testing import ClientGone, Responder, loopback_server, tone
from avatarkit_openai.llm import OpenAILLM
from avatarkit_openai.tts import OpenAITTS

KEY = "sk-bench"
FIRST_SENTENCE = ["Hello", " there,", " nice", " to", " meet", " you."]
REST = [" This", " is", " the", " second", " sentence."]


def chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


@dataclass
class Server:
    """The fake's latencies, and what it measured (perf_counter seconds)."""

    first_token: float
    token_gap: float
    tts_first: float
    hold: bool = False  # keep streaming tokens (for the interrupt measurement)
    chat_wait: list[float] = field(default_factory=list)
    tts_wait: list[float] = field(default_factory=list)
    disconnected_at: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, r: Responder) -> None:
        received = time.perf_counter()
        if r.request.path.endswith("/audio/speech"):
            self.speech(r, received)  # an interrupted TTS request is not measured here
            return
        try:
            self.chat(r, received)
        except ClientGone:
            self.disconnected_at.append(time.perf_counter())
            raise

    def chat(self, r: Responder, received: float) -> None:
        r.start(200, {"content-type": "text/event-stream"})
        r.pause(self.first_token)
        for i, token in enumerate(FIRST_SENTENCE):
            if i:
                r.pause(self.token_gap)
            r.sse(chunk(token))
        self.chat_wait.append(time.perf_counter() - received)
        for token in REST * (200 if self.hold else 1):  # bounded even when held
            r.pause(self.token_gap)
            r.sse(chunk(token))
        r.sse(chunk(finish="stop"))
        r.sse("[DONE]")
        r.end()

    def speech(self, r: Responder, received: float) -> None:
        text = r.request.json()["input"]
        audio = tone(len(text) * 0.05, 24000)
        r.start(200, {"content-type": "application/octet-stream"})
        r.pause(self.tts_first)
        r.write(audio[:4800])
        with self.lock:
            if text.startswith("Hello"):
                self.tts_wait.append(time.perf_counter() - received)
        for i in range(4800, len(audio), 4800):
            r.pause(0.01)
            r.write(audio[i : i + 4800])
        r.end()


class Renderer:
    """Plays nothing; takes audio as fast as it comes. Can hold the first utterance."""

    sample_rate = None

    def __init__(self) -> None:
        self.hold = False
        self.got_audio = anyio.Event()
        self._stop = anyio.Event()

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def interrupt(self) -> None:
        self._stop.set()

    async def speak(self, audio: AsyncIterator[AudioChunk]) -> None:
        self._stop = anyio.Event()
        async for _ in audio:
            self.got_audio.set()
            if self.hold:
                await self._stop.wait()
                return


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def row(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"  {label:<46} p50 {pct(ms, 50):8.2f} ms   p95 {pct(ms, 95):8.2f} ms   (n={len(ms)})"


async def measure(args: argparse.Namespace) -> None:
    server = Server(args.first_token / 1000, args.token_gap / 1000, args.tts_first / 1000)
    with loopback_server(server) as http:
        url = http.url + "/v1"
        renderer = Renderer()
        session = AvatarSession(
            llm=OpenAILLM(model="bench", api_key=KEY, base_url=url),
            tts=OpenAITTS(api_key=KEY, base_url=url),
            renderer=renderer,
        )
        metrics: list[TurnMetrics] = []
        session.on_event(lambda e: metrics.append(e) if isinstance(e, TurnMetrics) else None)
        async with session:
            for _ in range(args.turns + 1):  # the first turn opens the connections
                await session.send("Hi")
            ttfs = [m.time_to_first_speech or 0.0 for m in metrics]
            waits = [c + t for c, t in zip(server.chat_wait, server.tts_wait, strict=True)]
            overhead = [a - w for a, w in zip(ttfs, waits, strict=True)]
            print(row("time to first speech (warm)", ttfs[1:]))
            print(row("  of which the server's own waits", waits[1:]))
            print(row("  overhead added by the stack (warm)", overhead[1:]))
            print(row("  overhead, first turn (connections opened)", overhead[:1]))

            # interrupt: from session.interrupt() to the server seeing the chat stream close
            server.hold = renderer.hold = True
            delays: list[float] = []
            for _ in range(args.interrupts):
                seen = len(server.disconnected_at)
                renderer.got_audio = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(session.send, "Talk")
                    await renderer.got_audio.wait()
                    t0 = time.perf_counter()
                    await session.interrupt()
                with anyio.fail_after(5):
                    while len(server.disconnected_at) == seen:  # noqa: ASYNC110 - other thread
                        await anyio.sleep(0.001)
                delays.append(server.disconnected_at[seen] - t0)
            print(row("interrupt -> server sees the chat stream close", delays))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--interrupts", type=int, default=20)
    parser.add_argument("--first-token", type=float, default=150, help="ms")
    parser.add_argument("--token-gap", type=float, default=15, help="ms")
    parser.add_argument("--tts-first", type=float, default=80, help="ms")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    print(
        f"avatarkit end-to-end (openai LLM + openai TTS through the openai SDK, 127.0.0.1), "
        f"backend {args.backend}"
    )
    print(
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs; server latencies: first "
        f"token {args.first_token:g} ms, token gap {args.token_gap:g} ms, TTS first audio "
        f"{args.tts_first:g} ms"
    )
    anyio.run(measure, args, backend=args.backend)


if __name__ == "__main__":
    main()
