"""The built-in ``console`` renderer: a text renderer for the terminal and offline examples.

It "speaks" each sentence by taking as long as saying it would (at ``words_per_minute``), so
interruption and barge-in behave as with a real avatar; with ``echo`` it also prints each
sentence to standard error as it is spoken. Registered through the same hook as any plugin.
"""

from __future__ import annotations

import sys

import anyio
from pydantic import BaseModel, ConfigDict, Field

from avatarkit.hookspecs import hookimpl
from avatarkit.plugins import ProviderRegistry

__all__ = ["ConsoleRenderer", "ConsoleRendererOptions"]


class ConsoleRendererOptions(BaseModel):
    """Options of the ``console`` renderer."""

    model_config = ConfigDict(extra="forbid")
    words_per_minute: float = Field(
        0.0, ge=0, description="Speaking speed; 0 finishes each sentence at once."
    )
    echo: bool = Field(False, description="Print each spoken sentence to standard error.")


class ConsoleRenderer:
    """Speaks text by waiting as long as a person would take to say it."""

    def __init__(self, words_per_minute: float = 0.0, echo: bool = False) -> None:
        self.words_per_minute = words_per_minute
        self.echo = echo
        self.spoken: list[str] = []
        self._interrupted = anyio.Event()
        self._said = 1.0  # share of the last utterance said

    async def start(self) -> None:
        """Nothing to connect to."""

    async def speak_text(self, text: str) -> None:
        """Say ``text``; returns when done or interrupted."""
        interrupted = self._interrupted = anyio.Event()
        if self.echo:
            sys.stderr.write(f"[avatar] {text}\n")
            sys.stderr.flush()
        self.spoken.append(text)
        words = text.split()
        seconds = len(words) * 60 / self.words_per_minute if self.words_per_minute else 0
        started = anyio.current_time()
        self._said = 0.0
        try:
            with anyio.move_on_after(seconds):
                await interrupted.wait()
        finally:
            elapsed = anyio.current_time() - started
            if not interrupted.is_set() and elapsed >= seconds:
                self._said = 1.0
            else:  # a word a beat: the share of characters in the words said so far
                count = int(len(words) * elapsed / seconds) if seconds else 0
                self._said = len(" ".join(words[:count])) / len(text) if text else 0.0

    def spoken_fraction(self) -> float | None:
        """The share of the last sentence said (:class:`~avatarkit.providers.ReportsProgress`)."""
        return self._said

    async def interrupt(self) -> None:
        """Stop the current sentence now."""
        self._interrupted.set()

    async def close(self) -> None:
        """Nothing to release; safe to call any number of times."""


@hookimpl
def register_providers(registry: ProviderRegistry) -> None:
    registry.renderer(
        "console",
        ConsoleRenderer,
        options=ConsoleRendererOptions,
        description="Text renderer for the terminal, paced at speaking speed (offline).",
    )
