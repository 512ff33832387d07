"""The README's two commands, run as a new user would: from a fresh copy of the repository, under
Debian's externally-managed ``/usr/bin/python3`` with no uv on ``PATH`` and an empty home.

The demo command runs in full. The check command runs with ``AVATARKIT_CHECK_SMOKE=1``, which
limits ``scripts/check`` to its install step and a smoke subset of pytest: the whole suite is
what runs this test, so it must not start itself again. uv's package cache is shared with the
outer run to keep this quick; everything else (uv itself, the project's environment) is new.
Also: uv found on ``PATH``, a plain virtual environment, and a Python without ``venv``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
PASS_THROUGH = ("LANG", "LC_ALL", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "TMPDIR")


def _require_debian_python() -> None:
    managed = list(SYSTEM_PYTHON.parent.parent.glob("lib/python3*/EXTERNALLY-MANAGED"))
    if SYSTEM_PYTHON.exists() and managed:
        return
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's externally-managed /usr/bin/python3 for this test")
    pytest.skip("no externally-managed /usr/bin/python3 on this machine (Debian/Ubuntu only)")


def _uv() -> str | None:
    # `uv run` names itself in $UV (scripts/check may run a private uv that is not on PATH)
    return os.environ.get("UV") or shutil.which("uv")


def _uv_cache() -> str:
    uv = _uv()
    if uv is None:
        pytest.fail("uv is needed to find the shared package cache")
    out = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _env(home: Path, path: str, **extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env |= {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
    env |= {
        "PATH": path,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "UV_CACHE_DIR": _uv_cache(),
        "NO_MKDOCS_2_WARNING": "1",
    }
    return env | extra


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500, check=False
    )


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree's files as a clone has them (tracked and new, never ignored ones)."""
    _require_debian_python()
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = tmp_path_factory.mktemp("clone")
    for rel in filter(None, (f.decode() for f in files)):
        source = ROOT / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    return target


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def test_readme_gives_these_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (
        "```bash\nsh scripts/bootstrap run --no-dev --extra offline avatarkit demo\n```" in readme
    )
    assert "```bash\nbash scripts/check\n```" in readme
    assert "pip install uv" not in readme


def test_demo_command_on_debian_system_python_without_uv(clone: Path, home: Path) -> None:
    env = _env(home, "/usr/bin:/bin")
    result = _sh(["sh", "scripts/bootstrap", "run", "--no-dev", "--extra", "offline",
                  "avatarkit", "demo"], clone, env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bootstrap: installing uv into" in result.stderr  # no uv on PATH: a private one
    assert "externally-managed" not in result.stderr
    for name in ("demo.mp4", "demo.wav", "demo.vtt"):
        assert (clone / "avatarkit-demo" / name).stat().st_size > 0
    cfg = (clone / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg, cfg  # the project ran on Debian's own Python
    private = home / ".cache" / "avatarkit" / "bootstrap" / "venv" / "bin" / "uv"
    assert private.exists()


def test_check_command_smoke_on_debian_system_python(clone: Path, home: Path) -> None:
    env = _env(home, "/usr/bin:/bin", AVATARKIT_CHECK_SMOKE="1")
    result = _sh(["bash", "scripts/check"], clone, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke subset" in result.stdout
    assert " passed" in result.stdout
    assert "bootstrap: installing uv" not in result.stderr  # installed once, then reused


def test_bootstrap_uses_uv_from_path(tmp_path: Path) -> None:
    uv = _uv()
    assert uv is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").symlink_to(uv)
    env = _env(tmp_path, f"{bin_dir}:/usr/bin:/bin", AVATARKIT_BOOTSTRAP_VERBOSE="1")
    result = _sh(["sh", str(ROOT / "scripts" / "bootstrap"), "--version"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uv ")
    assert f"uv from PATH: {bin_dir / 'uv'}" in result.stderr
    assert not (tmp_path / ".cache" / "avatarkit").exists()  # installed nothing


def test_bootstrap_in_a_plain_venv_leaves_it_untouched(tmp_path: Path) -> None:
    _require_debian_python()
    venv = tmp_path / "plain"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
    before = sorted(p.name for p in (venv / "bin").iterdir())
    env = _env(tmp_path, f"{venv / 'bin'}:/usr/bin:/bin", VIRTUAL_ENV=str(venv))
    result = _sh(["sh", str(ROOT / "scripts" / "bootstrap"), "--version"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uv ")
    assert sorted(p.name for p in (venv / "bin").iterdir()) == before
    assert (tmp_path / ".cache" / "avatarkit" / "bootstrap" / "venv" / "bin" / "uv").exists()


def _python_without(tmp_path: Path, *modules: str) -> Path:
    """A python3 like Debian's without python3-venv (and, optionally, without pip)."""
    wrapper = tmp_path / "python3-without"
    cases = "\n".join(
        f'    -m) if [ "$2" = "{m}" ]; then echo "No module named {m}" >&2; exit 1; fi ;;'
        for m in modules
    )
    wrapper.write_text(
        f'#!/bin/sh\ncase "$1" in\n{cases}\nesac\nexec {SYSTEM_PYTHON} "$@"\n'
        if len(modules) == 1
        else "#!/bin/sh\n"
        'if [ "$1" = -m ] && { [ "$2" = venv ] || [ "$2" = pip ]; }; then\n'
        '    echo "No module named $2" >&2; exit 1\nfi\n'
        f'exec {SYSTEM_PYTHON} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_bootstrap_without_venv_falls_back_to_pip_target(tmp_path: Path) -> None:
    _require_debian_python()
    env = _env(tmp_path, "/usr/bin:/bin", PYTHON=str(_python_without(tmp_path, "venv")))
    result = _sh(["sh", str(ROOT / "scripts" / "bootstrap"), "--version"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uv ")
    assert (tmp_path / ".cache" / "avatarkit" / "bootstrap" / "target" / "bin" / "uv").exists()


def test_bootstrap_without_venv_or_pip_says_what_to_install(tmp_path: Path) -> None:
    _require_debian_python()
    env = _env(tmp_path, "/usr/bin:/bin", PYTHON=str(_python_without(tmp_path, "venv", "pip")))
    result = _sh(["sh", str(ROOT / "scripts" / "bootstrap"), "--version"], tmp_path, env)
    assert result.returncode == 1
    assert "neither a working venv module nor pip" in result.stderr
    assert "sudo apt install python3-venv" in result.stderr
    assert "No module named venv" in result.stderr
