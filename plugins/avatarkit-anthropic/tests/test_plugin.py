"""Registration, options and API-key rules of avatarkit-anthropic (no network)."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest
from pydantic import SecretStr, ValidationError

from avatarkit import ConfigError
from avatarkit.plugins import default_registry
from avatarkit_anthropic._client import LOCAL_PLACEHOLDER_KEY
from avatarkit_anthropic.llm import AnthropicLLM
from avatarkit_anthropic.options import AnthropicLLMOptions


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def test_entry_point_registers_the_llm() -> None:
    spec = default_registry(refresh=True).get("llm", "anthropic")
    assert spec.source.distribution == "avatarkit-anthropic"
    assert spec.load_factory() is AnthropicLLM


def test_discovery_imports_no_sdk() -> None:
    code = (
        "import sys, avatarkit, avatarkit_anthropic.plugin\n"
        "from avatarkit.plugins import default_registry\n"
        "default_registry()\n"
        "bad = [m for m in ('anthropic', 'httpx2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_validated_and_the_key_is_secret() -> None:
    options = AnthropicLLMOptions.model_validate({"model": "m", "api_key": "sk-ant-secret"})
    assert isinstance(options.api_key, SecretStr)
    assert options.max_tokens == 1024
    assert "sk-ant-secret" not in repr(options)
    with pytest.raises(ValidationError, match="max_token"):
        AnthropicLLMOptions.model_validate({"model": "m", "max_token": 5})
    with pytest.raises(ValidationError, match="max_tokens"):
        AnthropicLLMOptions.model_validate({"model": "m", "max_tokens": 0})


def test_factory_builds_from_yaml_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    llm = default_registry(refresh=True).get("llm", "anthropic").create(model="claude-x")
    assert isinstance(llm, AnthropicLLM)
    assert llm._api_key == "sk-ant-from-env"
    assert "sk-ant-from-env" not in repr(llm)


def test_missing_key_names_the_env_var() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY") as info:
        AnthropicLLM(model="m")
    assert info.value.field == "api_key"


def test_local_servers_need_no_key() -> None:
    llm = AnthropicLLM(model="m", base_url="http://localhost:11434")
    assert llm._api_key == LOCAL_PLACEHOLDER_KEY


def test_bad_direct_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        AnthropicLLM(model="m", api_key="k", temperature=3)


async def test_close_is_idempotent_and_cancellation_safe() -> None:
    llm = AnthropicLLM(model="m", api_key="k")
    await llm.start()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await llm.close()
    await llm.close()
    assert llm._client is None


async def test_conformance_against_the_fake(fake_anthropic) -> None:
    from avatarkit.testing import check_llm

    fake_anthropic.script = [fake_anthropic.reply(["One.", " Two."])]
    llm = AnthropicLLM(model="m", api_key=fake_anthropic.key, base_url=fake_anthropic.url)
    assert await check_llm(llm) == "One. Two."


def test_the_key_is_declared_so_a_session_redacts_it() -> None:
    """An embedding user builds the provider directly (no config): the session still knows the
    key, through the provider's ``secrets``, and keeps it out of errors and events."""
    from avatarkit._secrets import declared_secrets

    llm = AnthropicLLM(model="claude-test", api_key="sk-declared-123456")
    assert "sk-declared-123456" in declared_secrets(llm)
    assert "sk-declared-123456" not in repr(llm)
