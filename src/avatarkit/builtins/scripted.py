"""The built-in ``scripted`` LLM: deterministic replies from config, for offline demos and tests.

Registered through the same hook as any plugin.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from avatarkit.hookspecs import hookimpl
from avatarkit.plugins import ProviderRegistry
from avatarkit.providers import Message

__all__ = ["Rule", "ScriptedLLM", "ScriptedLLMOptions"]


class Rule(BaseModel):
    """Reply with ``reply`` when the user's message matches ``match`` (a regular expression,
    case-insensitive, searched anywhere in the message)."""

    model_config = ConfigDict(extra="forbid")
    match: str
    reply: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class ScriptedLLMOptions(BaseModel):
    """Options of the ``scripted`` LLM."""

    model_config = ConfigDict(extra="forbid")
    replies: list[str] = Field(
        default_factory=lambda: ["Hello! I am a scripted avatar. Ask me anything."],
        description="Replies used in order (cycling) when no rule matches.",
    )
    rules: list[Rule] = Field(default_factory=list, description="Checked first, in order.")
    delay: float = Field(0.0, ge=0, description="Seconds between streamed words.")

    @field_validator("replies")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one reply")
        return value


class ScriptedLLM:
    """Streams scripted replies word by word."""

    def __init__(
        self,
        replies: Sequence[str] | None = None,
        rules: Sequence[Rule | dict[str, str]] = (),
        delay: float = 0.0,
    ) -> None:
        options = ScriptedLLMOptions.model_validate(
            {"rules": list(rules), "delay": delay}
            | ({"replies": list(replies)} if replies is not None else {})
        )
        self.replies = options.replies
        self.rules = [(re.compile(r.match, re.IGNORECASE), r.reply) for r in options.rules]
        self.delay = options.delay
        self._next = 0

    def reply_for(self, messages: Sequence[Message]) -> str:
        """The reply to the last user message: the first matching rule, else the next reply."""
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        for pattern, reply in self.rules:
            if pattern.search(last_user):
                return reply
        reply = self.replies[self._next % len(self.replies)]
        self._next += 1
        return reply

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        for i, word in enumerate(re.findall(r"\S+\s*", self.reply_for(messages))):
            if self.delay and i:
                await anyio.sleep(self.delay)
            yield word


@hookimpl
def register_providers(registry: ProviderRegistry) -> None:
    registry.llm(
        "scripted",
        ScriptedLLM,
        options=ScriptedLLMOptions,
        description="Deterministic replies from config (offline demos and tests).",
    )
