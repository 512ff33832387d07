"""Fuzzing the YAML loader: any input gives a session or an avatarkit error, never another one.

Three kinds of input, from hypothesis: arbitrary text written to a file (mostly not YAML at
all), YAML documents built from the real schema's words with random values in random places
(so they get past the parser and exercise validation, interpolation and routing), and Python
mappings of the same shapes (``load_session`` takes a mapping too).
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
