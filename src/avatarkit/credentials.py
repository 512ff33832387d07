"""Finding a provider's API key, for plugin authors.

Every plugin that calls a keyed HTTP service resolves its key the same way, so users meet one
rule: the ``api_key`` option wins, then the provider's environment variable, and a server on this
machine (Ollama, a gateway under test) needs no key at all. A missing key is a
:class:`~avatarkit.errors.ConfigError` that names the option and the variable, raised when the
provider is built rather than on the first request.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from pydantic import SecretStr

from avatarkit.errors import ConfigError

__all__ = ["LOCAL_PLACEHOLDER_KEY", "is_local_url", "resolve_api_key", "resolve_endpoint"]

#: Sent to a server on this machine when no key is configured (Ollama and friends ignore it).
LOCAL_PLACEHOLDER_KEY = "avatarkit-local"


def is_local_url(url: str | None) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``*.localhost`` or a loopback IP).

    A scheme-less ``host:port`` is accepted too. Private addresses (10.x, 192.168.x) are not
    local: another machine may well want a key.
    """
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
    value: SecretStr | str | None,
    *,
    env_var: str,
    base_url: str | None,
    provider: str,
) -> str:
    """The API key to send; raises :class:`~avatarkit.errors.ConfigError` when there is none.

    Order: ``value`` (the ``api_key`` option), then ``$env_var``, then, only when ``base_url``
    is on this machine (:func:`is_local_url`), :data:`LOCAL_PLACEHOLDER_KEY`. ``provider``
    (e.g. ``"openai LLM"``) starts the error message.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    key = value or os.environ.get(env_var)
    if key:
        return key
    if is_local_url(base_url):
        return LOCAL_PLACEHOLDER_KEY
    raise ConfigError(
        f"{provider}: no API key: set the {env_var} environment variable or the api_key option "
        "(a server on this machine, base_url http://localhost:..., needs none; for another "
        "keyless server set api_key to any placeholder)",
        field="api_key",
    )


def resolve_endpoint(
    api_key: SecretStr | str | None,
    base_url: str | None,
    *,
    env_var: str,
    base_url_env_var: str,
    provider: str,
) -> tuple[str, str | None]:
    """The key to send and the base URL to use, for a service whose SDK also reads its base URL
    from the environment (``$OPENAI_BASE_URL``, ``$ANTHROPIC_BASE_URL``).

    The base URL is ``base_url`` (the option), else ``$base_url_env_var``, else None (the SDK's
    default); the key then follows :func:`resolve_api_key` with that base URL, so a base URL on
    this machine from the environment needs no key either.
    """
    base_url = base_url or os.environ.get(base_url_env_var) or None
    key = resolve_api_key(api_key, env_var=env_var, base_url=base_url, provider=provider)
    return key, base_url
