"""Options of the ``cartesia`` TTS, as validated from YAML (imports no client library)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["CartesiaOptions"]


class CartesiaOptions(BaseModel):
    """Options of ``cartesia`` (the TTS WebSocket, one context per turn)."""

    model_config = ConfigDict(extra="forbid")

    voice_id: str = Field(min_length=1, description="The voice's id (a UUID).")
    model: str = Field("sonic-2", description="Model id, e.g. sonic-2 or sonic-turbo.")
    language: str = Field("en", description="Language of the text (ISO 639-1).")
    sample_rate: int = Field(24000, ge=8000, le=48000, description="Rate of the PCM asked for.")
    speed: float | None = Field(None, ge=0.6, le=1.5, description="Speaking rate (generation).")
    max_buffer_delay_ms: int | None = Field(
        None,
        ge=0,
        le=5000,
        description="How long Cartesia may wait for more text before speaking what it has; "
        "unset keeps the service's default.",
    )
    api_key: SecretStr | None = Field(None, description="API key; defaults to $CARTESIA_API_KEY.")
    base_url: str = Field("https://api.cartesia.ai", description="The API's address.")
    api_version: str = Field("2026-08-14", description="Sent as the Cartesia-Version header.")
    timeout: float = Field(30.0, gt=0, description="Seconds to wait to connect.")
