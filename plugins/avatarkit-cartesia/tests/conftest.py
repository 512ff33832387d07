from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatarkit_cartesia.testing import FakeCartesia


@pytest.fixture
def fake_cartesia() -> Iterator[FakeCartesia]:
    with FakeCartesia() as fake:
        yield fake
