"""pytest fixtures for plugin authors, loaded automatically when avatarkit is installed.

``fake_llm``, ``fake_tts``, ``fake_text_renderer``, ``fake_audio_renderer``: fresh fakes from
:mod:`avatarkit.testing` that record every call. ``fake_providers``: the plugin registering
those fakes (as ``fake``, ``fake-text``, ``fake-audio``), which tracks every instance built
through it. ``provider_registry``: every *installed* plugin (yours included, through its real
entry point) plus the fakes, so a test can load a session that pairs your provider with fakes.

avatarkit is imported only when a fixture is used, so other projects' test runs stay unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from avatarkit.plugins import ProviderRegistry
    from avatarkit.testing import (
        FakeAudioRenderer,
        FakeLLM,
        FakeProvidersPlugin,
        FakeTextRenderer,
        FakeTTS,
    )

__all__ = [
    "fake_audio_renderer",
    "fake_llm",
    "fake_providers",
    "fake_text_renderer",
    "fake_tts",
    "provider_registry",
]


@pytest.fixture
def fake_llm() -> FakeLLM:
    """A :class:`~avatarkit.testing.FakeLLM` with its default reply."""
    from avatarkit.testing import FakeLLM

    return FakeLLM()


@pytest.fixture
def fake_tts() -> FakeTTS:
    """A :class:`~avatarkit.testing.FakeTTS` (16 kHz tone, 10 ms per character)."""
    from avatarkit.testing import FakeTTS

    return FakeTTS()


@pytest.fixture
def fake_text_renderer() -> FakeTextRenderer:
    """A :class:`~avatarkit.testing.FakeTextRenderer` that records what it was told to say."""
    from avatarkit.testing import FakeTextRenderer

    return FakeTextRenderer()


@pytest.fixture
def fake_audio_renderer() -> FakeAudioRenderer:
    """A :class:`~avatarkit.testing.FakeAudioRenderer` that records the audio it was fed."""
    from avatarkit.testing import FakeAudioRenderer

    return FakeAudioRenderer()


@pytest.fixture
def fake_providers() -> FakeProvidersPlugin:
    """The plugin that registers the fakes; ``.of(FakeLLM)`` lists the ones built."""
    from avatarkit.testing import FakeProvidersPlugin

    return FakeProvidersPlugin()


@pytest.fixture
def provider_registry(fake_providers: FakeProvidersPlugin) -> Iterator[ProviderRegistry]:
    """Built-ins + installed plugins (loaded from their entry points) + the fakes."""
    from avatarkit.testing import registered

    with registered(fake_providers, entry_points=True) as registry:
        yield registry
