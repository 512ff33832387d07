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
    # reported where the `[` opens (line 3), not where the parser noticed (line 4)
    assert message.startswith(f"{path}:3:11: invalid YAML: this '[' is never closed")
    assert "at line 4 column 8" in message
    assert (info.value.line, info.value.column) == (3, 11)


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
            {"llm": {"provider": "vault", "api_key": [12345678]}, "renderer": "fake-text"},
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


# -- hostile and unusual YAML ------------------------------------------------------------------

LAUGHS = "".join(
    f"  - &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)  # nine levels of nine aliases each: 9**9 strings once expanded


def test_an_alias_bomb_is_refused_without_being_expanded(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    text = "llm:\n  provider: scripted\n  replies:\n  - &l0 lol\n" + LAUGHS
    text += "renderer: fake-text\n"
    assert len(text.encode()) < 500
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    message = str(info.value)
    assert "more than 10000 values once aliases are expanded" in message
    assert "alias bomb" in message
    # located at the first value whose expansion crosses the budget
    assert info.value.line is not None
    assert 4 < info.value.line <= 13


def test_aliases_are_shared_not_copied_and_a_self_containing_alias_is_refused(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    from avatarkit._yaml import parse_yaml

    doc = parse_yaml("a: &a [1, 2]\nb: [*a, *a]\n", None)
    assert doc.value == {"a": [1, 2], "b": [[1, 2], [1, 2]]}
    assert doc.value["b"][0] is doc.value["b"][1] is doc.value["a"]  # as yaml.safe_load does

    path = write(
        tmp_path, "llm: &me\n  provider: scripted\n  replies: [*me]\nrenderer: fake-text\n"
    )
    with pytest.raises(
        ConfigError, match=r":1:6: llm.replies\[0\]: an alias refers to a value that contains"
    ):
        load_config(path, registry=registry)


def test_size_node_and_depth_budgets(tmp_path: Path, registry: ProviderRegistry) -> None:
    from avatarkit._yaml import MAX_BYTES, YAMLProblem, parse_yaml

    big = write(tmp_path, "llm: scripted\nrenderer: fake-text\n#" + "x" * MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"larger than 256000 bytes"):
        load_config(big, registry=registry)

    with pytest.raises(YAMLProblem, match="more than 50 values in one file") as info:
        parse_yaml("[" + ", ".join(["1"] * 60) + "]", "f.yaml", max_values=50)
    assert info.value.location.line == 1

    deep = write(tmp_path, "llm: scripted\nrenderer: fake-text\nsession: " + "[" * 200 + "\n")
    with pytest.raises(ConfigError, match=r":3:\d+: invalid YAML|nested more than 64 levels"):
        load_config(deep, registry=registry)
    deeper = write(tmp_path, "session: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(ConfigError, match=r":1:\d+: nested more than 64 levels deep"):
        load_config(deeper, registry=registry)
    # depth through aliases: each level is shallow, the expansion is not
    chain = "a0: &a0 1\n" + "".join(f"a{i}: &a{i} [[[[*a{i - 1}]]]]\n" for i in range(1, 20))
    with pytest.raises(YAMLProblem, match="levels deep once aliases are expanded"):
        parse_yaml(chain, None)


def test_merge_keys_with_overrides(tmp_path: Path, registry: ProviderRegistry) -> None:
    path = write(
        tmp_path,
        """
        x-llm: &llm
          provider: scripted
          delay: 0.5
          replies: [From the base.]
        x-more: &more
          delay: 0.25
          rules: [{match: hi, reply: Hi.}]
        llm:
          <<: [*llm, *more]
          replies: [Overridden.]
        renderer: fake-text
        """,
    )
    config = load_config(path, registry=registry)
    options = config.llm.options
    assert config.llm.provider == "scripted"
    assert options["replies"] == ["Overridden."]  # the mapping's own key wins
    assert options["delay"] == 0.5  # earlier merged mappings win over later ones
    assert [r.reply for r in options["rules"]] == ["Hi."]

    # an error in a merged value points at the line where it is written (inside the anchor)
    bad = write(tmp_path, "x-b: &b {provider: scripted, delay: soon}\nllm: {<<: *b}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, registry=registry)
    assert f"{bad}:1:37: llm.delay: Input should be a valid number" in str(info.value)

    dup = write(tmp_path, "llm:\n  <<: {provider: fake}\n  provider: scripted\n  provider: x\n")
    with pytest.raises(ConfigError, match=r":4:3: llm.provider: duplicate key 'provider'"):
        load_config(dup, registry=registry)
    not_a_mapping = write(tmp_path, "llm: {<<: [1, 2]}\nrenderer: fake-text\n")
    with pytest.raises(ConfigError, match=r"merge key \(<<\) takes a mapping"):
        load_config(not_a_mapping, registry=registry)


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        ("${A:-${B}}", {"B": "bee"}, "bee"),
        ("${A:-${B}}", {"A": "ay", "B": "bee"}, "ay"),
        ("${A:-${B:-${C:-deep}}}", {}, "deep"),
        ("${A:-x ${B:-y} z}!", {"B": ""}, "x y z!"),
        ("${A:-${MISSING}}", {"A": "set"}, "set"),  # an unused default is not expanded
        ("${A:-$${B}}", {}, "${B}"),
        ("${A:-a}b}", {}, "ab}"),
        ("cost: $5 and $$5", {}, "cost: $5 and $5"),
    ],
)
def test_nested_defaults(
    template: str, env: dict[str, str], expected: str, registry: ProviderRegistry
) -> None:
    config = load_config(
        {"system_prompt": template, "llm": "scripted", "renderer": "fake-text"},
        registry=registry,
        env=env,
    )
    assert config.system_prompt == expected


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ("${A:-${B}", "a ${ is not closed by }"),
        ("${A", "after ${A expected } or :-default}"),
        ("${1A}", "${ must be followed by a variable name"),
        ("${A:-${MISSING}}", "environment variable MISSING is not set"),
    ],
)
def test_malformed_or_missing_nested_substitutions_are_clear(
    template: str, detail: str, registry: ProviderRegistry
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            {"system_prompt": template, "llm": "scripted", "renderer": "fake-text"},
            registry=registry,
            env={},
        )
    assert str(info.value).startswith("system_prompt: ")
    assert detail in str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("llm: scripted\nrenderer: {provider: fake-text\nsession: {}\n", ":2:11:"),
        ('llm: scripted\nsystem_prompt: "never closed\nrenderer: fake-text\n', ":2:16:"),
    ],
)
def test_unclosed_brackets_and_quotes_are_reported_where_they_open(
    tmp_path: Path, registry: ProviderRegistry, text: str, where: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry)
    assert str(info.value).startswith(f"{path}{where} invalid YAML: this ")
    assert "is never closed" in str(info.value)


def test_every_problem_in_a_file_is_reported_in_one_run(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    path = write(
        tmp_path,
        """
        system_prompt: [not, text]
        llm:
          provider: scripted
          delay: soon
          dealy: 1
        tts:
          provider: nope
        renderer:
          provider: fake-text
          prefer: sideways
          api_key: ${UNSET_KEY}
        session:
          lookahead: -1
        extra: 1
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, registry=registry, env={})
    lines = str(info.value).splitlines()
    expected = [
        f"{path}:1:16: system_prompt: expected text",
        f"{path}:4:10: llm.delay: Input should be a valid number",
        f"{path}:5:3: llm.dealy: unknown option 'dealy'",
        f"{path}:7:13: tts.provider: no tts provider 'nope'",
        f"{path}:10:11: renderer.prefer: expected 'text' or 'audio'",
        f"{path}:11:12: renderer.api_key: environment variable UNSET_KEY is not set",
        f"{path}:13:14: session.lookahead: Input should be greater than or equal to 0",
        f"{path}:14:1: extra: unknown top-level key 'extra'",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.strip().startswith(start), (line, start)
    assert len(info.value.problems) == len(expected)
    assert isinstance(info.value.problems[3], ProviderNotFound)
    assert (info.value.line, info.value.column, info.value.field) == (1, 16, "system_prompt")


@pytest.mark.parametrize(
    ("yaml_value", "env", "why"),
    [
        ("${VAULT_KEY}", {"VAULT_KEY": ""}, "environment variable VAULT_KEY is set but empty"),
        ('""', {}, "it is given as an empty string"),
        ("'  '", {}, "it is given as an empty string"),
    ],
)
def test_an_empty_api_key_fails_check(
    tmp_path: Path, registry: ProviderRegistry, yaml_value: str, env: dict[str, str], why: str
) -> None:
    from avatarkit.config import check

    path = write(
        tmp_path, f"llm:\n  provider: vault\n  api_key: {yaml_value}\nrenderer: fake-text\n"
    )
    with pytest.raises(ConfigError) as info:
        check(path, registry=registry, env=env)
    assert str(info.value).startswith(f"{path}:3:12: llm.api_key: api_key is empty ({why})")


class PlainLLM:
    """A provider with no options model: its options reach it as written."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def stream(self, messages: Any) -> Any:
        yield "ok"


def test_an_unquoted_all_digit_key_is_a_secret_like_any_other(
    tmp_path: Path, registry: ProviderRegistry
) -> None:
    registry.llm("plain", PlainLLM)
    path = write(
        tmp_path,
        """
        llm:
          provider: plain
          api_key: 0012345678
          token: 98765432
        renderer: fake-text
        """,
    )
    config = load_config(path, registry=registry)
    # the text as written (YAML alone would read 0012345678 as the octal number 2739128)
    assert config.llm.options == {"api_key": "0012345678", "token": "98765432"}
    for text in (repr(config), repr(config.llm), dump_config(config), config.summary()):
        assert "12345678" not in text
        assert "2739128" not in text
        assert "98765432" not in text
    assert "api_key: '***'" in dump_config(config)

    vault = write(tmp_path, "llm: {provider: vault, api_key: 12345678, temperature: 2}\n", "v.yaml")
    with open(vault, "a") as f:
        f.write("renderer: fake-text\n")
    VaultLLM.built.clear()
    with pytest.raises(ConfigError) as info:
        load_session(vault, registry=registry)
    assert "temperature too high for key ***" in str(info.value)
    assert "12345678" not in str(info.value)


class CountedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    api_key: SecretStr
    max_token: int = 10  # named like a secret, declared as a number


def test_a_numeric_option_named_like_a_secret_stays_a_number(registry: ProviderRegistry) -> None:
    registry.llm("counted", PlainLLM, options=CountedOptions)
    config = load_config(
        {
            "llm": {"provider": "counted", "api_key": 4242, "max_token": 100},
            "renderer": "fake-text",
        },
        registry=registry,
    )
    assert config.llm.options["max_token"] == 100
    assert config.llm.options["api_key"].get_secret_value() == "4242"
