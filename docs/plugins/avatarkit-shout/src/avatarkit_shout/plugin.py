"""Entry point of avatarkit-shout: registers the provider, imports nothing heavy."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

import avatarkit


class ShoutOptions(BaseModel):
    """What a session file may set under `renderer:` for provider `shout`."""

    model_config = ConfigDict(extra="forbid")  # a typo in YAML is an error, not ignored
    suffix: str = Field("!", description="Added to every sentence.")
    seconds_per_word: float = Field(0.0, ge=0, description="Speaking time per word.")


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.renderer(
        "shout",
        "avatarkit_shout.renderer:ShoutRenderer",  # imported only when a session uses it
        options=ShoutOptions,
        description="Shouts every sentence in the terminal.",
    )
