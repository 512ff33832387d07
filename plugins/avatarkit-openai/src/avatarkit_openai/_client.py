"""Building the SDK client: API key resolution (with local servers needing none)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import openai
from pydantic import SecretStr

from avatarkit.errors import ConfigError

__all__ = ["LOCAL_PLACEHOLDER_KEY", "build_client", "is_local_url", "resolve_api_key"]

ENV_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"
#: Sent to a server on this machine when no key is configured (Ollama and friends ignore it).
LOCAL_PLACEHOLDER_KEY = "avatarkit-local"


def is_local_url(url: str | None) -> bool:
    """Whether ``url`` points at this machine (localhost or a loopback address)."""
    if not url:
        return False
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(
    api_key: SecretStr | str | None, base_url: str | None, *, provider: str
) -> tuple[str, str | None]:
    """The key to send and the base URL to use; raises :class:`ConfigError` when none is set.

    Order: the ``api_key`` option, then ``$OPENAI_API_KEY``, then (only for a server on this
    machine) a placeholder, since local servers such as Ollama need no key.
    """
    base_url = base_url or os.environ.get(ENV_BASE_URL) or None
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    key = api_key or os.environ.get(ENV_KEY)
    if key:
        return key, base_url
    if is_local_url(base_url):
        return LOCAL_PLACEHOLDER_KEY, base_url
    raise ConfigError(
        f"{provider}: no API key: set the {ENV_KEY} environment variable or the api_key option "
        "(a server on this machine, base_url http://localhost:..., needs none; for another "
        "keyless server set api_key to any placeholder)",
        field="api_key",
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
