"""Interrupts that land on the turn they were meant for, one at a time.

A page asks to interrupt (the button, or a new message while the avatar speaks) at any moment;
the session's ``interrupt()`` cuts whatever turn is current when it runs, and a renderer's own
interrupt may take a while (an HTTP call to a cloud avatar). Spawning a task per request lets a
flood of requests pile up, and lets a late one land on the next turn and cut it instead.

:class:`TurnGate` serialises them: requests are O(1) and merge into at most one pending request,
served by one task (:meth:`TurnGate.serve`); a request names the turn running when it was made
and is dropped if that turn is over; and the next turn does not begin until the interrupt in
flight has returned (:meth:`TurnGate.turn`).

Spoken turns take the same road: :class:`SpokenTurns` is what the page's microphone listener
hands its turns, resumed replies and barge-ins to (``session.listen(turns=...)``), so a turn
heard from the microphone is queued, admitted (rate limit, queue bound, drain) and run by the
page's one driver exactly like a typed one, and a voice barge-in is a gate request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import anyio

from avatarkit.errors import AvatarKitError
from avatarkit.session import AvatarSession

__all__ = ["QueuedTurn", "SpokenTurns", "TurnGate", "TurnInput"]

#: Where a turn came from, as ``/metrics`` counts it.
TurnInput = Literal["typed", "spoken"]


@dataclass(eq=False)
class QueuedTurn:
    """One turn waiting for (or run by) the page's driver."""

    text: str
    input: TurnInput = "typed"
    use_llm: bool = True  # False: ``say`` (a spoken reply resumed after a false interruption)
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: str = ""
    error: AvatarKitError | None = None


class TurnGate:
    """The turns of one page's session and the interrupts aimed at them."""

    def __init__(self) -> None:
        self.taken = 0  # turns begun by the driver
        self.in_turn = False
        self._target: int | None = None
        self._wake = anyio.Event()
        self._idle = anyio.Event()  # no interrupt requested or in flight
        self._idle.set()
        self._progress = anyio.Event()

    def progressed(self) -> None:
        """The session's state changed, or a turn ended: waiters re-check."""
        self._progress.set()
        self._progress = anyio.Event()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Around one ``session.send``: waits for an interrupt in flight to return first (it
        was meant for the previous turn), then marks the turn as running."""
        await self._idle.wait()
        self.taken += 1
        self.in_turn = True
        try:
            yield
        finally:
            self.in_turn = False
            self.progressed()

    def request(self) -> None:
        """Cut the turn running now, if any. Synchronous, O(1); merges with a pending one."""
        if not self.in_turn:
            return  # nothing is being said; waiting messages (if any) go next as they should
        self._target = self.taken
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wake.set()

    async def serve(self, session: AvatarSession) -> None:
        """The one task that interrupts ``session``; runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            target, self._target = self._target, None
            if target is not None:
                # The driver may have begun the turn before the session has (it awaits its
                # turn lock): wait for the session's turn to begin or the driver to move on.
                while self.taken == target and self.in_turn and session.state == "idle":
                    await self._progress.wait()
                if self.taken == target and self.in_turn:
                    await session.interrupt()
            if self._target is None:
                self._idle.set()


#: Puts a turn in the page's queue; False when it was refused (the page was told why).
Admit = Callable[[QueuedTurn], Awaitable[bool]]


class SpokenTurns:
    """The :class:`~avatarkit.listening.Turns` of a page's microphone: each turn goes through
    ``admit`` into the page's queue, and waits until the driver has run it, so ``listen``
    returns after the last spoken reply, as it does on a bare session."""

    def __init__(self, admit: Admit, gate: TurnGate) -> None:
        self._admit = admit
        self._gate = gate

    async def send(self, text: str) -> str:
        return await self._run(QueuedTurn(text, "spoken"))

    async def say(self, text: str) -> str:
        return await self._run(QueuedTurn(text, "spoken", use_llm=False))

    async def interrupt(self) -> None:
        self._gate.request()

    async def _run(self, turn: QueuedTurn) -> str:
        if not await self._admit(turn):
            return ""  # refused: not heard as a turn
        await turn.done.wait()
        if turn.error is not None:
            raise turn.error
        return turn.reply
