"""A turn's sentences on their way from the producer to the speaker.

Every turn of every session hands its sentences over, so the hand-over is one small object (a
deque and, only while the speaker waits, an event) instead of an anyio memory stream (shared
state, two endpoints, waiter maps, and a ``WouldBlock`` with its traceback held for as long as
the receiver waits). Objects that live as long as a turn reach the collector's oldest
generation, and with a thousand sessions in a process each one counts towards its pauses.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["Handoff"]

T = TypeVar("T")


class Handoff(Generic[T]):
    """One producer ``put``s and ``close``s; one consumer ``get``s until ``None`` and ``leave``s
    when it stops taking (``put`` then answers ``False``: nobody will take the item)."""

    __slots__ = ("_closed", "_gone", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._closed = False
        self._gone = False
        self._waiter: anyio.Event | None = None

    def put(self, item: T) -> bool:
        """Hand ``item`` on; ``False`` if the consumer left (or the producer already closed)."""
        if self._gone or self._closed:
            return False
        self._items.append(item)
        self._wake()
        return True

    def close(self) -> None:
        """No more items will come (idempotent)."""
        self._closed = True
        self._wake()

    @property
    def gone(self) -> bool:
        """The consumer left."""
        return self._gone

    async def get(self) -> T | None:
        """The next item, or ``None`` once closed and empty. A checkpoint, as a stream's
        ``receive`` is: a cancelled turn stops here, and the producer gets to run."""
        await anyio.lowlevel.checkpoint()
        while not self._items:
            if self._closed or self._gone:
                return None
            waiter = self._waiter = anyio.Event()
            await waiter.wait()
        return self._items.popleft()

    def leave(self) -> list[T]:
        """The consumer stops taking: the items it never took, for it to discard."""
        self._gone = True
        left = list(self._items)
        self._items.clear()
        return left

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None
