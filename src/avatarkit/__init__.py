"""avatarkit: real-time conversational AI avatars.

Importing this package is cheap: the public names below are loaded on first use (module
``__getattr__``), and no provider SDK is imported until a provider is built. The distribution is
``avatarkit-core``; PyPI's ``avatarkit`` is an unrelated project, detected here when installed
beside it.
"""

from __future__ import annotations

import importlib
import warnings

from avatarkit import _install
from avatarkit._version import DISTRIBUTION as _DISTRIBUTION  # noqa: F401  (read by _install)
from avatarkit._version import __version__

# Not `typing.TYPE_CHECKING`: importing typing is most of an otherwise empty import. mypy
# treats any name TYPE_CHECKING as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from avatarkit.config import (
        load_session,
    )
    from avatarkit.errors import (
        AvatarKitError,
        CapabilityError,
        ConfigError,
        PluginError,
        ProviderConnectionError,
        ProviderError,
        ProviderHTTPError,
        ProviderNotFound,
        ProviderTimeout,
        SessionError,
    )
    from avatarkit.events import (
        ErrorEvent,
        Event,
        SentenceEnded,
        SentenceStarted,
        StateChanged,
        TextDelta,
        TurnMetrics,
        UserSpeechEnded,
        UserSpeechStarted,
        UserTranscript,
        VoiceMetrics,
    )
    from avatarkit.hookspecs import (
        hookimpl,
        hookspec,
    )
    from avatarkit.listening import (
        TurnOptions,
    )
    from avatarkit.plugins import (
        ProviderRegistry,
    )
    from avatarkit.providers import (
        LLM,
        STT,
        TTS,
        VAD,
        AudioChunk,
        Message,
        Renderer,
        RendererCapabilities,
        SpeaksAudio,
        SpeaksText,
        SpeechEvent,
        Transcript,
        ViewerConnection,
        WordTiming,
        renderer_capabilities,
    )
    from avatarkit.session import (
        AvatarSession,
    )

#: Public name -> the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "load_session": "avatarkit.config",
    "AvatarKitError": "avatarkit.errors",
    "CapabilityError": "avatarkit.errors",
    "ConfigError": "avatarkit.errors",
    "PluginError": "avatarkit.errors",
    "ProviderConnectionError": "avatarkit.errors",
    "ProviderError": "avatarkit.errors",
    "ProviderHTTPError": "avatarkit.errors",
    "ProviderNotFound": "avatarkit.errors",
    "ProviderTimeout": "avatarkit.errors",
    "SessionError": "avatarkit.errors",
    "ErrorEvent": "avatarkit.events",
    "Event": "avatarkit.events",
    "SentenceEnded": "avatarkit.events",
    "SentenceStarted": "avatarkit.events",
    "StateChanged": "avatarkit.events",
    "TextDelta": "avatarkit.events",
    "TurnMetrics": "avatarkit.events",
    "UserSpeechEnded": "avatarkit.events",
    "UserSpeechStarted": "avatarkit.events",
    "UserTranscript": "avatarkit.events",
    "VoiceMetrics": "avatarkit.events",
    "TurnOptions": "avatarkit.listening",
    "hookimpl": "avatarkit.hookspecs",
    "hookspec": "avatarkit.hookspecs",
    "ProviderRegistry": "avatarkit.plugins",
    "LLM": "avatarkit.providers",
    "TTS": "avatarkit.providers",
    "AudioChunk": "avatarkit.providers",
    "Message": "avatarkit.providers",
    "Renderer": "avatarkit.providers",
    "RendererCapabilities": "avatarkit.providers",
    "SpeaksAudio": "avatarkit.providers",
    "SpeaksText": "avatarkit.providers",
    "ViewerConnection": "avatarkit.providers",
    "STT": "avatarkit.providers",
    "VAD": "avatarkit.providers",
    "SpeechEvent": "avatarkit.providers",
    "Transcript": "avatarkit.providers",
    "WordTiming": "avatarkit.providers",
    "renderer_capabilities": "avatarkit.providers",
    "AvatarSession": "avatarkit.session",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'avatarkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _warn_if_foreign_beside() -> None:
    version = _install.foreign_beside(__path__[0])
    if version is not None:
        _install.warned = True
        warnings.warn(
            _install.foreign_message(version, ours=True),
            _install.InstallConflictWarning,
            stacklevel=3,
        )


_warn_if_foreign_beside()

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "VAD",
    "AudioChunk",
    "AvatarKitError",
    "AvatarSession",
    "CapabilityError",
    "ConfigError",
    "ErrorEvent",
    "Event",
    "Message",
    "PluginError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderNotFound",
    "ProviderRegistry",
    "ProviderTimeout",
    "Renderer",
    "RendererCapabilities",
    "SentenceEnded",
    "SentenceStarted",
    "SessionError",
    "SpeaksAudio",
    "SpeaksText",
    "SpeechEvent",
    "StateChanged",
    "TextDelta",
    "Transcript",
    "TurnMetrics",
    "TurnOptions",
    "UserSpeechEnded",
    "UserSpeechStarted",
    "UserTranscript",
    "ViewerConnection",
    "VoiceMetrics",
    "WordTiming",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_session",
    "renderer_capabilities",
]
