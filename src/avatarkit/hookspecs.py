"""The plugin contract. Plugins implement these with ``@avatarkit.hookimpl``.

A plugin distribution declares ``[project.entry-points.avatarkit] NAME = "package.plugin"``; that
module holds the hook implementations. Hooks are synchronous registration calls: cheap, no I/O,
and no vendor SDK imports (pass ``"package.module:Class"`` strings as factories instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from avatarkit.plugins import ProviderRegistry

__all__ = ["hookimpl", "hookspec", "register_providers"]

hookspec = pluggy.HookspecMarker("avatarkit")
hookimpl = pluggy.HookimplMarker("avatarkit")


@hookspec
def register_providers(registry: ProviderRegistry) -> None:
    """Register providers with ``registry.llm/tts/renderer/stt/vad``."""
