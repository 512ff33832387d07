"""Every distribution builds a wheel and an sdist that pass ``twine check``, with the metadata
and licences they claim; the wheels install into a fresh virtual environment from the built
files alone and ``avatarkit demo`` runs there.

Slow (one build per session, one fresh venv): marked ``slow``, and part of the test command.
Our distributions are never resolved from the package index: the third-party requirements read
from the built wheels are installed first, then the user's own command,
``pip install --no-index --find-links DIST "avatarkit-core[offline,...]"``, can only find ours
in DIST.
"""

from __future__ import annotations

import ast
import email.parser
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [
    ROOT,
    *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()),
]
NAMES = {tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"]: p for p in PROJECTS}
OURS = {canonicalize_name(n) for n in NAMES}
GPL = {"avatarkit-piper"}  # imports piper-tts 1.x (GPL-3.0-or-later)


def _uv() -> list[str]:
    # `uv run` names itself in $UV (scripts/check may run a private uv that is not on PATH)
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return [found]
    pytest.fail("uv is needed to build the wheels (scripts/bootstrap installs it)")


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


@dataclass
class Built:
    dist: Path
    wheels: dict[str, Path]  # distribution name -> wheel
    sdists: dict[str, Path]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    dist = tmp_path_factory.mktemp("dist")
    _run([*_uv(), "build", "--all-packages", "--quiet", "--out-dir", str(dist)], cwd=ROOT)
    wheels, sdists = {}, {}
    for path in dist.iterdir():
        if not path.name.endswith((".whl", ".tar.gz")):
            continue  # uv writes a .gitignore
        name = path.name.split("-")[0].replace("_", "-")
        (wheels if path.suffix == ".whl" else sdists)[name] = path
    return Built(dist, wheels, sdists)


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(meta).decode())


def test_every_distribution_builds_a_wheel_and_an_sdist(built: Built) -> None:
    assert set(built.wheels) == set(NAMES)
    assert set(built.sdists) == set(NAMES)


def test_twine_check_passes_strictly(built: Built) -> None:
    files = sorted(str(p) for p in [*built.wheels.values(), *built.sdists.values()])
    result = _run([sys.executable, "-m", "twine", "check", "--strict", *files])
    assert result.stdout.count("PASSED") == len(files), result.stdout


@pytest.mark.parametrize("name", sorted(NAMES))
def test_metadata_is_complete_and_the_licence_is_right(built: Built, name: str) -> None:
    meta = _metadata(built.wheels[name])
    assert meta["Name"] == name
    assert meta["Version"] == "0.2.0"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith(f"# {'avatarkit' if name == 'avatarkit-core' else name}")
    assert meta["License-Expression"] == ("GPL-3.0-or-later" if name in GPL else "MIT")
    assert meta.get_all("License-File") == ["LICENSE"]
    assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert f"PyPI, https://pypi.org/project/{name}/" in meta.get_all("Project-URL")
    licence = (NAMES[name] / "LICENSE").read_text()
    assert ("GNU GENERAL PUBLIC LICENSE" in licence) == (name in GPL)
    with zipfile.ZipFile(built.wheels[name]) as zf:
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist())
    with tarfile.open(built.sdists[name]) as tf:
        members = {Path(m).name for m in tf.getnames()}
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= members


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"avatarkit-core"}))
def test_plugins_depend_on_the_core_by_its_name_with_a_range(built: Built, name: str) -> None:
    requires = [Requirement(r) for r in _metadata(built.wheels[name]).get_all("Requires-Dist")]
    (core,) = [r for r in requires if canonicalize_name(r.name) == "avatarkit-core"]
    assert str(core.specifier) == "<0.3,>=0.2"
    assert [r for r in requires if canonicalize_name(r.name) == "avatarkit"] == []


def test_the_core_wheel_imports_no_gpl_code(built: Built) -> None:
    with zipfile.ZipFile(built.wheels["avatarkit-core"]) as zf:
        sources = {n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".py")}
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source, name)):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for module in modules:
                assert module.split(".")[0] not in {"piper", "avatarkit_piper"}, name


# -- a fresh virtual environment from the built files -------------------------------------------


def _third_party(built: Built, extras: set[str]) -> list[str]:
    """The requirements of our wheels (with ``extras`` of the core) that are not ours."""
    out = []
    for name, wheel in built.wheels.items():
        for line in _metadata(wheel).get_all("Requires-Dist") or []:
            req = Requirement(line)
            if canonicalize_name(req.name) in OURS:
                continue
            env = {"extra": ""}
            if req.marker and name == "avatarkit-core":
                if not any(req.marker.evaluate({"extra": e}) for e in extras):
                    continue
            elif req.marker and not req.marker.evaluate(env):
                continue
            req.marker = None  # decided above
            out.append(str(req))
    return sorted(set(out))


@pytest.fixture(scope="session")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(root)])
    python = root / "bin" / "python"
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(core["optional-dependencies"])  # every extra of the core
    # 1. Third-party requirements only (from the index, or uv's cache): none of our names.
    _run(
        [*_uv(), "pip", "install", "--quiet", "--python", str(python), *_third_party(built, extras)]
    )
    # 2. The user's command, with the index switched off: ours can only come from the files.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    _run(
        [
            str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-index", "--find-links", str(built.dist),
            f"avatarkit-core[{','.join(sorted(extras))}]",
            *sorted(set(NAMES) - {"avatarkit-core"}),  # and every plugin, extra or not
        ],
        env=env,
    )  # fmt: skip
    _run([str(python), "-m", "pip", "check"], env=env)
    return root


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("UV_")
    }


def test_fresh_venv_runs_the_demo_from_the_built_wheels(venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = _run(
        [str(venv / "bin" / "avatarkit"), "demo", "--output", str(out)],
        cwd=tmp_path,
        env=_clean_env(),
        timeout=600,
    )
    for name in ("demo.mp4", "demo.wav", "demo.vtt"):
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in result.stdout
    assert "avatar:" in result.stdout
    assert "InstallConflictWarning" not in result.stderr


def test_fresh_venv_has_our_files_from_site_packages(venv: Path, tmp_path: Path) -> None:
    code = (
        "import json, importlib, importlib.metadata as md\n"
        "names = {}\n"
        f"for dist in {sorted(NAMES)!r}:\n"
        "    d = md.distribution(dist)\n"
        "    for f in d.files:\n"
        "        if f.suffix == '.py' and f.parts[0].startswith('avatarkit'):\n"
        "            mod = '.'.join(f.with_suffix('').parts).removesuffix('.__init__')\n"
        "            if mod.endswith('__main__'): continue\n"
        "            try:\n"
        "                names[mod] = importlib.import_module(mod).__file__\n"
        "            except ModuleNotFoundError as exc:\n"
        "                if exc.name not in ('pytest', 'hypothesis'): raise\n"
        "                names[mod] = 'needs ' + exc.name\n"
        "print(json.dumps(names))\n"
    )
    result = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_clean_env())
    files = json.loads(result.stdout)
    assert "avatarkit.session" in files
    assert "avatarkit_heygen.liveavatar" in files
    test_only = {m for m, f in files.items() if f.startswith("needs ")}
    assert "avatarkit.pytest_plugin" in test_only  # pytest is not installed here
    assert {m.split(".")[-1] for m in test_only} <= {
        "pytest_plugin",
        "testing",
        "liveavatar_testing",
    }
    assert all("site-packages" in f for m, f in files.items() if m not in test_only), files
    table = json.loads(
        _run(
            [str(venv / "bin" / "avatarkit"), "providers", "--json"], cwd=tmp_path, env=_clean_env()
        ).stdout
    )
    assert table["broken"] == []
    by_name = {(p["kind"], p["name"]): p for p in table["providers"]}
    assert by_name[("llm", "scripted")]["distribution"] == "avatarkit-core"
    assert by_name[("tts", "piper")]["distribution"] == "avatarkit-piper"
    assert by_name[("renderer", "liveavatar")]["capabilities"] == ["speak_text", "speak"]
    assert all(p["version"] == "0.2.0" for p in table["providers"])
