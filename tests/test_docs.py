"""Meta-tests: the docs cover every hook, public name, CLI command and plugin, and the plugin
tutorial's code is real (installed through its entry point and tested)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import avatarkit
from avatarkit.cli import build_parser
from avatarkit.plugins import get_plugin_manager
from avatarkit.testing import installed_distribution

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHOUT = DOCS / "plugins" / "avatarkit-shout"


def test_every_hook_is_documented_with_its_signature() -> None:
    hooks_md = (DOCS / "plugins" / "hooks.md").read_text()
    pm = get_plugin_manager(entry_points=False)
    hooks = [name for name in dir(pm.hook) if not name.startswith("_")]
    assert hooks, "no hooks found"
    for name in hooks:
        caller = getattr(pm.hook, name)
        assert caller.spec is not None
        signature = f"{name}({', '.join(caller.spec.argnames)})"
        assert re.search(rf"^#+ `?{re.escape(signature)}`?$", hooks_md, re.M), (
            f"docs/plugins/hooks.md needs a heading `{signature}`"
        )


def _rendered_modules() -> dict[str, str]:
    pages = {p.name: p.read_text() for p in (DOCS / "reference").glob("*.md")}
    return {
        module: page
        for page, text in pages.items()
        for module in re.findall(r"^::: ([\w.]+)", text, re.M)
    }


def test_every_public_name_is_in_the_reference() -> None:
    rendered = _rendered_modules()
    text = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    missing = []
    for name in avatarkit.__all__:
        covered = any(
            name in getattr(importlib.import_module(module), "__all__", ()) for module in rendered
        )
        if not covered and f"avatarkit.{name}" not in text:
            missing.append(name)
    assert missing == [], f"not rendered by any ::: block in docs/reference: {missing}"


def test_every_cli_command_has_a_section() -> None:
    cli_md = (DOCS / "guide" / "cli.md").read_text()
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    commands = list(sub.choices)  # type: ignore[attr-defined]
    assert {"run", "say", "providers", "check", "demo", "serve"} <= set(commands)
    for command in commands:
        assert re.search(rf"^## `?avatarkit {command}\b", cli_md, re.M), (
            f"docs/guide/cli.md needs a section '## avatarkit {command}'"
        )


@pytest.mark.parametrize(
    "plugin", sorted(p.name for p in (ROOT / "plugins").iterdir() if p.is_dir()), ids=str
)
def test_every_plugin_is_a_complete_distribution(plugin: str) -> None:
    directory = ROOT / "plugins" / plugin
    project = tomllib.loads((directory / "pyproject.toml").read_text())
    package = plugin.replace("-", "_")
    assert project["project"]["name"] == plugin
    assert (directory / "README.md").is_file()
    assert (directory / "src" / package / "py.typed").is_file()
    entry_points = project["project"].get("entry-points", {}).get("avatarkit", {})
    assert entry_points, f"{plugin} declares no [project.entry-points.avatarkit]"
    directory_md = (DOCS / "plugins" / "directory.md").read_text()
    assert plugin in directory_md, f"docs/plugins/directory.md does not list {plugin}"


# -- the plugin tutorial ------------------------------------------------------------------------


def _code_blocks(markdown: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```\w*\n(.*?)^```", markdown, re.M | re.S)]


def test_tutorial_shows_the_plugin_files_verbatim() -> None:
    blocks = [
        b.strip() for b in _code_blocks((DOCS / "plugins" / "writing-a-plugin.md").read_text())
    ]
    for rel in (
        "pyproject.toml",
        "src/avatarkit_shout/renderer.py",
        "src/avatarkit_shout/plugin.py",
        "tests/test_shout.py",
    ):
        assert (SHOUT / rel).read_text().strip() in blocks, f"{rel} differs from the tutorial"


def test_tutorial_plugin_installs_and_its_tests_pass(tmp_path: Path) -> None:
    project = tomllib.loads((SHOUT / "pyproject.toml").read_text())["project"]
    files = {
        str(path.relative_to(SHOUT / "src")): path.read_text()
        for path in (SHOUT / "src").rglob("*")
        if path.is_file()
    }
    site = tmp_path / "site"
    with installed_distribution(
        site,
        project["name"],
        version=project["version"],
        entry_points=project["entry-points"]["avatarkit"],
        files=files,
    ):
        pass  # written to disk; the subprocess below discovers it like a pip install
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SHOUT / "tests")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout  # 2 sync tests + 2 async ones on asyncio and trio


def test_every_yaml_example_in_the_docs_parses() -> None:
    import yaml

    for page in DOCS.rglob("*.md"):
        for block in re.findall(r"^```yaml\n(.*?)^```", page.read_text(), re.M | re.S):
            try:
                yaml.safe_load(block)
            except yaml.YAMLError as exc:  # pragma: no cover - the message is the point
                pytest.fail(f"{page.relative_to(ROOT)}: invalid YAML example: {exc}")


async def test_scripted_example_runs_with_the_core_alone() -> None:
    from avatarkit.config import load_session
    from avatarkit.plugins import get_plugin_manager, load_registry

    registry = load_registry(get_plugin_manager(entry_points=False))
    session = load_session(
        ROOT / "examples" / "scripted.yaml", registry=registry, env={"SCRIPTED_DELAY": "0"}
    )
    session.renderer.words_per_minute = 0  # keep the test fast; pacing is not under test
    async with session:
        reply = await session.send("hello!")
    assert reply == "Hello! Nice to meet you. What would you like to talk about?"
