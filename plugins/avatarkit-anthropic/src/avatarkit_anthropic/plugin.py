"""Entry point of avatarkit-anthropic: registers its providers (imports no vendor SDK)."""

from __future__ import annotations

import avatarkit
from avatarkit_anthropic.options import AnthropicLLMOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.llm(
        "anthropic",
        "avatarkit_anthropic.llm:AnthropicLLM",
        options=AnthropicLLMOptions,
        description="Claude through the Messages API, streamed.",
    )
