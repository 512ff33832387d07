"""avatarkit: real-time conversational AI avatars.

Importing this package is cheap: no provider SDK is imported until a provider is built.
"""

from avatarkit._version import __version__
from avatarkit.config import load_session
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
from avatarkit.hookspecs import hookimpl, hookspec
from avatarkit.listening import TurnOptions
from avatarkit.plugins import ProviderRegistry
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
from avatarkit.session import AvatarSession

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
