"""Entry point of avatarkit-openai: registers its providers (imports no vendor SDK)."""

from __future__ import annotations

import avatarkit
from avatarkit_openai.options import OpenAILLMOptions, OpenAISTTOptions, OpenAITTSOptions


@avatarkit.hookimpl
def register_providers(registry: avatarkit.ProviderRegistry) -> None:
    registry.llm(
        "openai",
        "avatarkit_openai.llm:OpenAILLM",
        options=OpenAILLMOptions,
        description="Chat completions from OpenAI or any compatible server (Ollama, vLLM...).",
    )
    registry.tts(
        "openai",
        "avatarkit_openai.tts:OpenAITTS",
        options=OpenAITTSOptions,
        description="OpenAI speech endpoint, streamed as 24 kHz PCM.",
    )
    registry.stt(
        "openai",
        "avatarkit_openai.stt:OpenAISTT",
        options=OpenAISTTOptions,
        description="OpenAI transcription: realtime WebSocket, or HTTP per utterance.",
    )
