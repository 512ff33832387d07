"""Entry point of avatarkit-heygen: registers its providers (imports no vendor SDK)."""

from __future__ import annotations

import avatarkit


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    """Providers are registered here as they land."""
    from avatarkit_heygen.liveavatar_options import LiveAvatarOptions  # pydantic only

    registry.renderer(
        "liveavatar",
        "avatarkit_heygen.liveavatar:LiveAvatarRenderer",
        options=LiveAvatarOptions,
        description="HeyGen LiveAvatar: its own voice (prefer: text) or your TTS (prefer: audio).",
    )
