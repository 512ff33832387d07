"""Entry point of avatarkit-anthropic: registers its providers (imports no vendor SDK)."""

from __future__ import annotations

import avatarkit


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    """Providers are registered here as they land."""
