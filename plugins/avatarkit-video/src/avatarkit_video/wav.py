"""A mono 16-bit WAV writer whose header is kept true after every write.

The standard library's ``wave`` fixes the sizes in the header only when closed, so a crashed
session would leave a file most readers think is empty; here :meth:`WavWriter.sync` rewrites the
two sizes (and flushes) after each batch of samples.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

__all__ = ["WavWriter"]


class WavWriter:
    """Appends PCM16 mono samples to a WAV file."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.frames = 0
        self._file: BinaryIO | None = path.open("wb")
        self._file.write(self._header(0))
        self._file.flush()

    def _header(self, data_bytes: int) -> bytes:
        rate = self.sample_rate
        return (
            b"RIFF"
            + struct.pack("<I", 36 + data_bytes)
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data"
            + struct.pack("<I", data_bytes)
        )

    def write(self, pcm: bytes) -> None:
        """Append PCM16 mono bytes."""
        if self._file is None:
            raise ValueError("WAV file is closed")
        self._file.write(pcm)
        self.frames += len(pcm) // 2

    def sync(self) -> None:
        """Make the header describe everything written so far and flush to the OS."""
        if self._file is None:
            return
        data_bytes = self.frames * 2
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", data_bytes))
        self._file.seek(0, 2)
        self._file.flush()

    def close(self) -> None:
        """Sync and close (idempotent)."""
        if self._file is None:
            return
        try:
            self.sync()
        finally:
            self._file.close()
            self._file = None
