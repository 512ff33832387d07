from __future__ import annotations

from typing import Any

import pytest

# Test groups for pytest-xdist. `scripts/check` runs `pytest -n N --dist loadgroup`: the tests of
# one group run one after another on a single worker, so that two of them never run at once and
# the heavy fixtures they share are made once per run; any other test goes to whichever worker is
# free. The groups go out first (most tests first), so that none of them is left for the end.
# Keys are paths from the repository root: a file, or a folder ending in "/".
GROUPS = {
    # Chromium, one at a time (tests/serve/conftest.py `chromium`, `mic_chromium`; npm install)
    "tests/serve/test_serve_page.py": "browser",
    "tests/serve/test_serve_framing.py": "browser",
    "tests/serve/test_serve_mic_browser.py": "browser",
    "tests/serve/test_serve_cli.py": "browser",
    "tests/serve/test_serve_deploy.py": "browser",
    # Fresh environments from the package index and uv's shared cache, one at a time: side by
    # side on a loaded machine each ran 3-6 times slower than alone (near the 120 s timeout).
    "tests/test_wheels.py": "install",  # builds every wheel once, then one fresh venv
    "tests/test_fresh_clone.py": "install",  # a copy of the repository, bootstrap, uv sync
    "plugins/avatarkit-heygen/tests/test_conformance.py": "conformance",  # node, npm, a venv
    "plugins/avatarkit-whisper/tests/": "whisper",  # loads the Whisper model once, not per worker
}
# A test that uses one of these fixtures must be in a file of that group (else it fails).
GROUP_FIXTURES = {"chromium": "browser", "mic_chromium": "browser", "livekit_client": "browser"}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def group_of(nodeid: str) -> str | None:
    """The group of the test ``nodeid`` (see GROUPS), or None."""
    path = nodeid.split("::", 1)[0]
    for prefix, group in GROUPS.items():
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return group
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not hasattr(item.config, "workerinput"):
        return  # not an xdist worker: nothing runs beside this test
    for fixture, group in GROUP_FIXTURES.items():
        if fixture in getattr(item, "fixturenames", ()) and group_of(item.nodeid) != group:
            pytest.fail(
                f"{item.nodeid} uses the {fixture!r} fixture: add its file to GROUPS in "
                f"conftest.py as {group!r}, so that it never runs beside another such test",
                pytrace=False,
            )


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, when it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):
        """``--dist loadgroup`` with the GROUPS above, decided here in the controller.

        xdist's own loadgroup learns a test's group from an ``@group`` suffix that its workers
        add to the node id; pytest 9.2 no longer lets them (pytest-xdist#1386), so that alone
        would spread every group over all workers without a word. ``xdist_group`` marks still
        count wherever the suffix does come through.
        """

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)
