"""Piper TTS speed: real-time factor and time to first audio chunk, short and long sentences.

Runs the real ``piper`` provider (``PiperTTS.synthesize``, the path a session uses) on the
bundled voice unless ``--voice`` is given. For each text it prints p50/p95 over ``--runs`` of:

* time to first audio: from calling ``synthesize`` to the first chunk (what a listener waits);
* real-time factor (RTF): synthesis time / audio duration (below 1 is faster than real time).

The long sentence is run with phrase splitting on (the default) and off, to show what streaming
clause by clause buys. A last row runs a three-sentence reply through an ``AvatarSession``
(scripted LLM, a renderer that records audio as fast as it comes) and gives the time from
``send()`` to the first audio reaching the renderer, with the next sentences being synthesised
ahead (look-ahead) at the same time. The machine's load is printed too: these are CPU-bound
numbers.

    uv run python benchmarks/piper_tts.py [--runs 20] [--threads N] [--voice path.onnx]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import time
from pathlib import Path

import anyio
import numpy as np

from avatarkit import AvatarSession
from avatarkit.testing import FakeAudioRenderer, FakeLLM
from avatarkit_piper.tts import PiperTTS

TEXTS = {
    "short": "Hello there, how are you today?",
    "long": (
        "When the weather finally clears up later this afternoon, we should take the dogs for "
        "a long walk along the river, stop at the little bakery near the bridge, and then come "
        "back home before it gets dark outside."
    ),
}


REPLY = (
    "Sure, I can help you with that today. The first step is to open the settings page, and "
    "then choose the account tab. After that, press the button at the bottom."
)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def measure(tts: PiperTTS, text: str) -> tuple[float, float, float]:
    """(seconds to first chunk, total seconds, seconds of audio)."""
    start = time.perf_counter()
    first = 0.0
    audio = 0.0
    async for chunk in tts.synthesize(text):
        if not first:
            first = time.perf_counter() - start
        audio += chunk.duration
    return first, time.perf_counter() - start, audio


async def session_first_audio(tts: PiperTTS) -> float:
    """Seconds from ``send()`` to the renderer's first audio, for a three-sentence reply."""
    renderer = FakeAudioRenderer()
    async with AvatarSession(llm=FakeLLM([REPLY]), tts=tts, renderer=renderer) as session:
        start = anyio.current_time()
        await session.send("How do I change my account?")
    first = renderer.utterances[0].first_audio_at
    assert first is not None
    return first - start


async def main(runs: int, threads: int | None, voice: Path | None) -> None:
    loaded = time.perf_counter()
    tts = PiperTTS(voice, threads=threads)
    await tts.start()
    load_seconds = time.perf_counter() - loaded
    whole = PiperTTS(voice, threads=threads, split_phrases=False)
    await whole.start()  # shared: no second load

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print("avatarkit piper TTS benchmark")
    print(
        f"  python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"({affinity} usable), {platform.machine()}, "
        f"load average {'/'.join(f'{x:.1f}' for x in load) if load else 'n/a'}"
    )
    print(
        f"  piper-tts {importlib.metadata.version('piper-tts')}, "
        f"onnxruntime {importlib.metadata.version('onnxruntime')}, "
        f"threads {threads or 'default'}"
    )
    print(f"  voice {tts.info.name} ({tts.sample_rate} Hz), loaded in {load_seconds:.2f} s")
    print(f"  {runs} runs per row (after one warm-up run each), anyio asyncio backend")
    print()
    cases = [
        ("short", TEXTS["short"], tts),
        ("long, phrase by phrase", TEXTS["long"], tts),
        ("long, whole sentence", TEXTS["long"], whole),
    ]
    header = f"{'text':<24}{'words':>6}{'audio s':>9}"
    header += f"{'first chunk p50/p95 s':>24}{'RTF p50/p95':>16}"
    print(header)
    for label, text, provider in cases:
        await measure(provider, text)  # warm-up: first run of a shape pays ONNX allocations
        firsts, rtfs, audios = [], [], []
        for _ in range(runs):
            first, total, audio = await measure(provider, text)
            firsts.append(first)
            rtfs.append(total / audio)
            audios.append(audio)
        print(
            f"{label:<24}{len(text.split()):>6}{np.mean(audios):>9.2f}"
            f"{pct(firsts, 50):>14.3f} / {pct(firsts, 95):<7.3f}"
            f"{pct(rtfs, 50):>8.3f} / {pct(rtfs, 95):<6.3f}"
        )
    await session_first_audio(tts)  # warm-up
    firsts = [await session_first_audio(tts) for _ in range(runs)]
    label = "session, 3 sentences"
    print(
        f"{label:<24}{len(REPLY.split()):>6}{'':>9}"
        f"{pct(firsts, 50):>14.3f} / {pct(firsts, 95):<7.3f}{'(to renderer)':>16}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    parser.add_argument("--voice", type=Path, default=None, help="a Piper .onnx voice")
    args = parser.parse_args()
    anyio.run(main, args.runs, args.threads, args.voice)
