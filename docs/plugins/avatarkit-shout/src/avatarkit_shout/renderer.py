"""The shout renderer: speaks each sentence by printing it in capitals."""

from __future__ import annotations

import sys

import anyio


class ShoutRenderer:
    """A text renderer: the session hands it sentences, so no TTS is needed."""

    def __init__(self, suffix: str = "!", seconds_per_word: float = 0.0) -> None:
        self.suffix = suffix
        self.seconds_per_word = seconds_per_word
        self._stop = anyio.Event()

    async def start(self) -> None:
        """Nothing to connect to; a real renderer opens its session here."""

    async def speak_text(self, text: str) -> None:
        """Shout ``text``, then take as long as saying it would (unless interrupted)."""
        self._stop = stop = anyio.Event()
        sys.stdout.write(text.upper().rstrip(".!?") + self.suffix + "\n")
        sys.stdout.flush()
        with anyio.move_on_after(len(text.split()) * self.seconds_per_word):
            await stop.wait()

    async def interrupt(self) -> None:
        """Stop the sentence being spoken: ``speak_text`` returns at once."""
        self._stop.set()

    async def close(self) -> None:
        """Release resources; must be safe to call twice and when cancelled."""
