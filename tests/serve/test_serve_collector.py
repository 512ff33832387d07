"""The garbage-collector policy of a serving process (``avatarkit.serve.collector``).

Each check runs in a fresh interpreter: the policy freezes the whole process, which must not
happen to the test run itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avatarkit.errors import AvatarKitError
from avatarkit.serve import run
from avatarkit.serve.collector import FULL_COLLECTION_EVERY, tune_collector

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


def test_tuned_freezes_what_exists_and_makes_full_collections_rarer() -> None:
    before = _python(REPORT)
    after = _python(
        "import gc; gc.set_threshold(900, 12, 10)\n"
        "from avatarkit.serve.collector import tune_collector; tune_collector('tuned')\n" + REPORT
    )
    assert before["frozen"] == 0
    assert isinstance(after["frozen"], int)
    assert after["frozen"] > 1000  # modules, classes...
    expected = [900, 12, FULL_COLLECTION_EVERY if sys.version_info < (3, 14) else 10]
    assert after["threshold"] == expected  # the young thresholds someone set are kept


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
