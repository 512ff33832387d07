"""Options of the ``liveavatar`` renderer (imports only pydantic: plugin discovery stays light)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["DEFAULT_BASE_URL", "LiveAvatarOptions"]

DEFAULT_BASE_URL = "https://api.liveavatar.com"


class LiveAvatarOptions(BaseModel):
    """What a YAML ``renderer:`` section may set for ``provider: liveavatar``.

    The mode is not an option: it follows the session's route (``prefer: text`` speaks with
    LiveAvatar's voice in FULL mode, ``prefer: audio`` with the session's TTS in LITE mode).
    """

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = Field(description="LiveAvatar API key (X-API-KEY).")
    avatar_id: str = Field(min_length=1, description="The LiveAvatar avatar to show.")
    base_url: str = Field(DEFAULT_BASE_URL, description="LiveAvatar API base URL.")
    voice_id: str | None = Field(None, description="FULL mode: LiveAvatar voice of the avatar.")
    context_id: str | None = Field(None, description="FULL mode: LiveAvatar context (persona).")
    language: str = Field("en", description="FULL mode: language of the avatar's speech.")
    voice_agent_id: str | None = Field(
        None,
        description="FULL mode: a stored LiveAvatar voice agent (sent as voice_agent, instead "
        "of the deprecated avatar_persona built from voice_id/context_id).",
    )
    quality: Literal["low", "medium", "high", "very_high"] = Field(
        "high", description="Video quality of the stream."
    )
    sandbox: bool = Field(False, description="Use LiveAvatar's sandbox (free, limited) sessions.")
    max_session_duration: int | None = Field(
        None, gt=0, description="Seconds after which LiveAvatar ends the session (its default)."
    )
    keep_alive: bool = Field(True, description="Reset LiveAvatar's idle timer while idle.")
    keep_alive_interval: float = Field(
        60.0, gt=0, lt=300, description="Seconds of silence before a keep-alive is sent."
    )
    request_timeout: float = Field(30.0, gt=0, description="Seconds per HTTP request.")
    connect_timeout: float = Field(
        20.0, gt=0, description="Seconds to connect the command channel and see it ready."
    )
    full_join_token: Literal["auto", "agent", "client"] = Field(
        "auto",
        description="FULL mode: which LiveKit token of the start answer our backend joins the "
        "room with. 'auto': livekit_agent_token when LiveAvatar returns one (a server-side "
        "participant, leaving livekit_client_token to a viewer page), else "
        "livekit_client_token (then no viewer can join: the identity would be taken).",
    )
    ready_participants: list[str] = Field(
        default_factory=lambda: ["heygen", "liveavatar-agent-{session_id}"],
        description="FULL mode: LiveKit identities that must be in the room before the first "
        "command ({session_id} is filled in); LiveAvatar's web SDK waits for these two.",
    )
    ready_timeout: float = Field(
        30.0, gt=0, description="FULL mode: seconds to wait for ready_participants (web SDK: 30)."
    )
    ws_ping_interval: float | None = Field(
        None,
        gt=0,
        description="LITE mode: seconds between WebSocket pings; off by default, as in "
        "LiveAvatar's own clients (its media server may answer pings late under load).",
    )
    ws_ping_timeout: float = Field(
        20.0, gt=0, description="LITE mode: seconds to wait for a pong when pings are on."
    )
    first_chunk_seconds: float = Field(
        0.4,
        ge=0,
        le=10.0,
        description="LITE mode: audio gathered before the first agent.speak of an utterance "
        "(LiveAvatar's web SDK sends 400 ms first, LiveKit's plugin 600 ms); 0 sends the "
        "first TTS chunk at once.",
    )
    chunk_seconds: float = Field(
        1.0, ge=0.05, le=10.0, description="LITE mode: audio per agent.speak message, seconds."
    )
    speak_timeout_grace: float = Field(
        5.0,
        ge=0,
        description="Seconds past the audio's (or text's estimated) duration to wait for the "
        "avatar's speak_ended event before giving up on it.",
    )

    @field_validator("ready_participants")
    @classmethod
    def _identities_format(cls, value: list[str]) -> list[str]:
        """Each identity may use ``{session_id}`` and nothing else in braces."""
        for identity in value:
            try:
                identity.format(session_id="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"{identity!r}: only {{session_id}} may appear in braces ({exc!r})"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_persona(self) -> LiveAvatarOptions:
        """LiveAvatar takes voice_agent or avatar_persona, never both."""
        if self.voice_agent_id is not None and (self.voice_id or self.context_id):
            raise ValueError(
                "voice_agent_id cannot be combined with voice_id/context_id (LiveAvatar takes "
                "a voice agent or an inline persona, not both)"
            )
        return self

    @field_validator("voice_id", "context_id", "voice_agent_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``voice_id: ${LIVEAVATAR_VOICE_ID:-}`` leaves the avatar's default."""
        return None if value == "" else value
