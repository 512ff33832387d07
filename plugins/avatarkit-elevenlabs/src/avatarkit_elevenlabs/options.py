"""Options of the ElevenLabs TTS providers, as validated from YAML (imports no client library)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["ElevenLabsHTTPOptions", "ElevenLabsOptions", "VoiceSettings"]

#: The raw PCM rates ElevenLabs streams (``output_format=pcm_<rate>``).
SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]


class VoiceSettings(BaseModel):
    """How the voice speaks; unset fields keep the voice's own settings."""

    model_config = ConfigDict(extra="forbid")

    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)
    style: float | None = Field(None, ge=0, le=1)
    speed: float | None = Field(None, ge=0.7, le=1.2)
    use_speaker_boost: bool | None = None


class ElevenLabsHTTPOptions(BaseModel):
    """Options of ``elevenlabs-http`` (and the shared ones of ``elevenlabs``)."""

    model_config = ConfigDict(extra="forbid")

    voice_id: str = Field(min_length=1, description="The voice, e.g. JBFqnCBsd6RMkjVDRZzb.")
    model: str = Field("eleven_flash_v2_5", description="Model id, e.g. eleven_flash_v2_5.")
    sample_rate: SampleRate = Field(24000, description="Rate of the PCM asked for.")
    voice_settings: VoiceSettings = Field(default_factory=VoiceSettings)
    language_code: str | None = Field(None, description="ISO 639-1 code, for models that use it.")
    api_key: SecretStr | None = Field(None, description="API key; defaults to $ELEVENLABS_API_KEY.")
    base_url: str = Field("https://api.elevenlabs.io", description="The API's address.")
    timeout: float = Field(30.0, gt=0, description="Seconds to wait to connect or for audio.")


class ElevenLabsOptions(ElevenLabsHTTPOptions):
    """Options of ``elevenlabs`` (the stream-input WebSocket)."""

    chunk_length_schedule: list[Annotated[int, Field(ge=50, le=500)]] | None = Field(
        [50, 90, 120, 150],
        min_length=1,
        description="Characters buffered before each generation (ElevenLabs' generation_config); "
        "a low first value starts speech sooner. null keeps the service's default.",
    )
