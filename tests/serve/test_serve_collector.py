"""The garbage-collector policy of a serving process (``avatarkit.serve.collector``).

Each check runs in a fresh interpreter: the policy freezes the whole process, which must not
happen to the test run itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatarkit.errors import AvatarKitError
from avatarkit.serve import collector, run
from avatarkit.serve.collector import (
    FULL_COLLECTION_EVERY,
    YOUNG_COLLECTION_AFTER,
    collect_periodically,
    tune_collector,
)

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


REPORT = (
    "import gc, json\n"
    "print(json.dumps({'threshold': gc.get_threshold(), 'frozen': gc.get_freeze_count()}))"
)


def test_tuned_freezes_what_exists_and_makes_collections_rare() -> None:
    before = _python(REPORT)
    after = _python(
        "import gc; gc.set_threshold(900, 12, 10)\n"
        "from avatarkit.serve.collector import tune_collector; tune_collector('tuned')\n" + REPORT
    )
    assert before["frozen"] == 0
    assert isinstance(after["frozen"], int)
    assert after["frozen"] > 1000  # modules, classes...
    if sys.version_info < (3, 14):
        expected = [YOUNG_COLLECTION_AFTER, 12, FULL_COLLECTION_EVERY]  # the middle one is kept
    else:
        expected = [900, 12, 10]  # incremental: only the freeze applies
    assert after["threshold"] == expected


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's collector is incremental")
def test_tuned_keeps_a_larger_young_threshold_and_a_disabled_collector() -> None:
    larger = _python(
        "import gc; gc.set_threshold(500000, 10, 10)\n"
        "from avatarkit.serve.collector import tune_collector; tune_collector('tuned')\n" + REPORT
    )
    assert larger["threshold"] == [500000, 10, FULL_COLLECTION_EVERY]
    off = _python(
        "import gc; gc.set_threshold(0, 10, 10)\n"
        "from avatarkit.serve.collector import tune_collector; tune_collector('tuned')\n" + REPORT
    )
    assert off["threshold"] == [0, 10, FULL_COLLECTION_EVERY]


def _full_collections() -> tuple[list[int], object]:
    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(2)

    return seen, callback


@pytest.fixture
def thawed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests freeze the test process itself: give every object back to the collector."""
    import gc

    monkeypatch.setattr(collector, "_baseline", None)
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("thawed")
async def test_collect_periodically_runs_full_collections_until_cancelled() -> None:
    import gc

    import anyio

    from avatarkit.testing import wait_until

    seen, callback = _full_collections()
    gc.callbacks.append(callback)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect_periodically, 0.05)
            await wait_until(lambda: len(seen) >= 3, within=60)
            tg.cancel_scope.cancel()
        during = len(seen)
        await anyio.sleep(0.3)
    finally:
        gc.callbacks.remove(callback)
    assert len(seen) == during  # none once cancelled


class _Node:
    """An object in a reference cycle (only the collector frees it)."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("thawed")
async def test_survivors_are_frozen_and_garbage_in_cycles_is_still_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import weakref

    import anyio

    from avatarkit.testing import wait_until

    memory = [1000]  # the process's peak memory as the policy reads it
    monkeypatch.setattr(collector, "FREEZE_EVERY", 0.02)
    monkeypatch.setattr(collector, "peak_memory", lambda: memory[0])
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect_periodically, 3600.0)  # no full collection by the clock
        kept = [[n] for n in range(5000)]
        await wait_until(lambda: gc.get_freeze_count() >= 5000, within=30)  # frozen
        assert gc.get_count()[0] < YOUNG_COLLECTION_AFTER
        # Garbage in cycles, frozen before it became garbage: only a full collection frees it.
        node = _Node()
        dead = weakref.ref(node)
        await anyio.sleep(0.1)  # frozen now
        del node
        gc.collect()  # a collection that does not unfreeze leaves it
        await anyio.sleep(0.1)
        assert dead() is not None
        memory[0] = 1400  # grown, but not by half: still there
        await anyio.sleep(0.1)
        assert dead() is not None
        memory[0] = 1600  # by half: a full collection frees it
        await wait_until(lambda: dead() is None, within=30)
        tg.cancel_scope.cancel()
    assert len(kept) == 5000  # what is used stays, frozen or not


def test_peak_memory_grows_with_what_the_process_holds() -> None:
    """In a fresh interpreter (tens of MiB), not this test process."""
    result = _python(
        "import json, sys\n"
        "from avatarkit.serve.collector import peak_memory\n"
        "before = peak_memory()\n"
        "unit = 1 if sys.platform == 'darwin' else 1024  # ru_maxrss: bytes on macOS, else KiB\n"
        "held = b'x' * (2 * before * unit)  # twice the peak, written\n"
        "print(json.dumps({'before': before, 'after': peak_memory()}))"
    )
    before, after = result["before"], result["after"]
    assert isinstance(before, int)
    assert isinstance(after, int)
    assert before > 0  # Linux and macOS say
    assert after > before * 1.5


async def test_collect_periodically_does_nothing_without_the_tuned_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio

    monkeypatch.setattr(collector, "_interval", None)
    with anyio.fail_after(5):
        await collect_periodically()  # returns at once: Python's own collections go on


@pytest.mark.usefixtures("thawed")
def test_the_serve_lifespan_runs_the_tuned_full_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import time

    from starlette.testclient import TestClient

    from avatarkit.serve import create_app

    monkeypatch.setattr(collector, "_interval", 0.05)
    app = create_app(lambda: None, max_sessions=1)  # type: ignore[arg-type, return-value]
    seen, callback = _full_collections()
    gc.callbacks.append(callback)
    try:
        with TestClient(app):
            deadline = time.monotonic() + 60
            while len(seen) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            during = len(seen)
        time.sleep(0.3)
        after = len(seen)
    finally:
        gc.callbacks.remove(callback)
    assert during >= 3
    assert after == during  # the lifespan's end stops them


def test_python_leaves_the_collector_alone() -> None:
    before = _python(REPORT)
    after = _python(
        "from avatarkit.serve.collector import tune_collector; tune_collector('python')\n" + REPORT
    )
    assert after == before


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown garbage-collector policy 'fast'"):
        tune_collector("fast")  # type: ignore[arg-type]


def test_serve_refuses_an_unknown_gc_option(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("llm: {provider: scripted}\nrenderer: {provider: console}\n")
    with pytest.raises(AvatarKitError, match="--gc must be tuned or python, not 'fast'"):
        run(config, gc="fast")
    done = subprocess.run(
        [sys.executable, "-m", "avatarkit", "serve", str(config), "--gc", "fast"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid choice: 'fast'" in done.stderr


@pytest.mark.parametrize("policy", ["tuned", "python"])
def test_each_worker_applies_the_policy_it_is_given(tmp_path: Path, policy: str) -> None:
    """What uvicorn's supervisor runs in each worker: ``avatarkit.serve.worker:app``."""
    config = tmp_path / "s.yaml"
    config.write_text("llm: {provider: scripted}\nrenderer: {provider: console}\n")
    from avatarkit.serve.worker import SETTINGS_ENV, ServeSettings

    settings = ServeSettings(path=str(config), max_sessions=3, gc=policy)  # type: ignore[arg-type]
    after = _python(
        "from avatarkit.serve.worker import app; app()\n" + REPORT,
        env={SETTINGS_ENV: settings.to_json()},
    )
    if policy == "tuned":
        assert isinstance(after["frozen"], int)
        assert after["frozen"] > 1000
    else:
        assert after["frozen"] == 0
        assert after["threshold"] == _python(REPORT)["threshold"]
