"""Options of the ``heygen`` renderer, importable without httpx or livekit (plugin discovery)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["DEFAULT_BASE_URL", "Emotion", "HeyGenRendererOptions", "Quality", "mode_problem"]

DEFAULT_BASE_URL = "https://api.heygen.com"
Quality = Literal["low", "medium", "high"]
Emotion = Literal["excited", "serious", "friendly", "soothing", "broadcaster"]


class HeyGenRendererOptions(BaseModel):
    """Options of the ``heygen`` renderer (YAML ``renderer:`` section).

    Give either ``api_key`` (call HeyGen directly) or ``backend_url`` (your backend holds the key).
    """

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(None, description="HeyGen API key (direct mode).")
    base_url: str = Field(DEFAULT_BASE_URL, description="HeyGen API host (tests, proxies).")
    backend_url: str | None = Field(None, description="Your backend's HeyGen endpoints.")
    backend_token: SecretStr | None = Field(None, description="Bearer token for backend_url.")
    avatar_id: str | None = Field(None, description="Interactive avatar id (direct mode).")
    quality: Quality | None = None
    voice_id: str | None = None
    voice_rate: float | None = Field(None, ge=0.5, le=1.5)
    voice_emotion: Emotion | None = None
    language: str | None = None
    video_encoding: Literal["H264", "VP8"] | None = None
    activity_idle_timeout: int | None = Field(None, ge=30, le=3600)
    disable_idle_timeout: bool = False
    keep_alive: bool = True
    keep_alive_interval: float | None = Field(None, gt=0)
    connect_media: bool = False
    lead_time: float = Field(0.5, ge=0)
    words_per_minute: float = Field(160.0, gt=0)
    timeout: float = Field(15.0, gt=0)
    start_timeout: float = Field(60.0, gt=0)
    task_timeout: float = Field(10.0, gt=0)
    close_timeout: float = Field(15.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    retry_backoff: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _one_way_to_heygen(self) -> HeyGenRendererOptions:
        problem = mode_problem(
            api_key=self.api_key is not None,
            backend=self.backend_url is not None,
            callbacks=False,
            avatar_id=self.avatar_id,
        )
        if problem:
            raise ValueError(problem)
        return self


def mode_problem(*, api_key: bool, backend: bool, callbacks: bool, avatar_id: str | None) -> str:
    ways = [
        name
        for name, given in (
            ("api_key", api_key),
            ("backend_url", backend),
            ("create_session/send_task", callbacks),
        )
        if given
    ]
    if not ways:
        return (
            "give api_key (call HeyGen directly, e.g. api_key: ${HEYGEN_API_KEY}) or backend_url "
            "(your backend holds the key)"
        )
    if len(ways) > 1:
        return f"give only one way to reach HeyGen, not {' and '.join(ways)}"
    if api_key and not avatar_id:
        return "avatar_id is required with api_key: the id of the interactive avatar to stream"
    return ""
