"""Options of the ``openai`` LLM and TTS, as validated from YAML (imports no vendor SDK)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["OpenAILLMOptions", "OpenAISTTOptions", "OpenAITTSOptions", "ServerVAD"]


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


class ServerVAD(BaseModel):
    """The realtime API's own voice activity detection, which cuts the stream into utterances."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0, le=1, description="server_vad: speech probability.")
    prefix_padding_ms: int = Field(300, ge=0, description="server_vad: audio kept before speech.")
    silence_duration_ms: int = Field(
        500, ge=0, description="server_vad: silence that ends an utterance."
    )
    eagerness: Literal["low", "medium", "high", "auto"] = Field(
        "auto", description="semantic_vad: how soon it decides the user has finished."
    )

    def wire(self) -> dict[str, Any]:
        if self.type == "semantic_vad":
            return {"type": "semantic_vad", "eagerness": self.eagerness}
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
        }


class OpenAISTTOptions(_ClientOptions):
    """Options of the ``openai`` STT: the realtime transcription WebSocket, or whole utterances
    over HTTP (``POST /audio/transcriptions``)."""

    mode: Literal["realtime", "http"] = Field(
        "realtime",
        description="realtime: one WebSocket over the whole microphone stream, interim text "
        "as it is spoken; http: one request per utterance the session's VAD cut.",
    )
    model: str = Field(
        "gpt-4o-mini-transcribe",
        description="gpt-4o-transcribe, gpt-4o-mini-transcribe or whisper-1 (http only).",
    )
    language: str | None = Field(None, description="ISO-639-1 language hint, e.g. en.")
    prompt: str | None = Field(None, description="Words or context to steer the transcription.")
    stream: bool = Field(
        True, description="http mode: stream the text as it is transcribed (SSE deltas)."
    )
    turn_detection: ServerVAD | None = Field(
        default_factory=ServerVAD,
        description="realtime mode: the server's VAD; null commits the audio only at the end.",
    )
    noise_reduction: Literal["near_field", "far_field"] | None = Field(
        "near_field", description="realtime mode: input noise reduction (far_field for rooms)."
    )
    sample_rate: int | None = Field(
        None,
        gt=0,
        description="Rate of the audio sent: realtime needs 24000 (the default); http defaults "
        "to 16000 (sent as WAV).",
    )
    max_reconnects: int = Field(
        3, ge=0, description="realtime: reconnections in a row after a dropped connection."
    )
    replay_seconds: float = Field(
        30.0,
        ge=0,
        description="realtime: audio not yet transcribed, kept and sent again after a "
        "reconnect so nothing said is lost.",
    )
    ping_interval: float | None = Field(
        20.0,
        gt=0,
        description="realtime: seconds between WebSocket pings, keeping the connection alive "
        "while no audio flows; null: none.",
    )
    ping_timeout: float = Field(
        10.0,
        gt=0,
        description="realtime: seconds without an answer to a ping before the connection is "
        "taken for dead and opened again.",
    )
    close_timeout: float = Field(
        10.0, gt=0, description="realtime: seconds to wait for the last transcripts at the end."
    )
