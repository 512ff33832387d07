"""Options of the ``anthropic`` LLM, as validated from YAML (imports no vendor SDK)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["AnthropicLLMOptions"]


class AnthropicLLMOptions(BaseModel):
    """Options of the ``anthropic`` LLM (the Messages API, streamed)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Claude model name, e.g. claude-haiku-4-5.")
    api_key: SecretStr | None = Field(
        None,
        description="API key; defaults to $ANTHROPIC_API_KEY. Not needed for a server on this "
        "machine (base_url on localhost).",
    )
    base_url: str | None = Field(
        None,
        description="Another endpoint speaking the Messages API (a proxy or gateway); defaults "
        "to $ANTHROPIC_BASE_URL or api.anthropic.com.",
    )
    max_tokens: int = Field(
        1024, gt=0, description="Upper bound on the reply's tokens (the API requires one)."
    )
    temperature: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Sampling temperature, sent as given; recent models may reject it (HTTP 400).",
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
        description="Retries of 408/409/429/5xx/529 and connection errors, with the SDK's backoff.",
    )
