"""Fixtures: the fake HeyGen API and backend of :mod:`avatarkit_heygen.heygen_testing`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import anyio
import pytest

from avatarkit.testing import wait_until
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


@asynccontextmanager
async def cancelled_once(condition: Callable[[], bool]) -> AsyncIterator[anyio.CancelScope]:
    """A cancel scope cancelled as soon as ``condition()`` holds (a state the fake reached),
    not after a fixed delay, which a loaded machine can outrun or fall short of."""
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel() -> None:
                await wait_until(condition, within=60)
                scope.cancel()

            tg.start_soon(cancel)
            yield scope
            tg.cancel_scope.cancel()  # the body ended first: the test's own assertion says so
