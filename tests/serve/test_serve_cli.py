"""``avatarkit serve FILE`` as a person runs it: a subprocess, a YAML file, providers found
through an installed entry point, Chromium on the printed address, Ctrl-C to stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from avatarkit.testing import installed_distribution

Page = Any  # playwright.sync_api.Page
REPO = Path(__file__).resolve().parents[2]

FAKE_TTS_PLUGIN = """
import avatarkit
from avatarkit.testing import FakeTTS


@avatarkit.hookimpl
def register_providers(registry):
    registry.tts("fake", FakeTTS)
"""

SESSION_YAML = """
llm:
  provider: scripted
  delay: 0.01
  replies: ["Hello from the command line. I speak through your browser."]
tts:
  provider: fake
  ms_per_char: 20
renderer:
  provider: browser
"""


class Served:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.output())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"avatarkit serve did not start:\n{self.output()}")


@pytest.fixture
def avatarkit_serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    processes: list[subprocess.Popen[bytes]] = []
    plugin_root = tmp_path / "site"
    with installed_distribution(
        plugin_root,
        "serve-test-tts",
        entry_points={"serve-test-tts": "serve_test_tts"},
        files={"serve_test_tts.py": FAKE_TTS_PLUGIN},
    ):
        pass  # lays the distribution out; the subprocess finds it through PYTHONPATH

    def start(yaml_text: str, *args: str) -> Served:
        session = tmp_path / "session.yaml"
        session.write_text(yaml_text)
        log = tmp_path / f"serve-{len(processes)}.log"
        env = dict(os.environ, PYTHONPATH=str(plugin_root), NO_COLOR="1")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "avatarkit", "serve", str(session), "--port", "0", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        processes.append(process)
        return Served(process, log)

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_avatarkit_serve_talks_in_the_browser_and_stops_on_ctrl_c(
    avatarkit_serve: Callable[..., Served], new_page: Callable[[], Page]
) -> None:
    served = avatarkit_serve(SESSION_YAML, "--max-sessions", "2")
    url = served.url()
    assert "session.yaml, at most 2 avatar session(s) at once" in served.output()
    assert "event loop uvloop" in served.output()  # the serve extra installs it here (Linux)
    page = new_page()
    page.goto(url + "/")
    page.click("#start")
    page.wait_for_function("window.avatarkit && window.avatarkit.connection === 'connected'")
    assert page.inner_text("#title") == "session.yaml"
    page.fill("#text", "hello")
    page.press("#text", "Enter")
    page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    assert page.inner_text("#transcript li.avatar") == (
        "Hello from the command line. I speak through your browser."
    )
    audio = page.evaluate("window.avatarkit.audio")
    assert audio["played"] == 2
    assert audio["seconds"] > 1.0  # 20 ms per character of the reply, from the fake TTS
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(30) == 130  # the CLI's exit code for Ctrl-C
    # The page was told (1012) and tries to reconnect, as it would to another worker.
    page.wait_for_function("window.avatarkit.reconnects >= 1")
    assert page.evaluate("window.avatarkit.closeCode") in (1012, 1006)
    assert "draining" in served.output()


def test_a_broken_session_file_fails_before_serving(
    avatarkit_serve: Callable[..., Served],
) -> None:
    served = avatarkit_serve(SESSION_YAML.replace("provider: browser", "provider: browsr"))
    assert served.process.wait(30) != 0
    output = served.output()
    assert "no renderer provider 'browsr'" in output
    assert "did you mean 'browser'?" in output
    assert "Uvicorn running" not in output


def test_the_example_session_is_valid() -> None:
    """examples/browser.yaml needs avatarkit-piper for its voice; check it when installed."""
    from avatarkit.config import load_config
    from avatarkit.plugins import default_registry

    if ("tts", "piper") not in default_registry(refresh=True):
        pytest.skip("avatarkit-piper is not installed (examples/browser.yaml uses its voice)")
    load_config(REPO / "examples" / "browser.yaml")


def test_serve_runs_the_event_loop_it_is_asked_for(
    avatarkit_serve: Callable[..., Served],
) -> None:
    import httpx

    served = avatarkit_serve(SESSION_YAML, "--loop", "asyncio")
    url = served.url()
    assert "event loop asyncio" in served.output()
    assert httpx.get(url + "/healthz").status_code == 200
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(30) == 130


def test_the_loop_option_is_checked_and_auto_prefers_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    import uvloop

    from avatarkit.errors import AvatarKitError
    from avatarkit.serve import _event_loop, uvicorn_config

    assert _event_loop("auto") == "uvloop"
    assert _event_loop("asyncio") == "asyncio"
    factory = uvicorn_config(object(), host="127.0.0.1", port=0, loop="auto").get_loop_factory()
    assert factory is uvloop.new_event_loop
    with pytest.raises(AvatarKitError, match="--loop must be auto, asyncio or uvloop, not 'tokio'"):
        _event_loop("tokio")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert _event_loop("auto") == "asyncio"
    with pytest.raises(AvatarKitError, match="uvloop is not installed"):
        _event_loop("uvloop")


def test_beyond_loopback_an_authentication_choice_is_required(
    avatarkit_serve: Callable[..., Served], tmp_path: Path
) -> None:
    from avatarkit.errors import AvatarKitError
    from avatarkit.serve import run

    config = tmp_path / "plain.yaml"
    config.write_text(SESSION_YAML)
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        with pytest.raises(AvatarKitError, match=f"listen on {re.escape(host)} with no auth"):
            run(config, host=host, port=0)
    refused = avatarkit_serve(SESSION_YAML, "--host", "0.0.0.0")
    assert refused.process.wait(30) != 0
    out = refused.output()
    assert "no authentication" in out
    assert "--auth token, link or proxy" in out
    assert "Uvicorn running" not in out
    assert "Traceback" not in out
    # Said plainly, --auth none is accepted, with a warning at start.
    chosen = avatarkit_serve(SESSION_YAML, "--host", "0.0.0.0", "--auth", "none")
    deadline = time.monotonic() + 30
    while "Uvicorn running" not in chosen.output() and time.monotonic() < deadline:
        assert chosen.process.poll() is None, chosen.output()
        time.sleep(0.05)
    assert "listens on 0.0.0.0 with no authentication" in chosen.output()
    chosen.process.send_signal(signal.SIGINT)
    assert chosen.process.wait(30) == 130
