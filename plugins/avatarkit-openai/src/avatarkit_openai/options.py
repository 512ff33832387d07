"""Options of the ``openai`` LLM and TTS, as validated from YAML (imports no vendor SDK)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["OpenAILLMOptions", "OpenAITTSOptions"]


class _ClientOptions(BaseModel):
    """How to reach the service: shared by the LLM and the TTS."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(
        None,
        description="API key; defaults to $OPENAI_API_KEY. Not needed for a server on this "
        "machine (base_url on localhost), e.g. Ollama.",
    )
    base_url: str | None = Field(
        None,
        description="Another OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, LM Studio, "
        "OpenRouter, Azure v1); defaults to $OPENAI_BASE_URL or api.openai.com.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every request."
    )
    timeout: float = Field(
        60.0, gt=0, description="Seconds to wait for a connection or for the next bytes."
    )
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries of 408/409/429/5xx and connection errors, with the SDK's backoff.",
    )


class OpenAILLMOptions(_ClientOptions):
    """Options of the ``openai`` LLM (chat completions, streamed)."""

    model: str = Field(description="Model name, e.g. gpt-5.4-mini, or llama3.2 on Ollama.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, description="Upper bound on the reply's tokens.")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra JSON fields for the request body (server-specific parameters).",
    )


class OpenAITTSOptions(_ClientOptions):
    """Options of the ``openai`` TTS (the speech endpoint, streamed as raw PCM)."""

    model: str = Field("gpt-4o-mini-tts", description="Speech model, e.g. gpt-4o-mini-tts.")
    voice: str = Field("alloy", description="Voice name, e.g. alloy, coral, sage.")
    speed: float | None = Field(None, ge=0.25, le=4.0)
    instructions: str | None = Field(
        None, description="How to speak (tone, accent); not supported by tts-1 and tts-1-hd."
    )
    sample_rate: int = Field(
        24000, gt=0, description="Rate of the server's PCM; OpenAI sends 24 kHz 16-bit mono."
    )
