"""The avatarkit command, in-process and as a real subprocess (``python -m avatarkit``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import avatarkit.plugins
from avatarkit.cli import build_parser, main
from avatarkit.testing import installed_distribution

FAKES = """
import avatarkit
from avatarkit.errors import ProviderHTTPError
from avatarkit.testing import FakeProvidersPlugin

plugin = FakeProvidersPlugin()


class FlakyLLM:
    # fails its first turn the way a provider does (an avatarkit error), then works
    calls = 0

    async def stream(self, messages):
        FlakyLLM.calls += 1
        if FlakyLLM.calls == 1:
            raise ProviderHTTPError("overloaded", provider="flaky", status_code=503)
        yield "Better now."


class DownLLM:
    # every turn fails
    async def stream(self, messages):
        raise ProviderHTTPError("down for maintenance", provider="down", status_code=503)
        yield ""


class DownTTS:
    # fails when called, before it streams anything
    def synthesize(self, text):
        raise ProviderHTTPError("tts is down", provider="downtts", status_code=500)


class LateTTS:
    # fails after its first chunk
    async def synthesize(self, text):
        from avatarkit.providers import AudioChunk

        yield AudioChunk(bytes(320), 16000)
        raise ProviderHTTPError("tts broke midway", provider="latetts", status_code=502)


class PlainLLM:
    # no options model: its options reach it as written
    def __init__(self, **options):
        self.options = options

    async def stream(self, messages):
        yield "plain"


@avatarkit.hookimpl
def register_providers(registry):
    registry.llm("plain", PlainLLM)
    registry.llm("flaky", FlakyLLM)
    registry.llm("down", DownLLM)
    registry.tts("down", DownTTS)
    registry.tts("late", LateTTS)
"""
BROKEN = "raise ImportError('this plugin needs a missing SDK')\n"
SDKS = ("openai", "anthropic", "livekit", "av", "piper", "onnxruntime", "websockets", "aiohttp")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A site directory with two real distributions: the fakes and a broken plugin."""
    root = tmp_path / "site"
    with (
        installed_distribution(
            root,
            "avatarkit-testfakes",
            version="9.8.7",
            entry_points={"testfakes": "testfakes_plugin:plugin", "flaky": "testfakes_plugin"},
            files={"testfakes_plugin.py": FAKES},
        ),
        installed_distribution(
            root,
            "avatarkit-brokenthing",
            entry_points={"brokenthing": "brokenthing_plugin"},
            files={"brokenthing_plugin.py": BROKEN},
        ),
    ):
        yield root


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch, site: Path) -> None:
    """The CLI uses the process-wide registry: rebuild it with the test site installed."""
    monkeypatch.setattr(avatarkit.plugins, "_default", None)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "session.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def run_cli(site: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "avatarkit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_help_imports_no_sdk_and_no_plugin(site: Path) -> None:
    code = (
        "import json, sys\n"
        "from avatarkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    modules = json.loads(out.splitlines()[-1])
    assert "usage: avatarkit" in out
    loaded_sdks = [m for m in modules if m.split(".")[0] in SDKS]
    assert loaded_sdks == []
    plugin_modules = [m for m in modules if m.startswith("avatarkit_") or "_plugin" in m]
    assert plugin_modules == []
    assert "yaml" not in modules  # the YAML parser is loaded only to read a file


def test_every_command_is_in_help() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("run", "say", "providers", "check", "demo", "serve"):
        assert command in help_text


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    capsys.readouterr()


def test_providers_json(fresh_registry: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    by_name = {(p["kind"], p["name"]): p for p in table["providers"]}
    fake_text = by_name[("renderer", "fake-text")]
    assert fake_text["capabilities"] == ["speak_text"]
    assert fake_text["distribution"] == "avatarkit-testfakes"
    assert fake_text["version"] == "9.8.7"
    assert by_name[("renderer", "fake-audio")]["capabilities"] == ["speak"]
    assert by_name[("llm", "scripted")]["distribution"] == "avatarkit-core"
    (broken,) = [b for b in table["broken"] if b["plugin"] == "brokenthing"]
    assert broken["distribution"] == "avatarkit-brokenthing"
    assert "this plugin needs a missing SDK" in broken["error"]


def test_providers_table(fresh_registry: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "fake-audio" in out
    assert "avatarkit-testfakes 9.8.7" in out
    assert "problems:" in out
    assert "brokenthing" in out


def test_check_ok_and_bad(
    tmp_path: Path, fresh_registry: None, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "llm: scripted\ntts: fake\nrenderer: fake-audio\n")
    assert main(["check", good]) == 0
    out = capsys.readouterr().out
    assert f"{good}: OK" in out
    assert "route:    audio" in out
    assert "fake (from avatarkit-testfakes 9.8.7)" in out

    assert main(["check", good, "--dump"]) == 0
    dumped = capsys.readouterr().out.split("---\n")[1]
    assert "tts:\n  provider: fake\n  sample_rate: 16000\n" in dumped

    bad = write(tmp_path, "llm: {provider: scripted, delay: x}\nrenderer: fake-text\n")
    assert main(["check", bad]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:1:34: llm.delay: Input should be a valid number")
    assert len(err.strip().splitlines()) == 1


def test_check_in_a_subprocess_prints_one_clean_line(tmp_path: Path, site: Path) -> None:
    bad = write(tmp_path, "llm: fake\nrenderer: fake-audio\n")
    result = run_cli(site, "check", bad)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert "speaks audio only, so the session needs a `tts:` section" in line


def test_say_with_fakes_from_an_installed_distribution(tmp_path: Path, site: Path) -> None:
    path = write(tmp_path, "llm: fake\ntts: fake\nrenderer: fake-audio\n")
    result = run_cli(site, "say", path, "Hello there. **Goodbye** now.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello there. Goodbye now."


def test_run_reads_lines_until_eof(tmp_path: Path, site: Path) -> None:
    path = write(
        tmp_path,
        """
        llm:
          provider: scripted
          rules: [{match: weather, reply: It is sunny.}]
          replies: [Hello you.]
        renderer: fake-text
        """,
    )
    result = run_cli(site, "run", path, stdin="hi\n\nhow is the weather\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["avatar> Hello you.", "avatar> It is sunny."]


def test_run_reports_a_failed_turn_and_carries_on(tmp_path: Path, site: Path) -> None:
    path = write(tmp_path, "llm: flaky\nrenderer: fake-text\n")
    result = run_cli(site, "run", path, stdin="first\nsecond\n")
    assert result.returncode == 1, result.stderr  # a turn failed, even if the next one worked
    assert "error: flaky: HTTP 503: overloaded" in result.stderr
    assert result.stderr.count("overloaded") == 1
    assert "Traceback" not in result.stderr
    assert "avatar> Better now." in result.stdout


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ("llm: down\nrenderer: fake-text\n", "error: down: HTTP 503: down for maintenance"),
        ("llm: fake\ntts: down\nrenderer: fake-audio\n", "error: downtts: HTTP 500: tts is down"),
        (
            "llm: fake\ntts: late\nrenderer: fake-audio\n",
            "error: latetts: HTTP 502: tts broke midway",
        ),
    ],
)
def test_run_and_say_exit_1_after_a_provider_error(
    tmp_path: Path, site: Path, session: str, message: str
) -> None:
    path = write(tmp_path, session)
    result = run_cli(site, "run", path, stdin="hello\n")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("error:")] == [message]
    assert "Traceback" not in result.stderr
    if "tts:" in session:
        said = run_cli(site, "say", path, "One sentence. And another one.")
        assert said.returncode == 1, (said.stdout, said.stderr)
        assert [ln for ln in said.stderr.splitlines() if ln.startswith("error:")] == [message]
        assert "Traceback" not in said.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
@pytest.mark.parametrize(("llm", "code"), [("down", 1), ("fake", 0)])
def test_run_on_a_terminal_exits_1_if_a_turn_failed(
    tmp_path: Path, site: Path, llm: str, code: int
) -> None:
    import pty

    path = write(tmp_path, f"llm: {llm}\nrenderer: fake-text\n")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "avatarkit", "run", path],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(site)},
        )
        os.write(master, b"hello\n\x04")  # a line, then Ctrl-D (EOF) at the prompt
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert "you> " in out  # it did see a terminal
    assert proc.returncode == code, (out, err)
    assert ("error: down: HTTP 503" in err) == (code == 1)


class _Output:
    """Collects a process's stdout in a thread, so the test can wait for a marker."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self._lock = threading.Lock()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: types.SimpleNamespace | object) -> None:
        for chunk in iter(lambda: stream.read(1), ""):  # type: ignore[attr-defined]
            with self._lock:
                self.text += chunk

    def wait_for(self, marker: str, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit  # a hang guard, not a timing assertion
        while time.monotonic() < deadline:
            with self._lock:
                if marker in self.text:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{marker!r} never appeared in output: {self.text!r}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_ctrl_c_interrupts_the_reply_then_quits(tmp_path: Path, site: Path) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    path = write(
        tmp_path,
        f"""
        llm: {{provider: scripted, delay: 0.1, replies: ["{words}.", "Short one."]}}
        renderer: fake-text
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit", "run", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    try:
        out = _Output(proc)
        assert proc.stdin is not None
        proc.stdin.write("tell me everything\n")
        proc.stdin.flush()
        out.wait_for("avatar> word0")
        proc.send_signal(signal.SIGINT)  # first Ctrl-C: interrupt the reply
        out.wait_for("[interrupted]")
        proc.stdin.write("again\n")  # the session is still usable
        proc.stdin.flush()
        # The newline comes once the turn is over: a Ctrl-C before it would (rightly) only
        # interrupt the reply.
        out.wait_for("avatar> Short one.\n")
        proc.send_signal(signal.SIGINT)  # Ctrl-C at the prompt: quit
        assert proc.wait(timeout=30) == 0
        assert "word199" not in out.text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_serve_and_demo_are_dispatched_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import avatarkit.serve

    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        avatarkit.serve,
        "run_from_args",
        lambda args: calls.append(("serve", args.file, args.host, args.port, args.max_sessions)),
    )
    demo = types.ModuleType("avatarkit.demo")
    demo.main = lambda argv: calls.append(("demo", argv)) and 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "avatarkit.demo", demo)
    assert main(["serve", "s.yaml", "--port", "9001", "--max-sessions", "3"]) == 0
    assert main(["demo", "--fast", "x"]) == 0
    assert calls == [
        ("serve", "s.yaml", "127.0.0.1", 9001, 3),
        ("demo", ["--fast", "x"]),
    ]


def test_missing_optional_module_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "avatarkit.demo", None)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert "`avatarkit demo` is not available in this installation" in err


def test_demo_without_the_offline_plugins_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from avatarkit import demo
    from avatarkit.plugins import get_plugin_manager, load_registry

    # only the built-ins: both piper and video are missing, reported together in one error
    monkeypatch.setattr(
        avatarkit.plugins, "_default", load_registry(get_plugin_manager(entry_points=False))
    )
    assert demo.main(["--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no tts provider 'piper'" in err
    assert "no renderer provider 'video'" in err
    assert "pip install 'avatarkit-core[offline]'" in err


def test_check_never_shows_an_unquoted_numeric_key_and_refuses_an_empty_one(
    tmp_path: Path, site: Path
) -> None:
    path = write(tmp_path, "llm:\n  provider: plain\n  api_key: 12345678\nrenderer: fake-text\n")
    result = run_cli(site, "check", path, "--dump")
    assert result.returncode == 0, result.stderr
    assert "12345678" not in result.stdout + result.stderr
    assert "api_key: '***'" in result.stdout

    empty = write(tmp_path, "llm:\n  provider: plain\n  api_key: ${THE_KEY}\nrenderer: fake-text\n")
    env_run = subprocess.run(
        [sys.executable, "-m", "avatarkit", "check", empty],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site), "THE_KEY": ""},
        timeout=60,
        check=False,
    )
    assert env_run.returncode == 1
    (line,) = [ln for ln in env_run.stderr.splitlines() if ln.startswith("error:")]
    assert line == (
        f"error: {empty}:3:12: llm.api_key: api_key is empty (environment variable THE_KEY is "
        "set but empty); give the key, or leave the option out to use the provider's default"
    )
