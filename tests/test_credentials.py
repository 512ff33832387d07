"""avatarkit.credentials: one key-resolution rule for every keyed provider."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from avatarkit.credentials import (
    LOCAL_PLACEHOLDER_KEY,
    is_local_url,
    resolve_api_key,
    resolve_endpoint,
)
from avatarkit.errors import ConfigError

ENV = "AVATARKIT_TEST_API_KEY"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:11434/v1",
        "http://127.0.0.1:8000",
        "http://[::1]:8080/v1",
        "https://api.localhost",
        "localhost:1234",
        "http://127.0.0.2",
    ],
)
def test_local_urls(url: str) -> None:
    assert is_local_url(url)


@pytest.mark.parametrize(
    "url", [None, "", "https://api.openai.com/v1", "http://10.0.0.5:8000/v1", "localhost.evil.com"]
)
def test_remote_urls(url: str | None) -> None:
    assert not is_local_url(url)


def test_option_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "from-env")
    assert resolve_api_key(SecretStr("opt"), env_var=ENV, base_url=None, provider="p") == "opt"
    assert resolve_api_key("plain", env_var=ENV, base_url=None, provider="p") == "plain"
    assert resolve_api_key(None, env_var=ENV, base_url=None, provider="p") == "from-env"


def test_local_server_gets_a_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    key = resolve_api_key(None, env_var=ENV, base_url="http://localhost:1/v1", provider="p")
    assert key == LOCAL_PLACEHOLDER_KEY


def test_missing_key_names_provider_variable_and_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(
        ConfigError, match=rf"^api_key: acme LLM: no API key: set the {ENV}"
    ) as info:
        resolve_api_key(
            SecretStr(""), env_var=ENV, base_url="https://acme.example", provider="acme LLM"
        )
    assert info.value.field == "api_key"


URL_ENV = "AVATARKIT_TEST_BASE_URL"


def _endpoint(api_key: str | None, base_url: str | None) -> tuple[str, str | None]:
    return resolve_endpoint(
        api_key, base_url, env_var=ENV, base_url_env_var=URL_ENV, provider="acme LLM"
    )


def test_endpoint_base_url_option_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "env-key")
    monkeypatch.delenv(URL_ENV, raising=False)
    assert _endpoint(None, None) == ("env-key", None)  # the SDK's default URL
    monkeypatch.setenv(URL_ENV, "https://gateway.example/v1")
    assert _endpoint("opt-key", None) == ("opt-key", "https://gateway.example/v1")
    assert _endpoint(None, "https://other.example") == ("env-key", "https://other.example")
    monkeypatch.setenv(URL_ENV, "")  # set but empty: as if unset
    assert _endpoint(None, None) == ("env-key", None)


def test_endpoint_local_base_url_from_the_environment_needs_no_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv(URL_ENV, "http://localhost:11434/v1")
    assert _endpoint(None, None) == (LOCAL_PLACEHOLDER_KEY, "http://localhost:11434/v1")
    monkeypatch.delenv(URL_ENV)
    with pytest.raises(ConfigError, match=f"acme LLM: no API key: set the {ENV}"):
        _endpoint(None, None)
