"""The CLI a person meets: where recordings go (never replaced silently), how to interrupt and
quit `run`, the line ended on Ctrl-D at a real terminal, and `demo --help`."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatarkit.cli import main
from avatarkit.testing import installed_distribution

FAKES = "from avatarkit.testing import FakeProvidersPlugin\nplugin = FakeProvidersPlugin()\n"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """The fake TTS installed as a real distribution (the video renderer is the real one)."""
    with installed_distribution(
        tmp_path / "site",
        "avatarkit-personfakes",
        entry_points={"personfakes": "personfakes_plugin:plugin"},
        files={"personfakes_plugin.py": FAKES},
    ) as root:
        yield root


def _session(tmp_path: Path, *, name: str | None = "rec", overwrite: bool = False) -> Path:
    named = f"\n  name: {name}" if name else ""
    named += "\n  overwrite: true" if overwrite else ""
    path = tmp_path / "session.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            llm: {provider: scripted, replies: ["Hello there."]}
            tts: fake
            renderer:
              provider: video
              output_dir: %s
              width: 64
              height: 64%s
            """
        )
        % (tmp_path / "out", named)
    )
    return path


def _cli(site: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "avatarkit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=120,
        check=False,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recorded(stderr: str) -> list[Path]:
    (line,) = [x for x in stderr.splitlines() if x.startswith("recording to ")]
    return [Path(p) for p in line.removeprefix("recording to ").split(", ")]


def test_say_prints_where_the_recording_goes_and_what_it_saved(tmp_path: Path, site: Path) -> None:
    result = _cli(site, "say", str(_session(tmp_path)), "Hi.")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hi.\n"  # stdout stays the spoken text alone
    paths = _recorded(result.stderr)
    assert [p.suffix for p in paths] == [".mp4", ".wav", ".vtt"]
    assert all(p.parent == tmp_path / "out" and p.stat().st_size > 0 for p in paths)
    assert f"saved {', '.join(map(str, paths))}" in result.stderr
    assert "warning" not in result.stderr


def test_a_fixed_name_that_is_taken_is_an_error_and_the_first_recording_stays(
    tmp_path: Path, site: Path
) -> None:
    session = _session(tmp_path, name="rec")
    first = _cli(site, "say", str(session), "First.")
    assert first.returncode == 0, first.stderr
    old = {p: _digest(p) for p in _recorded(first.stderr)}
    second = _cli(site, "say", str(session), "Second, and longer than the first one.")
    assert second.returncode != 0
    assert "already exist" in second.stderr
    assert "overwrite: true" in second.stderr
    assert {p: _digest(p) for p in old} == old


@pytest.mark.parametrize(
    ("name", "overwrite"),
    [("rec", True), (None, False)],
    ids=["fixed-name-overwrite", "default-name"],
)
def test_a_second_recording_never_replaces_the_first_silently(
    tmp_path: Path, site: Path, name: str | None, overwrite: bool
) -> None:
    session = _session(tmp_path, name=name, overwrite=overwrite)
    first = _cli(site, "say", str(session), "First.")
    assert first.returncode == 0, first.stderr
    old = {p: _digest(p) for p in _recorded(first.stderr)}
    second = _cli(site, "say", str(session), "Second, and longer than the first one.")
    assert second.returncode == 0, second.stderr
    for path, digest in old.items():
        if _digest(path) != digest:  # replaced: only with a warning naming it
            assert "warning: replacing the earlier recording" in second.stderr
            assert str(path) in second.stderr
    new = _recorded(second.stderr)
    if set(new) == set(old):
        assert "warning: replacing the earlier recording" in second.stderr


def test_run_says_how_to_interrupt_and_quit_and_where_it_records(
    tmp_path: Path, site: Path
) -> None:
    result = _cli(site, "run", str(_session(tmp_path, name=None)), stdin="hello\n")
    assert result.returncode == 0, result.stderr
    assert "Ctrl-C interrupts the avatar; Ctrl-D quits." in result.stderr
    paths = _recorded(result.stderr)
    assert all(p.exists() for p in paths)
    assert "avatar> Hello there." in result.stdout


def _read_until(fd: int, marker: bytes, timeout: float = 60) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"{marker!r} never came: {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}: {data!r}")
        data += chunk
    return data


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminal")
def test_run_ends_the_line_on_ctrl_d_at_a_terminal(tmp_path: Path, site: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text("llm: {provider: scripted, replies: ['Hi.']}\nrenderer: fake-text\n")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit", "run", str(path)],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    os.close(terminal)
    try:
        assert proc.stdout is not None
        seen = _read_until(proc.stdout.fileno(), b"you> ")
        os.write(controller, b"\x04")  # Ctrl-D at the start of a line: end of input
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert (seen + out).endswith(b"you> \n")
        assert b"Ctrl-D quits" in err
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminal")
def test_run_ends_the_line_on_ctrl_c_at_the_prompt(tmp_path: Path, site: Path) -> None:
    path = tmp_path / "console.yaml"
    path.write_text("llm: {provider: scripted, replies: ['Hi.']}\nrenderer: fake-text\n")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit", "run", str(path)],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    os.close(terminal)
    try:
        assert proc.stdout is not None
        seen = _read_until(proc.stdout.fileno(), b"you> ")
        proc.send_signal(signal.SIGINT)  # Ctrl-C at the prompt: quit
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert (seen + out).endswith(b"you> \n")
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_help_shows_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: avatarkit demo" in out
    assert "--output DIR" in out
