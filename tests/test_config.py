"""YAML sessions: interpolation, validation errors with file:line, routing, secrets."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

import avatarkit
from avatarkit.config import dump_config, load_config, load_session
from avatarkit.errors import CapabilityError, ConfigError, ProviderNotFound
from avatarkit.plugins import ProviderRegistry, load_registry
from avatarkit.testing import (
    FakeProvidersPlugin,
    FakeTextRenderer,
    FakeTTS,
    installed_distribution,
    registered,
)

SECRET = "sk-live-DO-NOT-SHOW-4242"
TOKEN = "tok-also-secret-9999"


@pytest.fixture
def fakes() -> FakeProvidersPlugin:
    return FakeProvidersPlugin()


@pytest.fixture
def registry(fakes: FakeProvidersPlugin) -> Iterator[ProviderRegistry]:
    with registered(fakes, SecretPlugin()) as reg:
        yield reg


def write(tmp_path: Path, text: str, name: str = "session.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


# -- a provider with a secret option ------------------------------------------------------------


class VaultOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: SecretStr
    temperature: float = 0.5
    token: str | None = None


class VaultLLM:
    built: list[dict[str, Any]] = []  # noqa: RUF012

    def __init__(self, api_key: SecretStr, temperature: float, token: str | None) -> None:
        if temperature > 1:
            raise ValueError(f"temperature too high for key {api_key.get_secret_value()}")
        VaultLLM.built.append({"api_key": api_key, "temperature": temperature, "token": token})

    async def stream(self, messages: Any) -> Any:
        yield "ok"


class SecretPlugin:
    __name__ = "secret-plugin"

    @avatarkit.hookimpl
    def register_providers(self, registry: ProviderRegistry) -> None:
        registry.llm("vault", VaultLLM, options=VaultOptions)


# -- happy paths -------------------------------------------------------------------------------


async def test_yaml_session_runs_end_to_end(
    tmp_path: Path, registry: ProviderRegistry, fakes: FakeProvidersPlugin
) -> None:
    path = write(
        tmp_path,
        """
        system_prompt: Be brief.
        llm:
          provider: scripted
          replies: ["Hello there. Nice to meet you."]
        renderer:
          provider: fake-text
        session:
          lookahead: 2
          max_history: 10
          timeouts: {first_token: 5, speak: 7.5}
        """,
    )
    session = load_session(path, registry=registry)
    assert session.route == "text"
    assert session.lookahead == 2
    assert session.max_history == 10
    assert session.timeouts.first_token == 5
    assert session.timeouts.speak == 7.5
    async with session:
        reply = await session.send("hi")
    assert reply == "Hello there. Nice to meet you."
    (renderer,) = fakes.of(FakeTextRenderer)
    assert renderer.spoken == ["Hello there.", "Nice to meet you."]
    assert session.history[0] == avatarkit.Message("system", "Be brief.")


async def test_providers_come_from_a_really_installed_plugin(tmp_path: Path) -> None:
    plugin_src = (
        "from avatarkit.testing import FakeProvidersPlugin\nplugin = FakeProvidersPlugin()\n"
    )
    with installed_distribution(
        tmp_path / "site",
        "avatarkit-fakes-dist",
        entry_points={"fakes": "fakes_dist_plugin:plugin"},
        files={"fakes_dist_plugin.py": plugin_src},
    ):
        import fakes_dist_plugin  # type: ignore[import-not-found]

        registry = load_registry()
        config = load_config(
            {
                "llm": {"provider": "fake", "replies": ["One. Two."]},
                "tts": {"provider": "fake"},
                "renderer": {"provider": "fake-audio"},
            },
            registry=registry,
        )
        assert config.llm.spec.source.distribution == "avatarkit-fakes-dist"
        assert config.route == "audio"
        session = config.build()
        async with session:
            assert await session.send("go") == "One. Two."
        (tts,) = fakes_dist_plugin.plugin.of(FakeTTS)
        assert tts.texts == ["One.", "Two."]


def test_text_renderer_with_tts_section_builds_no_tts(
    registry: ProviderRegistry, fakes: FakeProvidersPlugin
) -> None:
    config = load_config(
        {"llm": "scripted", "tts": {"provider": "fake"}, "renderer": "fake-text"},
        registry=registry,
    )
    assert config.route == "text"
    assert "not used" in config.summary()
    session = config.build()
    assert session.tts is None
    assert fakes.of(FakeTTS) == []


def test_prefer_audio_on_a_two_way_renderer(registry: ProviderRegistry) -> None:
    class Both:
        async def start(self) -> None: ...
        async def interrupt(self) -> None: ...
        async def close(self) -> None: ...
        async def speak_text(self, text: str) -> None: ...
        async def speak(self, audio: Any) -> None: ...

    registry.renderer("both", Both)
    base = {"llm": "scripted", "renderer": {"provider": "both"}}
    assert load_config(base, registry=registry).route == "text"
    with_tts = {**base, "tts": "fake"}
    assert load_config(with_tts, registry=registry).route == "audio"
    prefer_text = {**with_tts, "renderer": {"provider": "both", "prefer": "text"}}
    assert load_config(prefer_text, registry=registry).route == "text"
    with pytest.raises(CapabilityError, match=r"needs a `tts:` section; installed TTS providers"):
        load_config(
            {**base, "renderer": {"provider": "both", "prefer": "audio"}}, registry=registry
        )


def test_interpolation(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(
        tmp_path,
        """
        system_prompt: "You are ${NAME}, costs $$5. ${MOOD:-calm}."
        llm: {provider: scripted, delay: "${DELAY:-0.5}"}
        renderer: fake-text
        """,
    )
    config = load_config(path, registry=registry, env={"NAME": "Ava"})
    assert config.system_prompt == "You are Ava, costs $5. calm."
    assert config.llm.options["delay"] == 0.5


# -- errors --------------------------------------------------------------------------------------


def test_yaml_syntax_error_gives_line_and_column(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    path = write(
        tmp_path,
        """
        llm:
          provider: scripted
        renderer: [fake-text
        session: {}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    message = str(info.value)
    assert message.startswith(f"{path}:4:")
    assert "invalid YAML" in message
    assert info.value.line == 4


def test_duplicate_keys_are_an_error(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(tmp_path, "llm: scripted\nrenderer: fake-text\nllm: fake\n")
    with pytest.raises(
        ConfigError, match=r":3:1: llm: duplicate key 'llm' \(first given at line 1"
    ):
        load_config(path, registry=registry)


def test_unknown_provider_lists_installed_and_suggests(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    path = write(tmp_path, "llm: {provider: scriptd}\nrenderer: fake-text\n")
    with pytest.raises(ProviderNotFound) as info:
        load_config(path, registry=registry)
    message = str(info.value)
    assert f"{path}:1:17: llm.provider:" in message
    assert "no llm provider 'scriptd'" in message
    assert "installed: fake, scripted, vault" in message
    assert "did you mean 'scripted'?" in message


def test_known_but_missing_provider_says_what_to_install(registry: ProviderRegistry) -> None:
    with pytest.raises(ProviderNotFound, match="pip install avatarkit-heygen"):
        load_config({"llm": "scripted", "renderer": "heygen"}, registry=registry)


def test_missing_env_var_names_it_and_the_line(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(
        tmp_path,
        """
        llm:
          provider: vault
          api_key: ${VAULT_KEY}
        renderer: fake-text
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry, env={})
    message = str(info.value)
    assert f"{path}:3:12: llm.api_key:" in message
    assert "environment variable VAULT_KEY is not set" in message


def test_malformed_interpolation(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match=r"system_prompt: malformed \$\{\.\.\.\}"):
        load_config(
            {"system_prompt": "hi ${NOT CLOSED", "llm": "scripted", "renderer": "fake-text"},
            registry=registry,
        )


def test_wrong_option_type_gives_place_field_and_expectation(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    path = write(
        tmp_path,
        """
        llm:
          provider: scripted
          delay: soon
        renderer: fake-text
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    message = str(info.value)
    assert message.startswith(f"{path}:3:10: llm.delay: Input should be a valid number")
    assert "got 'soon'" in message
    assert info.value.field == "llm.delay"
    assert (info.value.line, info.value.column) == (3, 10)


def test_error_inside_a_list_points_at_the_item(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(
        tmp_path,
        """
        llm:
          provider: scripted
          rules:
            - {match: hello, reply: Hi}
            - match: "(unclosed"
              reply: Oops
        renderer: fake-text
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    assert f"{path}:5:14: llm.rules[1].match:" in str(info.value)
    assert "not a valid regular expression" in str(info.value)


def test_unknown_option_suggests_the_closest(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(tmp_path, "llm: {provider: scripted, dealy: 1}\nrenderer: fake-text\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    message = str(info.value)
    assert f"{path}:1:27: llm.dealy: unknown option 'dealy' for llm provider 'scripted'" in message
    assert "did you mean 'delay'?" in message
    assert "valid options: replies, rules, delay" in message


def test_several_errors_are_all_listed(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(
        tmp_path,
        """
        llm: scripted
        renderer: fake-text
        session:
          lookahead: -1
          timeouts: {speak: never}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    first, second = str(info.value).splitlines()
    assert first.startswith(f"{path}:4:14: session.lookahead: Input should be greater than")
    assert second.strip().startswith(f"{path}:5:21: session.timeouts.speak:")


def test_unknown_top_level_key(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(tmp_path, "llm: scripted\nrendrer: fake-text\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    assert f"{path}:2:1: rendrer: unknown top-level key 'rendrer'" in str(info.value)
    assert "did you mean 'renderer'?" in str(info.value)


def test_missing_sections_and_provider(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match=r"missing required section `renderer:`.*fake-audio"):
        load_config({"llm": "scripted"}, registry=registry)
    with pytest.raises(ConfigError, match=r"llm.provider: missing `provider:`"):
        load_config({"llm": {"delay": 1}, "renderer": "fake-text"}, registry=registry)
    with pytest.raises(ConfigError) as info:
        load_config({"llm": "vault", "renderer": "fake-text"}, registry=registry)
    assert str(info.value) == (
        "llm.api_key: required option missing for llm provider 'vault' (expected SecretStr)"
    )


def test_audio_renderer_without_tts_fails_at_load_time(
    tmp_path: Path, registry: ProviderRegistry, fakes: FakeProvidersPlugin
) -> None:
    path = write(tmp_path, "llm: fake\nrenderer:\n  provider: fake-audio\n")
    with pytest.raises(CapabilityError) as info:
        load_session(path, registry=registry)
    message = str(info.value)
    assert message.startswith(f"{path}:3:3: renderer:")
    assert "renderer 'fake-audio' speaks audio only" in message
    assert "needs a `tts:` section; installed TTS providers: fake" in message
    assert fakes.instances == []  # nothing was built


def test_file_problems(tmp_path: Path, registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", registry=registry)
    with pytest.raises(ConfigError, match="the session is empty"):
        load_config(write(tmp_path, "# nothing\n"), registry=registry)
    with pytest.raises(ConfigError, match="a session is a mapping of sections, got a list"):
        load_config(write(tmp_path, "- llm\n"), registry=registry)


# -- secrets -------------------------------------------------------------------------------------


def secret_yaml(tmp_path: Path, extra: str = "") -> str:
    return write(
        tmp_path,
        f"""
        llm:
          provider: vault
          api_key: ${{VAULT_KEY}}
          token: ${{SOME_TOKEN}}
        {extra}
        renderer: fake-text
        """,
    )


ENV = {"VAULT_KEY": SECRET, "SOME_TOKEN": TOKEN}


def test_secrets_reach_the_factory_as_secretstr(tmp_path: Path, registry: ProviderRegistry) -> None:
    VaultLLM.built.clear()
    load_session(secret_yaml(tmp_path), registry=registry, env=ENV)
    (built,) = VaultLLM.built
    assert isinstance(built["api_key"], SecretStr)
    assert built["api_key"].get_secret_value() == SECRET


def test_secrets_never_shown_in_repr_or_dump(tmp_path: Path, registry: ProviderRegistry) -> None:
    config = load_config(secret_yaml(tmp_path), registry=registry, env=ENV)
    for text in (repr(config), repr(config.llm), dump_config(config), config.summary()):
        assert SECRET not in text
        assert TOKEN not in text
    dumped = dump_config(config)
    assert "api_key: '***'" in dumped
    assert "token: '***'" in dumped
    assert "temperature: 0.5" in dumped


def test_secrets_never_shown_in_errors(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(
        tmp_path,
        """
        llm:
          provider: vault
          api_key: ${VAULT_KEY}
          token: ${SOME_TOKEN}
          temperature: "${VAULT_KEY}"
        renderer: fake-text
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry, env=ENV)
    assert "llm.temperature" in str(info.value)
    assert SECRET not in str(info.value)
    # a secret given with the wrong type: the value is not echoed
    with pytest.raises(ConfigError) as info:
        load_config(
            {"llm": {"provider": "vault", "api_key": 12345678}, "renderer": "fake-text"},
            registry=registry,
        )
    assert "llm.api_key" in str(info.value)
    assert "12345678" not in str(info.value)
    # the factory fails with the key in its message: avatarkit redacts it
    high = secret_yaml(tmp_path, "  temperature: 2")
    with pytest.raises(ConfigError) as info:
        load_session(high, registry=registry, env=ENV)
    assert "could not be built: ValueError: temperature too high for key ***" in str(info.value)
    assert SECRET not in str(info.value)


class KeylessLLM:
    def __init__(self) -> None:
        raise ConfigError("no API key: set THE_KEY", field="api_key")

    async def stream(self, messages: Any) -> Any:
        yield "never"


class KeylessPlugin:
    __name__ = "keyless-plugin"

    @avatarkit.hookimpl
    def register_providers(self, registry: ProviderRegistry) -> None:
        registry.llm("keyless", KeylessLLM)


def test_a_providers_own_config_error_gets_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        renderer: {provider: fake-text}
        llm:
          provider: keyless
        """,
    )
    with registered(FakeProvidersPlugin(), KeylessPlugin()) as reg:
        with pytest.raises(ConfigError) as info:
            load_session(path, registry=reg)
    assert str(info.value) == f"{path}:3:3: llm.api_key: no API key: set THE_KEY"
