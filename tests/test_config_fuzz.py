"""Fuzzing the YAML loader: any input gives a session or an avatarkit error, never another one.

Three kinds of input, from hypothesis: arbitrary text written to a file (mostly not YAML at
all), YAML documents built from the real schema's words with random values in random places
(so they get past the parser and exercise validation, interpolation and routing), and Python
mappings of the same shapes (``load_session`` takes a mapping too).

Then the parts a hostile or clever file uses: anchors, aliases and merge keys (checked against
``yaml.safe_load`` as the reference, value for value), nested aliases at every width and depth
(loaded exactly when under the value budget, refused above it), and nested ``${...}`` defaults
(checked against a reference evaluator of the same template).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarkit import AvatarKitError, AvatarSession, load_session
from avatarkit.plugins import ProviderRegistry
from avatarkit.testing import FakeProvidersPlugin, registered

# The schema strategy is big; hypothesis warns that printing it would be too (harmless).
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

ENV = {"NAME": "fake", "EMPTY": "", "NUM": "3", "KEY": "sk-secret"}
WORDS = [
    "system_prompt",
    "llm",
    "tts",
    "renderer",
    "session",
    "provider",
    "prefer",
    "lookahead",
    "max_history",
    "timeouts",
    "first_token",
    "tts_first_chunk",
    "speak",
    "interrupt_grace",
    "replies",
    "token_delay",
    "first_token_delay",
    "sample_rate",
    "ms_per_char",
    "seconds_per_char",
    "realtime",
    "api_key",
]
PROVIDERS = ["fake", "fake-text", "fake-audio", "scripted", "nope", "${NAME}", "${MISSING}"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [*PROVIDERS, "text", "audio", "${NUM}", "${EMPTY:-x}", "${KEY}", "${", "$${NAME}", "-1"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=12,
)
section = st.fixed_dictionaries(
    {"provider": st.one_of(st.sampled_from(PROVIDERS), scalars)},
    optional=dict.fromkeys(WORDS[6:], values),
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "system_prompt": scalars,
        "llm": st.one_of(section, values),
        "tts": st.one_of(section, values),
        "renderer": st.one_of(section, values),
        "session": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "lookahead": scalars,
                    "max_history": scalars,
                    "timeouts": st.one_of(st.dictionaries(st.sampled_from(WORDS), scalars), values),
                },
            ),
            values,
        ),
        "extra": values,
    },
)


@pytest.fixture(scope="module")
def registry() -> Iterator[ProviderRegistry]:
    with registered(FakeProvidersPlugin()) as reg:
        yield reg


def load(source: Any, registry: ProviderRegistry) -> None:
    try:
        session = load_session(source, registry=registry, env=ENV)
    except AvatarKitError:
        return
    assert isinstance(session, AvatarSession)


def load_text(text: str, registry: ProviderRegistry) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "session.yaml"
        path.write_text(text, encoding="utf-8")
        load(path, registry)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_loads_or_gives_an_avatarkit_error(text: str, registry: ProviderRegistry) -> None:
    load_text(text, registry)


@FUZZ
@given(document=documents)
def test_any_document_of_the_schema_loads_or_gives_an_avatarkit_error(
    document: dict[str, Any], registry: ProviderRegistry
) -> None:
    load_text(yaml.safe_dump(document, allow_unicode=True), registry)


@FUZZ
@given(document=documents, cut=st.integers(0, 400))
def test_truncated_yaml_loads_or_gives_an_avatarkit_error(
    document: dict[str, Any], cut: int, registry: ProviderRegistry
) -> None:
    load_text(yaml.safe_dump(document, default_flow_style=True)[:cut], registry)


@FUZZ
@given(document=st.one_of(documents, st.dictionaries(st.text(max_size=8), values, max_size=4)))
def test_any_mapping_loads_or_gives_an_avatarkit_error(
    document: dict[str, Any], registry: ProviderRegistry
) -> None:
    load(document, registry)


# -- aliases, merge keys and nested substitutions ------------------------------------------------

KEYS = ["provider", "replies", "delay", "a", "b", "c"]
PLAIN = ["scripted", "fake-text", "1", "0.5", "yes", "null", "'quoted'", "hello", "-3"]


@st.composite
def aliased_yaml(draw: st.DrawFn) -> str:
    """A flow-style YAML document where values may carry anchors, later values may be aliases to
    them, and mappings may merge (``<<:``) earlier anchors, including ones that are not mappings
    (an error both loaders must agree on)."""
    anchors: list[str] = []

    def node(depth: int) -> str:
        choice = draw(st.integers(0, 5 if depth < 4 else 1))
        if choice == 1 and anchors:
            return "*" + draw(st.sampled_from(anchors))
        if choice in (0, 1):
            text = draw(st.sampled_from(PLAIN))
        elif choice == 2:
            text = "[" + ", ".join(node(depth + 1) for _ in range(draw(st.integers(0, 3)))) + "]"
        else:
            entries = [
                f"{draw(st.sampled_from(KEYS))}: {node(depth + 1)}"
                for _ in range(draw(st.integers(0, 3)))
            ]
            if anchors and draw(st.booleans()):
                merged = draw(st.lists(st.sampled_from(anchors), min_size=1, max_size=3))
                merge = "*" + merged[0] if len(merged) == 1 else f"[*{', *'.join(merged)}]"
                entries.insert(draw(st.integers(0, len(entries))), f"<<: {merge}")
            text = "{" + ", ".join(entries) + "}"
        if draw(st.integers(0, 2)) == 0:
            name = f"a{len(anchors)}"
            anchors.append(name)  # defined once its value is complete: no recursive aliases
            return f"&{name} {text}"
        return text

    return node(0)


@FUZZ
@given(text=aliased_yaml())
def test_aliases_and_merge_keys_load_as_safe_load_does(text: str) -> None:
    from avatarkit._yaml import YAMLProblem, parse_yaml

    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        expected = YAMLProblem  # a sentinel: safe_load refuses it
    if expected is YAMLProblem:  # we refuse what safe_load refuses
        with pytest.raises((yaml.YAMLError, YAMLProblem)):
            parse_yaml(text, None)
        return
    doc = parse_yaml(text, None)  # and nothing else (these documents are far below the budget)
    if not doc.problems:  # with a duplicate key safe_load keeps the last, we report it
        assert doc.value == expected, text


@FUZZ
@given(
    base=st.dictionaries(st.sampled_from(["replies", "delay", "rules", "provider"]), values),
    override=st.dictionaries(st.sampled_from(["replies", "delay", "provider"]), values),
    provider=st.sampled_from(PROVIDERS),
)
def test_sessions_built_from_anchors_and_merge_keys_load_or_give_an_avatarkit_error(
    base: dict[str, Any], override: dict[str, Any], provider: str, registry: ProviderRegistry
) -> None:
    dump = yaml.safe_dump
    text = (
        f"x-base: &base {dump({'provider': provider, **base}, default_flow_style=True)}"
        f"llm:\n  <<: *base\n"
        + "".join(
            f"  {k}: {dump(v, default_flow_style=True).strip()}\n" for k, v in override.items()
        )
        + "renderer: &r {provider: fake-text}\n"
        + "tts: *r\n"
    )
    load_text(text, registry)


@FUZZ
@given(width=st.integers(1, 12), depth=st.integers(1, 12))
def test_nested_aliases_load_exactly_up_to_the_budget(width: int, depth: int) -> None:
    from avatarkit._yaml import MAX_VALUES, YAMLProblem, parse_yaml

    lines = "".join(f"- &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n" for i in range(1, depth + 1))
    text = f"- &l0 lol\n{lines}"
    sizes = [1]  # values in level i once expanded (the list itself counts one)
    for _ in range(depth):
        sizes.append(1 + width * sizes[-1])
    if 1 + sum(sizes) > MAX_VALUES:
        with pytest.raises(YAMLProblem, match="aliases are expanded"):
            parse_yaml(text, None)
    else:
        assert parse_yaml(text, None).value == yaml.safe_load(text)


# A template is a list of parts: literal text, "$$", or ("var", NAME, default-template | None).
names = st.sampled_from(["SET", "EMPTY", "UNSET", "OTHER_KEY"])
FUZZ_ENV = {"SET": "set-value", "EMPTY": "", "OTHER_KEY": "k3y"}
templates = st.recursive(
    st.lists(st.one_of(st.text(alphabet="ab {:-x ", max_size=4), st.just("$$")), max_size=3),
    lambda inner: st.lists(
        st.one_of(
            st.text(alphabet="ab {:-x ", max_size=4),
            st.just("$$"),
            st.tuples(st.just("var"), names, st.one_of(st.none(), inner)),
        ),
        max_size=4,
    ),
    max_leaves=8,
)


class Missing(Exception):
    pass


def render(parts: list[Any]) -> str:
    """The template as it is written in YAML."""
    out = ""
    for part in parts:
        if isinstance(part, tuple):
            _, name, default = part
            out += f"${{{name}}}" if default is None else f"${{{name}:-{render(default)}}}"
        else:
            out += part
    return out


def evaluate(parts: list[Any]) -> str:
    """What the template means: the reference the loader is checked against."""
    out = ""
    for part in parts:
        if part == "$$":
            out += "$"
        elif isinstance(part, tuple):
            _, name, default = part
            value = FUZZ_ENV.get(name)
            if default is None:
                if value is None:
                    raise Missing(name)
                out += value
            else:
                out += value if value else evaluate(default)
        else:
            out += part
    return out


@FUZZ
@given(parts=templates)
def test_nested_substitutions_mean_what_they_say(
    parts: list[Any], registry: ProviderRegistry
) -> None:
    from avatarkit.config import load_config
    from avatarkit.errors import ConfigError

    text = render(parts)
    source = {"system_prompt": text, "llm": "scripted", "renderer": "fake-text"}
    try:
        expected = evaluate(parts)
    except Missing as missing:
        with pytest.raises(ConfigError, match=f"environment variable {missing} is not set"):
            load_config(source, registry=registry, env=FUZZ_ENV)
        return
    assert load_config(source, registry=registry, env=FUZZ_ENV).system_prompt == expected


@FUZZ
@given(text=st.text(alphabet="${}:-AB_ 1", max_size=24))
def test_any_dollar_soup_substitutes_or_gives_a_config_error(
    text: str, registry: ProviderRegistry
) -> None:
    from avatarkit.config import load_config
    from avatarkit.errors import ConfigError

    source = {"system_prompt": text, "llm": "scripted", "renderer": "fake-text"}
    try:
        load_config(source, registry=registry, env={"A": "x", "B": ""})
    except ConfigError as exc:
        field = exc.field
    else:
        field = None
    assert field in (None, "system_prompt")
