"""One sentence's audio on its way from the TTS task to the speaker.

An anyio memory stream costs a loop round (a checkpoint) for every chunk received, and the
audio route receives 25 chunks a second per speaking session; this pipe hands over what is
already buffered without one, and waits only when the TTS is behind. It has one producer (the
sentence's TTS task) and one consumer (the speaker), both in the same turn's task group.
"""

from __future__ import annotations

from collections import deque

import anyio

from avatarkit.providers import AudioChunk

__all__ = ["AudioPipe"]


class AudioPipe:
    """A queue of chunks with an end: the TTS ``put``s and ``end``s, the speaker ``pop``s and
    ``wait``s; ``drop`` (speaker) discards the rest and makes ``put`` refuse (the TTS stops)."""

    __slots__ = ("_chunks", "_ended", "_waiter", "dropped")

    def __init__(self) -> None:
        self._chunks: deque[AudioChunk] = deque()
        self._ended = False
        self._waiter: anyio.Event | None = None
        self.dropped = False

    def put(self, chunk: AudioChunk) -> bool:
        """Queue ``chunk``; ``False`` once the speaker dropped the sentence."""
        if self.dropped:
            return False
        self._chunks.append(chunk)
        self._wake()
        return True

    def end(self) -> None:
        """No more audio will come (the TTS finished, failed or was cancelled)."""
        self._ended = True
        self._wake()

    def drop(self) -> None:
        """The sentence will not be (further) spoken: free its audio and stop its TTS."""
        self.dropped = self._ended = True
        self._chunks.clear()
        self._wake()

    def pop(self) -> AudioChunk | None:
        """The next chunk if one is buffered, else ``None`` (see :attr:`finished`)."""
        return self._chunks.popleft() if self._chunks else None

    def pop_matching(self, sample_rate: int, channels: int) -> AudioChunk | None:
        """The next chunk if one is buffered in this format, else ``None``."""
        if self._chunks:
            head = self._chunks[0]
            if head.sample_rate == sample_rate and head.channels == channels:
                return self._chunks.popleft()
        return None

    @property
    def finished(self) -> bool:
        """Every chunk was taken and no more will come."""
        return self._ended and not self._chunks

    async def wait(self) -> None:
        """Return once a chunk is buffered or the audio has ended."""
        if self._chunks or self._ended:
            return
        waiter = self._waiter = anyio.Event()
        await waiter.wait()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None
