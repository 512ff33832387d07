"""The piper TTS against the real bundled voice: real synthesis, streaming, cancellation."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from avatarkit import AudioChunk, AvatarSession, ProviderError
from avatarkit.plugins import default_registry
from avatarkit.testing import FakeAudioRenderer, FakeLLM
from avatarkit_piper.options import PiperTTSOptions
from avatarkit_piper.tts import PiperTTS
from avatarkit_piper.voices import bundled_voice_path, loaded_voices

SHORT = "Hello there."
LONGER = "The quick brown fox jumps over the lazy dog and then runs far away into the forest."
CLAUSES = (
    "First of all, we open the box carefully; after that, we take out the parts, "
    "and at the very end, we put it together."
)


def pcm(chunks: list[AudioChunk]) -> np.ndarray[Any, Any]:
    return np.frombuffer(b"".join(c.data for c in chunks), dtype="<i2").astype(np.float64)


def rms(samples: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


class Gate:
    """Wraps the real voice's model call to count phrases and hold call ``hold_from`` onwards
    until released, so tests can see what the worker did at a given moment without timing."""

    def __init__(self, voice: Any, monkeypatch: pytest.MonkeyPatch, *, hold_from: int) -> None:
        self.calls = 0
        self.completed = 0
        self.running = 0
        self.most_running = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        real: Callable[..., Any] = voice.phoneme_ids_to_audio

        def gated(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                number = self.calls
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            try:
                if number >= hold_from:
                    assert self.release.wait(timeout=60), "gate never released"
                audio = real(*args, **kwargs)
            finally:
                with self._lock:
                    self.running -= 1
            with self._lock:
                self.completed += 1
            return audio

        monkeypatch.setattr(voice, "phoneme_ids_to_audio", gated)


async def collect(tts: PiperTTS, text: str) -> list[AudioChunk]:
    return [chunk async for chunk in tts.synthesize(text)]


async def join_thread(thread: threading.Thread) -> None:
    """Wait for a worker without blocking the loop (the timeout only guards against a hang)."""
    await anyio.to_thread.run_sync(thread.join, 60)


def workers_of(tts: PiperTTS) -> set[threading.Thread]:
    with tts._workers_lock:
        return set(tts._workers)


async def join_all(tts: PiperTTS) -> None:
    """Wait for every worker of ``tts``, including any started while waiting."""
    while remaining := workers_of(tts):
        for worker in remaining:
            await join_thread(worker)


def test_importing_the_plugin_imports_no_piper_or_onnxruntime() -> None:
    code = (
        "import sys, avatarkit_piper.plugin\n"
        "from avatarkit.plugins import default_registry\n"
        "default_registry().get('tts', 'piper')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'piper', 'onnxruntime', 'avatarkit_piper.tts'} or m == 'avatarkit_piper.tts')\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_the_entry_point_registers_piper(joe: Any) -> None:
    spec = default_registry(refresh=True).get("tts", "piper")
    assert spec.source.distribution == "avatarkit-piper"
    assert spec.options is PiperTTSOptions
    tts = spec.create(rate=1.25)
    assert isinstance(tts, PiperTTS)
    assert tts.sample_rate == 22050
    assert tts.options.rate == 1.25
    assert tts.info.name == "en_US-joe-medium"


async def test_real_speech_of_plausible_length(joe: Any) -> None:
    tts = PiperTTS()
    await tts.start()
    assert tts.voice is joe
    short, longer = await collect(tts, SHORT), await collect(tts, LONGER)
    for chunks, words in ((short, 2), (longer, 17)):
        assert chunks, "no audio"
        assert {(c.sample_rate, c.channels) for c in chunks} == {(22050, 1)}
        assert all(len(c.data) % 2 == 0 and c.duration <= 0.1 + 1e-9 for c in chunks)
        seconds = sum(c.duration for c in chunks)
        assert 0.15 * words < seconds < 1.0 * words + 0.5, (seconds, words)
        samples = pcm(chunks)
        assert rms(samples) > 1000  # speech, not silence (full scale is 32767)
        assert np.max(np.abs(samples)) > 20000  # peak-normalised like Piper does
    assert sum(c.duration for c in longer) > 3 * sum(c.duration for c in short)


async def test_rate_speeds_speech_up(joe: Any) -> None:
    steady = {"noise_scale": 0.0, "noise_w_scale": 0.0}  # deterministic durations
    text = "The quick brown fox jumps over the lazy dog."
    normal = sum(c.duration for c in await collect(PiperTTS(**steady), text))
    fast = sum(c.duration for c in await collect(PiperTTS(rate=2.0, **steady), text))
    assert 0.4 < fast / normal < 0.65


async def test_sentence_silence_is_appended_after_each_sentence(joe: Any) -> None:
    steady = {"noise_scale": 0.0, "noise_w_scale": 0.0}
    text = "Good morning. How are you?"
    plain = pcm(await collect(PiperTTS(**steady), text))
    again = pcm(await collect(PiperTTS(**steady), text))
    padded = pcm(await collect(PiperTTS(sentence_silence=0.25, **steady), text))
    assert len(plain) == len(again)  # no noise: same length every time
    assert len(padded) - len(plain) == 2 * round(0.25 * 22050)  # two sentences
    assert not padded[-round(0.25 * 22050) :].any()
    assert rms(padded) > 1000


async def test_volume_scales_the_level(joe: Any) -> None:
    steady = {"noise_scale": 0.0, "noise_w_scale": 0.0}
    full = pcm(await collect(PiperTTS(**steady), SHORT))
    half = pcm(await collect(PiperTTS(volume=0.5, **steady), SHORT))
    assert len(full) == len(half)
    assert 0.45 < rms(half) / rms(full) < 0.55


async def test_text_without_words_gives_no_audio(joe: Any) -> None:
    tts = PiperTTS()
    assert await collect(tts, "") == []
    assert await collect(tts, "   \n") == []
    assert await collect(tts, "...") == []


async def test_audio_streams_before_the_whole_text_is_synthesised(
    joe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = PiperTTS()
    await tts.start()
    gate = Gate(joe, monkeypatch, hold_from=2)  # phrase 2 waits until we have seen audio
    stream = tts.synthesize(CLAUSES)
    first = await stream.__anext__()
    assert first.duration > 0
    assert gate.completed == 1  # audio arrived while the rest was still to be synthesised
    gate.release.set()
    rest = [chunk async for chunk in stream]
    assert gate.completed == 5  # one per clause
    assert len(rest) > 10  # 100 ms chunks of several seconds of speech
    assert rms(pcm([first, *rest])) > 1000


@pytest.mark.parametrize(("split", "calls"), [(True, 2), (False, 1)])
async def test_split_phrases_decides_how_many_model_calls(
    joe: Any, monkeypatch: pytest.MonkeyPatch, split: bool, calls: int
) -> None:
    gate = Gate(joe, monkeypatch, hold_from=10**6)  # counts, never holds
    chunks = await collect(
        PiperTTS(split_phrases=split), "We open the box very carefully, then we take the parts out."
    )
    assert gate.completed == calls
    assert sum(c.duration for c in chunks) > 2


async def test_closing_the_stream_stops_the_worker(
    joe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = PiperTTS()
    await tts.start()
    gate = Gate(joe, monkeypatch, hold_from=2)
    stream = tts.synthesize(CLAUSES)
    await stream.__anext__()
    (worker,) = workers_of(tts)
    await stream.aclose()  # what a renderer does when interrupted
    gate.release.set()  # let the phrase in flight finish
    await join_thread(worker)
    assert not worker.is_alive()
    assert gate.calls <= 2  # at most the phrase in flight (of 5), nothing after it
    assert not workers_of(tts)


async def test_close_stops_workers_of_streams_left_open(
    joe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = PiperTTS()
    await tts.start()
    gate = Gate(joe, monkeypatch, hold_from=2)
    stream = tts.synthesize(CLAUSES)
    await stream.__anext__()
    (worker,) = workers_of(tts)
    await tts.close()  # the stream itself is still open
    gate.release.set()
    await join_thread(worker)
    assert not worker.is_alive()
    assert gate.calls <= 2
    rest = [chunk async for chunk in stream]  # what was made before the stop, then the end
    assert sum(c.duration for c in rest) < 5


async def test_cancellation_stops_the_worker(joe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tts = PiperTTS()
    await tts.start()
    gate = Gate(joe, monkeypatch, hold_from=2)
    received = []
    with anyio.CancelScope() as scope:
        async for chunk in tts.synthesize(CLAUSES):
            received.append(chunk)
            workers = workers_of(tts)
            scope.cancel()
    assert scope.cancelled_caught
    assert len(received) == 1
    gate.release.set()
    for worker in workers:
        await join_thread(worker)
        assert not worker.is_alive()
    assert gate.calls <= 2


async def test_a_failure_in_synthesis_is_a_provider_error(
    joe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("onnx exploded")

    monkeypatch.setattr(joe, "phoneme_ids_to_audio", broken)
    with pytest.raises(
        ProviderError, match=r"piper: synthesis failed: RuntimeError: onnx exploded"
    ):
        await collect(PiperTTS(), SHORT)


async def test_the_voice_is_loaded_once_and_shared(joe: Any, tmp_path: Path) -> None:
    before = loaded_voices()
    first, second = PiperTTS(rate=1.5), PiperTTS(sentence_silence=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.start)
        tg.start_soon(second.start)
    assert first.voice is second.voice is joe
    assert loaded_voices() == before
    # the same files named another way are still the same voice
    link = tmp_path / "joe.onnx"
    link.symlink_to(bundled_voice_path())
    link.with_name("joe.onnx.json").symlink_to(f"{bundled_voice_path()}.json")
    linked = PiperTTS(voice=link)
    await linked.start()
    assert linked.voice is joe
    assert loaded_voices() == before


async def test_concurrent_requests_take_turns_on_the_model(
    joe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(joe, monkeypatch, hold_from=1)  # the first model run waits for us
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    results: dict[int, list[AudioChunk]] = {}

    async def run(i: int) -> None:
        results[i] = await collect(tts, SHORT)

    async with anyio.create_task_group() as tg:
        for i in range(2):
            tg.start_soon(run, i)
        for _ in range(50):  # give the second worker ample time to reach the model
            await anyio.sleep(0.01)
            if gate.calls > 1:
                break
        assert gate.calls == 1  # it waits for its turn instead of competing for the cores
        gate.release.set()
    assert pcm(results[0]).size == pcm(results[1]).size > 0
    assert (gate.completed, gate.most_running) == (2, 1)


@pytest.mark.parametrize("renderer_rate", [None, 16000])
async def test_a_session_speaks_every_sentence_with_piper(
    joe: Any, renderer_rate: int | None
) -> None:
    reply = "Hello there. This voice runs entirely offline. Goodbye for now!"
    renderer = FakeAudioRenderer(sample_rate=renderer_rate)
    session = AvatarSession(llm=FakeLLM([reply]), tts=PiperTTS(), renderer=renderer)
    async with session:
        assert session.route == "audio"
        spoken = await session.send("Say something.")
    assert spoken == reply
    assert len(renderer.utterances) == 3
    for utterance in renderer.utterances:
        assert not utterance.interrupted
        assert {c.sample_rate for c in utterance.chunks} == {renderer_rate or 22050}
        assert utterance.duration > 0.5
        assert rms(pcm(utterance.chunks)) > 1000


async def test_interrupting_a_session_stops_piper_promptly(
    joe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = PiperTTS()
    renderer = FakeAudioRenderer(realtime=True)
    session = AvatarSession(llm=FakeLLM([f"{CLAUSES} {CLAUSES}"]), tts=tts, renderer=renderer)
    async with session:
        # The first model run goes through; the second is held inside the model (holding the
        # voice's run lock), so the other sentence's worker is left waiting for its turn.
        gate = Gate(joe, monkeypatch, hold_from=2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.send, "Tell me how.")
            # Bounded wait for the first audio to reach the renderer AND the second model run to
            # be held: on a loaded machine the audio can arrive before that run has begun.
            for _ in range(3000):
                if renderer.utterances and renderer.utterances[0].chunks and gate.calls >= 2:
                    break
                await anyio.sleep(0.01)
            assert gate.calls == 2  # the second run is in flight, held inside the model
            workers = workers_of(tts)
            await session.interrupt()
            # the turn ended while Piper's workers were still held: synthesis never blocks
            # the session
            assert len(workers) == 2
            assert all(worker.is_alive() for worker in workers)
        gate.release.set()
        await join_all(tts)  # including any started after the snapshot
        assert not any(worker.is_alive() for worker in workers)
    assert renderer.utterances[0].interrupted
    assert renderer.utterances[0].chunks
    # Two sentences of five clauses each: after the first clause, only the model run in
    # flight at the interrupt finished; the worker waiting for its turn gave up.
    assert gate.calls == 2
