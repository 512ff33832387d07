"""Building the SDK client: API key resolution (with local servers needing none)."""

from __future__ import annotations

from collections.abc import Mapping

import openai
from pydantic import SecretStr

from avatarkit.credentials import LOCAL_PLACEHOLDER_KEY, is_local_url, resolve_endpoint

__all__ = ["LOCAL_PLACEHOLDER_KEY", "build_client", "is_local_url", "resolve_api_key"]

ENV_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"


def resolve_api_key(
    api_key: SecretStr | str | None, base_url: str | None, *, provider: str
) -> tuple[str, str | None]:
    """The key to send and the base URL to use (the option, else ``$OPENAI_BASE_URL``):
    :func:`avatarkit.credentials.resolve_endpoint` with ``$OPENAI_API_KEY``."""
    return resolve_endpoint(
        api_key, base_url, env_var=ENV_KEY, base_url_env_var=ENV_BASE_URL, provider=provider
    )


def build_client(
    *,
    api_key: str,
    base_url: str | None,
    headers: Mapping[str, str],
    timeout: float,
    max_retries: int,
) -> openai.AsyncOpenAI:
    """The SDK client; retries (429/5xx/connection errors, with backoff) are the SDK's own."""
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        default_headers=dict(headers),
    )
