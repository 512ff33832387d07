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
    ``wait``s; ``drop`` (speaker) discards the rest and makes ``put`` refuse (the TTS stops).

    Buffered audio is kept as the chunks' ``bytes``, not tracked by the garbage collector: a
    sentence buffered for seconds would otherwise put a chunk object per 40 ms into the oldest
    generation, whose collections pause every session of the process. A chunk object is kept
    only where the format changes, and for a subclass of :class:`AudioChunk` (it may carry more
    than audio), which is handed on as it came and never joined with others.
    """

    __slots__ = ("_ended", "_in_format", "_items", "_out_format", "_waiter", "dropped")

    def __init__(self) -> None:
        self._items: deque[bytes | AudioChunk] = deque()
        self._in_format: tuple[int, int] | None = None  # of the last chunk put
        self._out_format = (0, 1)  # of the last chunk popped
        self._ended = False
        self._waiter: anyio.Event | None = None
        self.dropped = False

    def put(self, chunk: AudioChunk) -> bool:
        """Queue ``chunk``; ``False`` once the speaker dropped the sentence."""
        if self.dropped:
            return False
        form = (chunk.sample_rate, chunk.channels)
        if form == self._in_format and type(chunk) is AudioChunk and type(chunk.data) is bytes:
            self._items.append(chunk.data)
        else:
            self._items.append(chunk)
            self._in_format = form
        if self._waiter is not None:
            self._wake()
        return True

    def end(self) -> None:
        """No more audio will come (the TTS finished, failed or was cancelled)."""
        self._ended = True
        self._wake()

    def drop(self) -> None:
        """The sentence will not be (further) spoken: free its audio and stop its TTS."""
        self.dropped = self._ended = True
        self._items.clear()
        self._wake()

    def pop(self) -> AudioChunk | None:
        """The next chunk if one is buffered, else ``None`` (see :attr:`finished`)."""
        if not self._items:
            return None
        item = self._items.popleft()
        if type(item) is bytes:
            return AudioChunk(item, *self._out_format)
        assert isinstance(item, AudioChunk)
        self._out_format = (item.sample_rate, item.channels)
        return item

    def peek_data(self, sample_rate: int, channels: int) -> bytes | None:
        """The data of the next chunk if one is buffered in this format, else ``None``."""
        if not self._items:
            return None
        item = self._items[0]
        if type(item) is bytes:
            return item if self._out_format == (sample_rate, channels) else None
        assert isinstance(item, AudioChunk)
        if type(item) is not AudioChunk or (item.sample_rate, item.channels) != (
            sample_rate,
            channels,
        ):
            return None  # a subclass is handed on whole, never joined
        return item.data

    def pop_data(self) -> bytes:
        """Take the chunk :meth:`peek_data` returned."""
        item = self._items.popleft()
        if type(item) is bytes:
            return item
        assert isinstance(item, AudioChunk)
        self._out_format = (item.sample_rate, item.channels)
        return item.data

    @property
    def finished(self) -> bool:
        """Every chunk was taken and no more will come."""
        return self._ended and not self._items

    async def wait(self) -> None:
        """Return once a chunk is buffered or the audio has ended."""
        if self._items or self._ended:
            return
        waiter = self._waiter = anyio.Event()
        await waiter.wait()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None
