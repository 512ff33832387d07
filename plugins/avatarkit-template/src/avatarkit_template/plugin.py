"""A copy-me plugin: one LLM that echoes the user, registered in a dozen lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import avatarkit


class EchoLLM:
    """Replies with what the user said."""

    async def stream(self, messages: Sequence[avatarkit.Message]) -> AsyncIterator[str]:
        yield f"You said: {messages[-1].content}"


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.llm("echo", EchoLLM, description="Repeats the user's words (template plugin).")
