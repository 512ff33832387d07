"""The test groups of the root ``conftest.py`` under pytest-xdist, as ``scripts/check`` runs the
suite (``-n N --dist loadgroup``): a group's tests run on one worker, one after another, and a test
that uses a Chromium fixture outside the browser group fails and says where to add it.

xdist's own loadgroup learns the groups from node ids that pytest 9.2 no longer lets it change
(pytest-xdist#1386): without the scheduler in ``conftest.py`` the groups would be spread over all
workers without a word. This runs a small project with a copy of that ``conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GROUPED = """
import os, pathlib, time
import pytest

@pytest.mark.parametrize("i", range(6))
def test_records_its_worker(i: int) -> None:
    time.sleep(0.05)  # long enough for the other worker to be asked for work meanwhile
    name = f"{__name__}-{i}"
    (pathlib.Path(os.environ["RECORD"]) / name).write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_a_group_runs_on_one_worker_and_chromium_tests_must_be_grouped(tmp_path: Path) -> None:
    project, record = tmp_path / "project", tmp_path / "record"
    record.mkdir()
    (project / "tests" / "serve").mkdir(parents=True)
    shutil.copy(ROOT / "conftest.py", project / "conftest.py")
    (project / "pytest.ini").write_text("[pytest]\n")  # its own rootdir, not the repository's
    # Two files of the "install" group and one of "whisper" (a folder), then tests of no group.
    (project / "tests" / "test_wheels.py").write_text(GROUPED)
    (project / "tests" / "test_fresh_clone.py").write_text(GROUPED)
    (project / "plugins" / "avatarkit-whisper" / "tests").mkdir(parents=True)
    (project / "plugins" / "avatarkit-whisper" / "tests" / "test_w.py").write_text(GROUPED)
    (project / "tests" / "test_free.py").write_text(GROUPED)
    # A Chromium test in a file that is not in the browser group.
    (project / "tests" / "serve" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef chromium() -> None:\n    return None\n"
    )
    (project / "tests" / "serve" / "test_new_page.py").write_text(
        "def test_uses_the_browser(chromium: None) -> None:\n    pass\n"
    )
    env = {**os.environ, "RECORD": str(record)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist",
         "loadgroup", "-q", "-o", "addopts=", "--import-mode=importlib", "plugins", "tests"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert "24 passed, 1 error" in out, out
    assert (
        "tests/serve/test_new_page.py::test_uses_the_browser uses the 'chromium' fixture: add "
        "its file to GROUPS in conftest.py as 'browser'"
    ) in out
    workers: dict[str, set[str]] = {}
    for path in record.iterdir():
        module = path.name.rsplit("-", 1)[0].rsplit(".", 1)[-1]
        workers.setdefault(module, set()).add(path.read_text())
    assert sorted(workers) == ["test_free", "test_fresh_clone", "test_w", "test_wheels"]
    assert len(workers["test_wheels"] | workers["test_fresh_clone"]) == 1  # "install"
    assert len(workers["test_w"]) == 1  # "whisper"
    assert workers["test_wheels"] | workers["test_w"] | workers["test_free"] == {"gw0", "gw1"}
