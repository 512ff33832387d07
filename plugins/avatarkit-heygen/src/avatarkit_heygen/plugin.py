"""Entry point of avatarkit-heygen: registers its providers (imports no vendor SDK)."""

from __future__ import annotations

import avatarkit
from avatarkit_heygen.heygen_options import HeyGenRendererOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.renderer(
        "heygen",
        "avatarkit_heygen.heygen:HeyGenRenderer",
        options=HeyGenRendererOptions,
        description="HeyGen streaming avatar: speaks text itself (no TTS), video via LiveKit",
    )
    from avatarkit_heygen.liveavatar_options import LiveAvatarOptions  # pydantic only

    registry.renderer(
        "liveavatar",
        "avatarkit_heygen.liveavatar:LiveAvatarRenderer",
        options=LiveAvatarOptions,
        description="HeyGen LiveAvatar: its own voice (prefer: text) or your TTS (prefer: audio).",
    )
