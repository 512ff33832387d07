"""Building the SDK client: API key resolution (with local servers needing none)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import openai
from pydantic import SecretStr

from avatarkit.credentials import LOCAL_PLACEHOLDER_KEY, is_local_url
from avatarkit.credentials import resolve_api_key as _resolve_key

__all__ = ["LOCAL_PLACEHOLDER_KEY", "build_client", "is_local_url", "resolve_api_key"]

ENV_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"


def resolve_api_key(
    api_key: SecretStr | str | None, base_url: str | None, *, provider: str
) -> tuple[str, str | None]:
    """The key to send and the base URL to use (the option, else ``$OPENAI_BASE_URL``).

    The key follows :func:`avatarkit.credentials.resolve_api_key` with ``$OPENAI_API_KEY``.
    """
    base_url = base_url or os.environ.get(ENV_BASE_URL) or None
    key = _resolve_key(api_key, env_var=ENV_KEY, base_url=base_url, provider=provider)
    return key, base_url


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
