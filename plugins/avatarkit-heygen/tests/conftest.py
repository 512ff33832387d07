"""Fixtures: the fake HeyGen API and backend of :mod:`avatarkit_heygen.heygen_testing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatarkit_heygen.heygen_testing import (
    API_KEY,
    AVATAR,
    BACKEND_TOKEN,
    Call,
    FakeBackend,
    FakeHeyGen,
    Fault,
)

__all__ = ["API_KEY", "AVATAR", "BACKEND_TOKEN", "Call", "FakeBackend", "FakeHeyGen", "Fault"]


@pytest.fixture
def heygen() -> Iterator[FakeHeyGen]:
    server = FakeHeyGen()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def backend(heygen: FakeHeyGen) -> Iterator[FakeBackend]:
    server = FakeBackend(heygen)
    try:
        yield server
    finally:
        server.close()
