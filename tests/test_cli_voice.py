"""`avatarkit run FILE --input-audio WAV | --mic`: WAV reading, printing, errors."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import avatarkit.cli as cli
from avatarkit import AvatarSession, TurnOptions
from avatarkit.audio_input import MicrophoneError, microphone, read_wav, wav_frames
from avatarkit.errors import AvatarKitError
from avatarkit.providers import AudioChunk
from avatarkit.testing import FakeLLM, FakeSTT, FakeTextRenderer, FakeVAD, tone


def wav_bytes(
    samples: list[float], *, rate: int, channels: int, bits: int, fmt: int = 1, ext: bool = False
) -> bytes:
    """A WAV file of ``samples`` (interleaved, -1..1) written by hand, in any layout."""
    if fmt == 3:
        code = "<f" if bits == 32 else "<d"
        data = b"".join(struct.pack(code, s) for s in samples)
    elif bits == 8:
        data = bytes(int(s * 127) + 128 for s in samples)
    else:
        scale = 2 ** (bits - 1) - 1
        data = b"".join(int(s * scale).to_bytes(bits // 8, "little", signed=True) for s in samples)
    block = channels * bits // 8
    if ext:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_body = (
            struct.pack(
                "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 3
            )
            + struct.pack("<H", fmt)
            + guid_tail
        )
    else:
        fmt_body = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    chunks += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk readers must skip
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


SINE = [0.5 * math.sin(2 * math.pi * 440 * i / 8000) for i in range(800)]


@pytest.mark.parametrize(
    ("bits", "fmt", "ext", "channels"),
    [
        (16, 1, False, 1),
        (8, 1, False, 1),
        (24, 1, False, 2),
        (32, 1, False, 1),
        (32, 3, False, 1),
        (64, 3, False, 1),
        (16, 1, True, 2),  # WAVE_FORMAT_EXTENSIBLE, as sox writes stereo
        (32, 3, True, 1),
    ],
)
def test_read_wav_formats(tmp_path: Path, bits: int, fmt: int, ext: bool, channels: int) -> None:
    interleaved = [s for s in SINE for _ in range(channels)]
    path = tmp_path / "a.wav"
    path.write_bytes(
        wav_bytes(interleaved, rate=8000, channels=channels, bits=bits, fmt=fmt, ext=ext)
    )
    chunk = read_wav(path)
    assert (chunk.sample_rate, chunk.channels, chunk.frames) == (8000, channels, 800)
    got = struct.unpack(f"<{800 * channels}h", chunk.data)
    tolerance = 400 if bits == 8 else 3
    for want, have in zip(interleaved, got, strict=True):
        assert abs(want * 32767 - have) <= tolerance


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no RIFF/WAVE header"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "no fmt or data chunk"),
        (None, "no such file"),
    ],
)
def test_read_wav_errors_name_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AvatarKitError, match=message) as info:
        read_wav(path)
    assert str(path) in str(info.value)


def test_compressed_wav_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "adpcm.wav"
    path.write_bytes(wav_bytes([0.0] * 10, rate=8000, channels=1, bits=16, fmt=2))
    with pytest.raises(AvatarKitError, match="format 2"):
        read_wav(path)


async def test_wav_frames_pace_and_hold() -> None:
    audio = AudioChunk(bytes(2 * 1600), 16000)  # 0.1 s
    fast = [c async for c in wav_frames(audio, realtime=False)]
    assert [c.frames for c in fast] == [320] * 5
    held = {"n": 3}

    def hold() -> bool:
        held["n"] -= 1
        return held["n"] > 0

    frames = [c async for c in wav_frames(audio, realtime=False, hold=hold)]
    assert b"".join(c.data for c in frames) == audio.data
    assert held["n"] < 0  # asked before every frame


def voice_session() -> AvatarSession:
    return AvatarSession(
        llm=FakeLLM(["Nice to hear you.", "Goodbye then."]),
        renderer=FakeTextRenderer(),
        stt=FakeSTT(["hello avatar", "bye"]),
        vad=FakeVAD(),
        turn=TurnOptions(),
    )


def speech_wav(tmp_path: Path) -> Path:
    rate = 22050
    quiet = bytes(2 * round(0.8 * rate))
    mono = quiet + tone(0.6, rate) + quiet + tone(0.5, rate) + quiet
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))
    path = tmp_path / "speech.wav"
    block = 4
    fmt = struct.pack("<HHIIHH", 1, 2, rate, rate * block, block, 16)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(stereo)) + stereo
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    return path


@pytest.mark.parametrize("fast", [True, False])
def test_run_input_audio_prints_the_conversation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fast: bool
) -> None:
    monkeypatch.setattr(cli, "_load", lambda file: voice_session())
    args = ["run", "x.yaml", "--input-audio", str(speech_wav(tmp_path))]
    assert cli.main([*args, "--fast"] if fast else args) == cli.EXIT_OK
    assert capsys.readouterr().out.splitlines() == [
        "you> hello avatar",
        "avatar> Nice to hear you.",
        "you> bye",
        "avatar> Goodbye then.",
    ]


def test_run_input_audio_needs_an_stt_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer())
    monkeypatch.setattr(cli, "_load", lambda file: plain)
    code = cli.main(["run", "x.yaml", "--input-audio", str(speech_wav(tmp_path))])
    assert code == cli.EXIT_ERROR
    assert "has no `stt:` section" in capsys.readouterr().err


def test_fast_without_input_audio_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "x.yaml", "--fast"]) == cli.EXIT_USAGE
    assert "--fast only applies to --input-audio" in capsys.readouterr().err


def test_mic_and_input_audio_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "x.yaml", "--mic", "--input-audio", "a.wav"])
    assert info.value.code == 2
    capsys.readouterr()


def test_mic_without_sounddevice_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as when not installed
    monkeypatch.setattr(cli, "_load", lambda file: voice_session())
    assert cli.main(["run", "x.yaml", "--mic"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "--mic needs the sounddevice package" in err
    assert "--input-audio" in err


async def test_mic_without_an_input_device_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.ModuleType("sounddevice")

    def query_devices(device: object, kind: str) -> object:
        raise ValueError("No input device matching ''")

    fake.query_devices = query_devices  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    frames = microphone()
    with pytest.raises(MicrophoneError, match="no microphone found"):
        await frames.__anext__()
    await frames.aclose()
    # and the CLI says so before starting anything
    session = voice_session()
    monkeypatch.setattr(cli, "_load", lambda file: session)
    assert await anyio.to_thread.run_sync(cli.main, ["run", "x.yaml", "--mic"]) == 1
    assert session.stt.started == 0  # type: ignore[union-attr]


async def test_a_failing_audio_source_ends_listen_with_an_avatarkit_error() -> None:
    session = voice_session()

    async def broken() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(tone(0.1, 16000), 16000)
        raise OSError("device unplugged")

    async with session:
        with pytest.raises(AvatarKitError, match="device unplugged"):
            await session.listen(broken())


async def test_mic_frames_flow_from_the_device_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in PortAudio stream calls back from its own thread, as the real one does."""
    import threading

    fake = types.ModuleType("sounddevice")
    fake.query_devices = lambda device, kind: {"name": "test mic"}  # type: ignore[attr-defined]

    class RawInputStream:
        def __init__(self, **kwargs: object) -> None:
            self.callback = kwargs["callback"]
            self.blocksize = kwargs["blocksize"]
            self.thread = threading.Thread(target=self._run)

        def _run(self) -> None:
            for i in range(3):
                self.callback(bytes([i]) * 2 * self.blocksize, self.blocksize, None, None)  # type: ignore[operator]

        def __enter__(self) -> RawInputStream:
            self.thread.start()
            return self

        def __exit__(self, *exc: object) -> None:
            self.thread.join()

    fake.RawInputStream = RawInputStream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    got = []
    frames = microphone(sample_rate=16000)
    async for chunk in frames:
        got.append(chunk)
        if len(got) == 3:
            break
    await frames.aclose()
    assert [c.data[0] for c in got] == [0, 1, 2]
    assert all(c.frames == 320 and c.sample_rate == 16000 for c in got)


def test_run_help_lists_the_voice_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "avatarkit", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for flag in ("--input-audio", "--mic", "--fast"):
        assert flag in out


def test_fast_with_a_streaming_stt_that_never_finalises_does_not_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Mute(FakeSTT):
        async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[object]:
            async for _ in audio:
                pass
            if False:  # pragma: no cover - an async generator that yields nothing
                yield None

    session = AvatarSession(
        llm=FakeLLM(), renderer=FakeTextRenderer(), stt=Mute(streaming=True), vad=FakeVAD()
    )
    monkeypatch.setattr(cli, "_load", lambda file: session)
    path = speech_wav(tmp_path)
    assert cli.main(["run", "x.yaml", "--input-audio", str(path), "--fast"]) == cli.EXIT_OK
    assert capsys.readouterr().out == ""
