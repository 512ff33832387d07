from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatarkit_elevenlabs.testing import FakeElevenLabs


def pytest_configure(config: pytest.Config) -> None:
    # httpcore's body reader is a chain of async generators; when a consumer stops early
    # (check_tts abandons the stream after one chunk) our code closes the response, but trio's GC
    # hook still finds those inner generators unexhausted and warns. Ignore exactly those.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:Async generator '(httpx|httpcore)\.:ResourceWarning",
    )


@pytest.fixture
def fake_elevenlabs() -> Iterator[FakeElevenLabs]:
    with FakeElevenLabs() as fake:
        yield fake
