"""The README's snippets are the real files or run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(the paragraph line just before the block, the block's text) for each ```lang block."""
    pattern = rf"(?:^([^\n]*)\n\n)?^```{lang}\n(.*?)^```"
    return [(m.group(1) or "", m.group(2)) for m in re.finditer(pattern, README, re.M | re.S)]


def test_yaml_snippets_are_the_files_they_name() -> None:
    blocks = _blocks("yaml")
    assert blocks
    for before, text in blocks:
        named = re.search(r"`(examples/[\w.-]+\.yaml)`", before)
        assert named, f"a YAML snippet must name its file on the line before it: {text[:60]!r}"
        assert text == (ROOT / named.group(1)).read_text(), f"README differs from {named[1]}"


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_API_KEY": "sk-readme-test",
        "HEYGEN_API_KEY": "readme-test",
        "AVATARKIT_OUTPUT": str(tmp_path / "out"),
    }


def test_console_commands_run_or_their_files_check(tmp_path: Path) -> None:
    (block,) = [text for _, text in _blocks("console")]
    commands = [line[2:].split("#")[0].split() for line in block.splitlines()]
    assert commands
    for argv in commands:
        assert argv[0] == "avatarkit"
        if argv[1] in {"run", "serve"}:  # talk to a live service: check their files instead
            argv = ["avatarkit", "check", *argv[2:]]
        result = subprocess.run(
            [sys.executable, "-m", "avatarkit", *argv[1:]],
            cwd=ROOT,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{argv}: {result.stderr}"


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_snippets_run_as_written(index: int, tmp_path: Path) -> None:
    _, code = _blocks("python")[index]
    runner = (
        "import ast, asyncio, sys\n"
        "source = sys.stdin.read()\n"
        "code = compile(source, 'README.md', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)\n"
        "scope = {}\n"
        "result = eval(code, scope)\n"
        "if asyncio.iscoroutine(result):\n"
        "    asyncio.run(result)\n"
        "print('REPLY', repr(scope.get('reply')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", runner],
        input=code,
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    reply = result.stdout.rsplit("REPLY ", 1)[1].strip()
    assert reply not in {"None", "''"}, result.stdout
