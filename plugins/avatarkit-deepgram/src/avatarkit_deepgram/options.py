"""Options of the ``deepgram`` STT, as validated from YAML (imports only pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["DEFAULT_BASE_URL", "DeepgramSTTOptions"]

DEFAULT_BASE_URL = "wss://api.deepgram.com"


class DeepgramSTTOptions(BaseModel):
    """What a YAML ``stt:`` section may set for ``provider: deepgram``."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(
        None,
        description="Deepgram API key; defaults to $DEEPGRAM_API_KEY (a server on this machine "
        "needs none).",
    )
    base_url: str = Field(
        DEFAULT_BASE_URL,
        description="wss:// (or https://) root of the API; ws://127.0.0.1:PORT for a local "
        "server such as Deepgram self-hosted or a test fake.",
    )
    model: str = Field("nova-3", min_length=1, description="Deepgram model, e.g. nova-3.")
    language: str | None = Field("en", description="BCP-47 language; None: the model's default.")
    sample_rate: int = Field(
        16000, ge=8000, le=48000, description="Rate of the PCM sent (the engine resamples to it)."
    )
    interim_results: bool = Field(True, description="Send interim transcripts while speaking.")
    punctuate: bool = True
    smart_format: bool = Field(True, description="Numbers, dates and the like written out.")
    endpointing: int | Literal[False] = Field(
        300,
        description="Milliseconds of silence after which Deepgram marks the end of speech "
        "(speech_final); false turns endpointing off.",
    )
    utterance_end_ms: int | None = Field(
        1000,
        ge=1000,
        description="Send UtteranceEnd after this much silence following the last word, even "
        "in noise that defeats endpointing; None: off.",
    )
    vad_events: bool = Field(True, description="Send SpeechStarted events.")
    keyterms: list[str] = Field(
        default_factory=list, description="Words to boost (nova-3 keyterm prompting)."
    )
    extra_query: dict[str, str | int | bool | list[str]] = Field(
        default_factory=dict,
        description="Other query parameters of the live API, passed through as they are.",
    )
    keepalive_interval: float = Field(
        4.0,
        gt=0,
        lt=10,
        description="Seconds without audio after which a KeepAlive is sent (Deepgram closes "
        "an idle stream after 10 s).",
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds for the handshake, and for any one send to complete."
    )
    ping_interval: float | None = Field(
        20.0, gt=0, description="Seconds between WebSocket pings; null: none."
    )
    ping_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds without an answer to a ping before the connection is taken for "
        "dead and opened again.",
    )
    close_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for the last results after CloseStream."
    )
    max_reconnects: int = Field(
        3, ge=0, description="Reconnections in a row after a dropped connection before failing."
    )
    replay_seconds: float = Field(
        30.0,
        ge=0,
        description="Audio not yet finalised that is kept and sent again after a reconnect, "
        "so no words are lost to a dropped connection.",
    )

    @field_validator("endpointing", mode="before")
    @classmethod
    def _positive(cls, value: object) -> object:
        if value is True or (isinstance(value, int | float) and value < 0):
            raise ValueError("endpointing is milliseconds (>= 0) or false")
        return value
