"""A session listening with the real offline stack (Whisper + Silero) to generated speech.

The LLM and renderer are fakes: what is under test is the voice path. The audio is fed as fast
as the session reads it; where a scenario needs the avatar to be speaking, the feeder waits
for that (no wall-clock thresholds).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from avatarkit import AvatarSession, TurnOptions
from avatarkit.events import Event, UserTranscript
from avatarkit.testing import FakeLLM, FakeTextRenderer, wait_until
from avatarkit_whisper.stt import WhisperSTT
from avatarkit_whisper.vad import SileroVAD

LONG_REPLY = (
    "Paris is sunny with a light breeze this afternoon. "
    "Tomorrow brings clouds and a chance of rain in the evening. "
    "The weekend looks warm and bright."
)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def user_messages(session: AvatarSession) -> list[str]:
    return [m.content for m in session.history if m.role == "user"]


def build(
    replies: tuple[str, ...], seconds_per_char: float = 0.0
) -> tuple[AvatarSession, FakeTextRenderer, FakeLLM]:
    renderer = FakeTextRenderer(seconds_per_char=seconds_per_char)
    llm = FakeLLM(replies)
    session = AvatarSession(
        llm=llm, renderer=renderer, stt=WhisperSTT(), vad=SileroVAD(), turn=TurnOptions()
    )
    return session, renderer, llm


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_each_spoken_turn_is_answered_once(
    piper_speech: Any, espeak_speech: Any, kit: Any
) -> None:
    session, renderer, llm = build(("Okay.",))
    gap = kit.silence(1.2)
    finals: list[str] = []

    def on(event: Event) -> None:
        if isinstance(event, UserTranscript) and event.final:
            finals.append(event.text)

    async with session:
        session.on_event(on)
        await session.listen(
            kit.play(
                [
                    kit.silence(0.3),
                    piper_speech.clips[0],
                    gap,
                    espeak_speech.clips[0],
                    gap,
                    piper_speech.clips[1],
                    gap,
                ]
            )
        )
    said = user_messages(session)
    assert len(said) == 3, said
    assert {"weather", "madrid"} <= words(said[0])
    assert {"weather", "london"} <= words(said[1])
    assert {"book", "history"} <= words(said[2])
    assert len(llm.calls) == 3
    assert renderer.spoken == ["Okay."] * 3
    assert finals == said


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_speech_during_the_reply_interrupts_it(
    piper_speech: Any, espeak_speech: Any, kit: Any
) -> None:
    session, renderer, _llm = build((LONG_REPLY, "Sorry."), seconds_per_char=0.03)

    async def first_sentence_said() -> None:
        await wait_until(lambda: len(renderer.completed) >= 1, within=60)

    async with session:
        await session.listen(
            kit.play(
                [
                    piper_speech.clips[0],
                    kit.silence(1.0),
                    first_sentence_said,
                    espeak_speech.clips[2],  # "Stop talking please."
                    kit.silence(1.2),
                ]
            )
        )
    assert renderer.interrupts >= 1
    said = user_messages(session)
    assert len(said) == 2, said
    assert {"stop", "talking"} <= words(said[1])
    replies = [m.content for m in session.history if m.role == "assistant"]
    assert replies[0].startswith("Paris is sunny with a light breeze this afternoon.")
    assert "weekend" not in replies[0]  # history holds only what was said
    assert replies[-1] == "Sorry."


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_cough_shorter_than_the_minimum_does_not_interrupt(
    piper_speech: Any, kit: Any
) -> None:
    session, renderer, llm = build((LONG_REPLY,), seconds_per_char=0.01)

    async def speaking() -> None:
        await wait_until(lambda: session.state == "speaking", within=60)

    async def reply_over() -> None:
        await wait_until(lambda: session.state == "idle", within=60)

    async with session:
        await session.listen(
            kit.play(
                [
                    piper_speech.clips[0],
                    kit.silence(1.0),
                    speaking,
                    kit.noise_burst(0.25),  # under min_interruption_speech (0.5 s)
                    kit.silence(1.0),
                    reply_over,
                ]
            )
        )
    assert renderer.interrupts == 0
    assert len(llm.calls) == 1
    assert [m.content for m in session.history if m.role == "assistant"] == [LONG_REPLY]


def test_the_offline_example_answers_a_recording(
    tmp_path: Any, piper_speech: Any, espeak_speech: Any, kit: Any
) -> None:
    """`avatarkit run examples/voice.yaml --input-audio speech.wav --fast`, as documented."""
    import os
    import struct
    import subprocess
    import sys
    from pathlib import Path

    gap = kit.silence(1.0)
    mono = kit.silence(0.5) + espeak_speech.clips[0] + gap + piper_speech.clips[1] + gap
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))  # stereo, 22.05 kHz
    fmt = struct.pack("<HHIIHH", 1, 2, kit.RATE, kit.RATE * 4, 4, 16)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(stereo))
    wav = tmp_path / "speech.wav"
    wav.write_bytes(
        b"RIFF" + struct.pack("<I", 4 + len(body) + len(stereo)) + b"WAVE" + body + stereo
    )
    example = Path(__file__).parents[3] / "examples" / "voice.yaml"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "avatarkit",
            "run",
            str(example),
            "--input-audio",
            str(wav),
            "--fast",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CONSOLE_WPM": "0", "SCRIPTED_DELAY": "0"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("you> ")
    assert {"weather", "london"} <= words(lines[0])
    assert lines[1] == (
        "avatar> I cannot look outside, but I hope it is sunny where you are. "
        "Is there anything else?"
    )
    assert {"book", "history"} <= words(lines[2])
    assert lines[3].startswith("avatar> A good history book is Guns, Germs and Steel.")
