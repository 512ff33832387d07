"""PyPI's unrelated ``avatarkit`` installed beside avatarkit-core is named plainly, not left to
fail obscurely.

Each case lays out a site-packages the way pip leaves it after installing both distributions
(the shared files ``__init__.py`` and ``errors.py`` belong to whichever was installed last), or
after uninstalling the other one (which deletes those shared files), and runs a fresh
interpreter on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from avatarkit import _install

SRC = Path(__file__).resolve().parent.parent / "src" / "avatarkit"

# What the other project's wheel (avatarkit 0.1.7) puts at the shared paths, in outline.
FOREIGN_INIT = '''"""Avatar SDK Python - WebSocket SDK for Avatar Services"""
from .errors import AvatarSDKError
__version__ = "0.1.7"
'''
FOREIGN_ERRORS = "class AvatarSDKError(Exception):\n    pass\n"


def _dist_info(site: Path, dirname: str, name: str, version: str) -> None:
    info = site / dirname
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _site(tmp_path: Path, *, last: str | None, foreign_installed: bool = True) -> Path:
    site = tmp_path / "site"
    shutil.copytree(SRC, site / "avatarkit", ignore=shutil.ignore_patterns("__pycache__"))
    _dist_info(site, "avatarkit_core-0.2.0.dist-info", "avatarkit-core", "0.2.0")
    if foreign_installed:
        _dist_info(site, "avatarkit-0.1.7.dist-info", "avatarkit", "0.1.7")
    if last == "foreign":
        (site / "avatarkit" / "__init__.py").write_text(FOREIGN_INIT)
        (site / "avatarkit" / "errors.py").write_text(FOREIGN_ERRORS)
    elif last == "removed":  # `pip uninstall avatarkit` deleted the files it had recorded
        (site / "avatarkit" / "__init__.py").unlink()
        (site / "avatarkit" / "errors.py").unlink()
    return site


def _python(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_warns_when_the_other_project_is_installed_beside_ours(tmp_path: Path) -> None:
    site = _site(tmp_path, last="ours")
    result = _python(site, "-c", "import avatarkit; print(avatarkit.__file__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(site / "avatarkit" / "__init__.py")
    assert "InstallConflictWarning" in result.stderr
    assert "the unrelated PyPI project 'avatarkit' (0.1.7)" in result.stderr
    assert (
        "pip uninstall -y avatarkit avatarkit-core && pip install avatarkit-core" in result.stderr
    )


def test_cli_runs_but_says_it_once_when_our_files_won(tmp_path: Path) -> None:
    site = _site(tmp_path, last="ours")
    result = _python(site, "-m", "avatarkit", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "avatarkit 0.2.0"
    assert result.stderr.count("the unrelated PyPI project 'avatarkit'") == 1


def test_cli_refuses_plainly_when_the_other_projects_files_won(tmp_path: Path) -> None:
    site = _site(tmp_path, last="foreign")
    result = _python(site, "-m", "avatarkit", "providers")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "error: `import avatarkit` finds the unrelated PyPI project 'avatarkit' (0.1.7), "
        "not avatarkit-core"
    )


def test_cli_says_so_when_an_uninstall_removed_our_files(tmp_path: Path) -> None:
    site = _site(tmp_path, last="removed", foreign_installed=False)
    # -S: without site-packages, so the checkout's editable avatarkit cannot stand in for the
    # namespace package the removal leaves (the check itself needs only the standard library).
    result = _python(site, "-S", "-m", "avatarkit", "check", "whatever.yaml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "incomplete or not from avatarkit-core" in result.stderr
    assert "pip install --force-reinstall avatarkit-core" in result.stderr


def test_no_conflict_no_message(tmp_path: Path) -> None:
    site = _site(tmp_path, last=None, foreign_installed=False)
    result = _python(site, "-W", "error", "-m", "avatarkit", "--version")
    assert (result.returncode, result.stderr) == (0, "")
    assert _install.check() is None  # this test environment: avatarkit-core alone


@pytest.mark.parametrize(
    ("entries", "found"),
    [
        (["avatarkit-0.1.7.dist-info"], "0.1.7"),
        (["avatarkit_core-0.2.0.dist-info", "avatarkit_openai-0.2.0.dist-info"], None),
        (["avatarkit-0.1.7.dist-info-backup", "avatarkit-demo"], None),
        (["avatarkit-core-0.2.0.dist-info"], None),  # not a version after the name
        ([], None),
    ],
)
def test_import_time_probe_reads_only_the_other_projects_dist_info(
    tmp_path: Path, entries: list[str], found: str | None
) -> None:
    for name in entries:
        (tmp_path / name).mkdir()
    (tmp_path / "avatarkit").mkdir()
    assert _install.foreign_beside(str(tmp_path / "avatarkit")) == found
