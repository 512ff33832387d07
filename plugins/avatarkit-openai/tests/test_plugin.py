"""Registration, options and API-key rules of avatarkit-openai (no network)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import SecretStr, ValidationError

from avatarkit import ConfigError
from avatarkit.plugins import default_registry
from avatarkit_openai._client import LOCAL_PLACEHOLDER_KEY, is_local_url
from avatarkit_openai.llm import OpenAILLM
from avatarkit_openai.options import OpenAILLMOptions
from avatarkit_openai.tts import OpenAITTS


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_entry_point_registers_llm_and_tts() -> None:
    registry = default_registry(refresh=True)
    llm, tts = registry.get("llm", "openai"), registry.get("tts", "openai")
    assert llm.source.distribution == tts.source.distribution == "avatarkit-openai"
    assert llm.load_factory() is OpenAILLM
    assert tts.load_factory() is OpenAITTS


def test_discovery_imports_no_sdk() -> None:
    code = (
        "import sys, avatarkit, avatarkit_openai.plugin\n"
        "from avatarkit.plugins import default_registry\n"
        "default_registry()\n"
        "bad = [m for m in ('openai', 'httpx2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_validated_and_the_key_is_secret() -> None:
    options = OpenAILLMOptions.model_validate({"model": "m", "api_key": "sk-secret-value"})
    assert isinstance(options.api_key, SecretStr)
    assert "sk-secret-value" not in repr(options)
    assert "sk-secret-value" not in str(options.model_dump())
    with pytest.raises(ValidationError, match="temprature"):
        OpenAILLMOptions.model_validate({"model": "m", "temprature": 1})
    with pytest.raises(ValidationError, match="model"):
        OpenAILLMOptions.model_validate({})


def test_factory_builds_from_yaml_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123456")
    spec = default_registry(refresh=True).get("llm", "openai")
    llm = spec.create(model="gpt-test", temperature=0.5)
    assert isinstance(llm, OpenAILLM)
    assert llm.options.temperature == 0.5
    assert "sk-from-env" not in repr(llm)


def test_missing_key_names_the_env_var() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        OpenAILLM(model="m")
    assert info.value.field == "api_key"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAITTS(base_url="https://openrouter.ai/api/v1")


def test_local_servers_need_no_key() -> None:
    llm = OpenAILLM(model="llama3.2", base_url="http://localhost:11434/v1")
    assert llm._api_key == LOCAL_PLACEHOLDER_KEY
    assert OpenAILLM(model="m", base_url="http://127.0.0.1:8000/v1")._api_key
    assert is_local_url("http://[::1]:8080/v1")
    assert not is_local_url("https://api.openai.com/v1")
    assert not is_local_url("http://10.0.0.5:8000/v1")


def test_env_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:1234/v1")
    assert OpenAILLM(model="m")._api_key == LOCAL_PLACEHOLDER_KEY
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert OpenAILLM(model="m")._api_key == "sk-env"
    assert OpenAILLM(model="m", api_key=SecretStr("sk-opt"))._api_key == "sk-opt"


def test_bad_direct_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        OpenAILLM(model="m", api_key="k", temperature=5)
    with pytest.raises(ConfigError, match="speed"):
        OpenAITTS(api_key="k", speed=10)


async def test_close_is_idempotent_and_cancellation_safe() -> None:
    import anyio

    llm = OpenAILLM(model="m", api_key="k")
    await llm.start()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await llm.close()
    await llm.close()
    assert llm._client is None


def test_max_tokens_is_named_for_the_server() -> None:
    def field(base_url: str | None) -> set[str]:
        llm = OpenAILLM(model="m", api_key="k", base_url=base_url, max_tokens=9)
        return {"max_tokens", "max_completion_tokens"} & set(llm._request([]))

    assert field(None) == {"max_completion_tokens"}  # api.openai.com
    assert field("https://res.openai.azure.com/openai/v1/") == {"max_completion_tokens"}
    assert field("http://localhost:11434/v1") == {"max_tokens"}
    assert field("https://openrouter.ai/api/v1") == {"max_tokens"}


async def test_conformance_against_the_fake(fake_openai) -> None:
    from avatarkit.testing import check_llm, check_tts

    fake_openai.script = [
        fake_openai.router(
            chat=fake_openai.chat(["One.", " Two."]), speech=fake_openai.speech(piece=961)
        )
    ]
    llm = OpenAILLM(model="m", api_key=fake_openai.key, base_url=fake_openai.url)
    assert await check_llm(llm) == "One. Two."
    tts = OpenAITTS(api_key=fake_openai.key, base_url=fake_openai.url)
    chunks = await check_tts(tts)
    assert {c.sample_rate for c in chunks} == {24000}


def test_the_key_is_declared_so_a_session_redacts_it() -> None:
    """An embedding user builds the provider directly (no config): the session still knows the
    key, through the provider's ``secrets``, and keeps it out of errors and events."""
    from avatarkit._secrets import declared_secrets

    llm = OpenAILLM(model="gpt-test", api_key="sk-declared-123456")
    assert "sk-declared-123456" in declared_secrets(llm)
    assert "sk-declared-123456" not in repr(llm)
