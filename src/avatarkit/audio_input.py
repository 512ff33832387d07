"""Where the user's voice comes from: a WAV file played as if it were a microphone, or the
microphone itself (through the optional ``sounddevice`` package).

Both yield :class:`~avatarkit.AudioChunk` frames of ``frame_ms``, ready for
:meth:`AvatarSession.listen <avatarkit.AvatarSession.listen>`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from avatarkit.errors import AvatarKitError
from avatarkit.providers import AudioChunk

__all__ = ["MicrophoneError", "check_microphone", "microphone", "read_wav", "wav_frames"]

logger = logging.getLogger(__name__)


class MicrophoneError(AvatarKitError):
    """No microphone can be opened here (no sound device, or no audio library)."""


def read_wav(path: str | Path) -> AudioChunk:
    """The whole of a WAV file as 16-bit audio, channels and rate kept.

    Reads integer PCM of 8, 16, 24 or 32 bits and 32/64-bit float, in plain or
    WAVE_FORMAT_EXTENSIBLE files (what sox writes for stereo). Raises
    :class:`AvatarKitError` naming the file when it cannot be used.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise AvatarKitError(f"{path}: no such file") from None
    except OSError as exc:
        raise AvatarKitError(f"{path}: cannot read it: {exc}") from None
    try:
        fmt, data = _riff_chunks(raw)
    except ValueError as exc:
        raise AvatarKitError(
            f"{path}: not a usable WAV file ({exc}); convert it, e.g. `sox {path} -b 16 out.wav`"
        ) from None
    tag, channels, rate, bits = fmt
    if not data:
        raise AvatarKitError(f"{path}: the file has no audio")
    return AudioChunk(_to_pcm16(data, tag, bits, path), rate, channels)


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def _riff_chunks(raw: bytes) -> tuple[tuple[int, int, int, int], bytes]:
    import struct

    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError("no RIFF/WAVE header")
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise ValueError("short fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's first field
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError("no fmt or data chunk")
    tag, channels, rate, bits = fmt
    if tag not in (_PCM, _FLOAT):
        raise ValueError(f"format {tag} is neither integer PCM nor float")
    if channels < 1 or rate < 1:
        raise ValueError(f"{channels} channels at {rate} Hz")
    return fmt, data


def _to_pcm16(data: bytes, tag: int, bits: int, path: str | Path) -> bytes:
    import numpy as np

    width = bits // 8
    data = data[: len(data) - len(data) % max(width, 1)]
    if tag == _FLOAT and bits in (32, 64):
        samples = np.frombuffer(data, "<f4" if bits == 32 else "<f8")
        return bytes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    if tag == _PCM and bits == 16:
        return data
    if tag == _PCM and bits == 8:  # unsigned
        return ((np.frombuffer(data, np.uint8).astype(np.int16) - 128) << 8).astype("<i2").tobytes()
    if tag == _PCM and bits == 24:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3)
        return bytes(b[:, 1:].copy().view("<i2").reshape(-1).tobytes())  # the top 16 bits
    if tag == _PCM and bits == 32:
        return (np.frombuffer(data, "<i4") >> 16).astype("<i2").tobytes()
    raise AvatarKitError(
        f"{path}: {bits}-bit {'float' if tag == _FLOAT else 'PCM'} is not supported"
    )


async def wav_frames(
    audio: AudioChunk,
    *,
    realtime: bool = True,
    frame_ms: float = 20.0,
    hurry: Callable[[], bool] | None = None,
    hold: Callable[[], bool] | None = None,
) -> AsyncGenerator[AudioChunk, None]:
    """``audio`` in ``frame_ms`` frames: at the pace of speech when ``realtime``, else as fast
    as they are read. Checked before each frame: ``hurry`` may allow skipping ahead even in
    real time (e.g. while nobody speaks and the avatar is idle); ``hold`` pauses the audio
    (e.g. while a turn waits for its transcript), so a slow machine hears the same turns."""
    step = max(1, round(audio.sample_rate * frame_ms / 1000)) * 2 * audio.channels
    frame_seconds = step / (2 * audio.channels * audio.sample_rate)
    deadline = anyio.current_time()
    for offset in range(0, len(audio.data), step):
        while hold is not None and hold():  # noqa: ASYNC110 - a predicate, no event to await
            await anyio.sleep(0.005)
        if realtime and not (hurry is not None and hurry()):
            deadline = max(deadline, anyio.current_time() - 0.2)  # a stall is not caught up
            await anyio.sleep_until(deadline)
        else:
            deadline = anyio.current_time()
            await anyio.lowlevel.checkpoint()
        deadline += frame_seconds
        yield AudioChunk(audio.data[offset : offset + step], audio.sample_rate, audio.channels)


async def microphone(
    *, sample_rate: int = 16000, frame_ms: float = 20.0, device: int | str | None = None
) -> AsyncGenerator[AudioChunk, None]:
    """Frames from a microphone (mono PCM16), until the caller stops iterating.

    Needs the ``sounddevice`` package and a PortAudio input device; raises
    :class:`MicrophoneError` saying which is missing.
    """
    import anyio.from_thread

    sd = _sounddevice()
    name = check_microphone(device)
    blocksize = max(1, round(sample_rate * frame_ms / 1000))
    send, receive = anyio.create_memory_object_stream[AudioChunk](math.inf)
    token = anyio.lowlevel.current_token()

    def callback(data: object, frames: int, time: object, status: object) -> None:
        if status:
            logger.info("microphone: %s", status)
        chunk = AudioChunk(bytes(data), sample_rate)  # type: ignore[call-overload,unused-ignore]
        try:
            anyio.from_thread.run_sync(send.send_nowait, chunk, token=token)
        except Exception:  # the loop is gone or the reader left
            pass

    try:
        stream = sd.RawInputStream(
            samplerate=sample_rate,
            channels=1,
            dtype="int16",
            blocksize=blocksize,
            device=device,
            callback=callback,
        )
    except Exception as exc:
        raise MicrophoneError(f"cannot open the microphone {name!r}: {exc}") from None
    logger.info("listening on %s", name)
    with stream, send, receive:
        async for chunk in receive:
            yield chunk


def check_microphone(device: int | str | None = None) -> str:
    """The name of the input device that :func:`microphone` would open; raises
    :class:`MicrophoneError` saying what is missing when there is none."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device, "input")
    except Exception as exc:
        raise MicrophoneError(
            f"no microphone found ({exc}); use --input-audio FILE.wav instead"
        ) from None
    return str(info.get("name", "?")) if isinstance(info, dict) else "?"


def _sounddevice() -> Any:
    try:
        import sounddevice  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        raise MicrophoneError(
            f"--mic needs the sounddevice package and the PortAudio library ({exc}): "
            "pip install sounddevice (Debian: apt-get install libportaudio2), "
            "or use --input-audio FILE.wav"
        ) from None
    return sounddevice
