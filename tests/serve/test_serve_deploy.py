"""``avatarkit serve`` as deployed: ``--workers 2`` on one port, SIGTERM drains a worker with
paid sessions open (the fake LiveAvatar on 127.0.0.1 sees every one stopped), pages reconnect to
another worker, ``/readyz`` turns false before sessions close, a token is required, and
``/metrics`` counts turns across workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from avatarkit import AvatarSession
from avatarkit.serve.auth import sign_link
from avatarkit.testing import FakeLLM, FakeTextRenderer, installed_distribution
from avatarkit_heygen.liveavatar_testing import API_KEY, FakeLiveAvatar

ServerThread = Any

FAKE_TTS_PLUGIN = """
import avatarkit
from avatarkit.testing import FakeTTS


@avatarkit.hookimpl
def register_providers(registry):
    registry.tts("fake", FakeTTS)
"""

REPLY = "Hello from a worker. This reply takes a moment to say."


def session_yaml(fake: FakeLiveAvatar) -> str:
    return f"""
llm:
  provider: scripted
  delay: 0
  replies: [{REPLY!r}]
tts:
  provider: fake
  sample_rate: 24000
  ms_per_char: 40
renderer:
  provider: liveavatar
  api_key: {API_KEY}
  avatar_id: av-1
  base_url: {fake.base_url}
  keep_alive: false
"""


class Served:
    """``avatarkit serve`` in a subprocess: its log, address and worker processes."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self._url: str | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def url(self) -> str:
        if self._url is None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self._url is None:
                found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.output())
                if found:
                    self._url = found.group(1)
                elif self.process.poll() is not None:
                    break
                else:
                    time.sleep(0.05)
            if self._url is None:
                raise AssertionError(f"avatarkit serve did not start:\n{self.output()}")
        return self._url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def health(self) -> dict[str, Any]:
        """One fresh connection's answer (each may reach another worker)."""
        with httpx.Client(trust_env=False) as client:
            response = client.get(self.url + "/healthz")
        data: dict[str, Any] = response.json()
        return data

    def workers(self, count: int) -> dict[str, int]:
        """worker id -> pid, polled until ``count`` workers answered (bounded)."""
        found: dict[str, int] = {}
        for _ in range(400):
            try:
                health = self.health()
            except httpx.ConnectError:  # the workers are still starting
                time.sleep(0.05)
                continue
            found[health["worker"]] = health["pid"]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"only {found} answered")


@pytest.fixture
def avatarkit_serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    processes: list[subprocess.Popen[bytes]] = []
    plugin_root = tmp_path / "site"
    with installed_distribution(
        plugin_root,
        "deploy-test-tts",
        entry_points={"deploy-test-tts": "deploy_test_tts"},
        files={"deploy_test_tts.py": FAKE_TTS_PLUGIN},
    ):
        pass

    def start(yaml_text: str, *args: str, env: dict[str, str] | None = None) -> Served:
        session = tmp_path / "session.yaml"
        session.write_text(yaml_text)
        log = tmp_path / f"serve-{len(processes)}.log"
        environ = dict(os.environ, PYTHONPATH=str(plugin_root), NO_COLOR="1", **(env or {}))
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "avatarkit", "serve", str(session), "--port", "0", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=tmp_path,
            )
        processes.append(process)
        return Served(process, log)

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def fake() -> Iterator[FakeLiveAvatar]:
    with FakeLiveAvatar() as server:
        yield server


def ws_connect(url: str) -> ClientConnection:
    return connect(url, proxy=None, open_timeout=20, max_size=None, max_queue=None, legacy=True)


def recv(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    message = ws.recv(timeout=timeout)
    if isinstance(message, bytes):
        return {"type": "binary"}
    data: dict[str, Any] = json.loads(message)
    return data


def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], limit: int = 2000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        message = recv(ws)
        seen.append(message)
        if match(message):
            return message, seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


class Page:
    """A page's socket: hello (which worker), start, turns."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.ws = ws_connect(url)
        self.hello = recv(self.ws)
        assert self.hello["type"] == "hello", self.hello
        self.worker: str = self.hello["worker"]
        self.token = token

    def start(self) -> dict[str, Any]:
        self.ws.send(json.dumps({"type": "start"} | ({"token": self.token} if self.token else {})))
        ready, _ = recv_until(self.ws, lambda m: m["type"] in ("ready", "error"))
        return ready

    def close(self) -> None:
        self.ws.close()


def wait_until(condition: Callable[[], Any], *, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_workers_share_the_port_drain_on_sigterm_and_pages_move_over(
    avatarkit_serve: Callable[..., Served], fake: FakeLiveAvatar
) -> None:
    fake.knobs.playback = 1.0  # the avatar plays audio in real time: a turn lasts a while
    served = avatarkit_serve(
        session_yaml(fake), "--workers", "2", "--max-sessions", "4", "--drain-grace", "20"
    )
    workers = served.workers(2)
    assert len(workers) == 2
    assert "at most 4 avatar session(s) at once per worker, 2 workers" in served.output()

    # Pages spread over both workers (the kernel hands each connection to one of them).
    pages: list[Page] = []
    for _ in range(60):
        page = Page(served.ws_url)
        if sum(p.worker == page.worker for p in pages) >= 2:
            page.close()  # two pages per worker are enough
            continue
        pages.append(page)
        if len(pages) == 4:
            break
    assert {p.worker for p in pages} == set(workers)
    assert len(pages) == 4
    for page in pages:
        assert page.start()["type"] == "ready"
    assert sum(s.state == "started" for s in fake.sessions.values()) == len(pages)

    # A turn runs on a page of the worker about to stop.
    doomed = pages[0].worker
    on_doomed = [p for p in pages if p.worker == doomed]
    others = [p for p in pages if p.worker != doomed]
    talking = on_doomed[0]
    talking.ws.send(json.dumps({"type": "send", "text": "hi"}))
    recv_until(talking.ws, lambda m: m["type"] == "sentence_start")
    sessions_before = set(fake.sessions)
    # Ctrl-C in a terminal reaches every worker, then the supervisor adds SIGTERM: one drain.
    os.kill(workers[doomed], signal.SIGINT)
    os.kill(workers[doomed], signal.SIGTERM)

    # The page is told first, the turn finishes (not cut), then the socket closes with 1012.
    going, _ = recv_until(talking.ws, lambda m: m["type"] == "going_away")
    assert going["grace"] == 20
    # While its turn finishes, the draining worker takes no new connection: it stopped
    # listening, so every new page reaches the other one.
    newcomers = [Page(served.ws_url) for _ in range(6)]
    assert all(p.worker != doomed for p in newcomers), [p.worker for p in newcomers]
    assert all(p.worker in workers for p in newcomers)  # the other, not a restarted one
    for page in newcomers:
        page.close()
    metrics, _ = recv_until(talking.ws, lambda m: m["type"] == "metrics")
    assert not metrics["interrupted"]
    for page in on_doomed:
        with pytest.raises(ConnectionClosed) as closed:
            recv_until(page.ws, lambda m: False)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
    # Every paid session of that worker was stopped at LiveAvatar; the others still run.
    stopped = {s.session_id for s in fake.sessions.values() if s.state == "stopped"}
    assert len(stopped) == len(on_doomed)
    assert sum(s.state == "started" for s in fake.sessions.values()) == len(others)
    assert "draining: " in served.output()

    # The pages reconnect, to another worker (the drained one stopped listening), and go on.
    for _ in on_doomed:
        moved = Page(served.ws_url)
        assert moved.worker != doomed
        assert moved.start()["type"] == "ready"
        moved.ws.send(json.dumps({"type": "send", "text": "are you there?"}))
        done, _ = recv_until(moved.ws, lambda m: m["type"] == "metrics")
        assert not done["interrupted"]
        pages.append(moved)
    assert len(set(fake.sessions) - sessions_before) == len(on_doomed)

    # Stopping the whole server (SIGTERM to the supervisor) stops every paid session.
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(60) is not None
    assert fake.sessions
    assert all(s.state == "stopped" for s in fake.sessions.values()), {
        s.session_id: s.state for s in fake.sessions.values()
    }
    for page in pages:
        page.close()


def test_metrics_count_turns_across_workers(
    avatarkit_serve: Callable[..., Served], fake: FakeLiveAvatar
) -> None:
    served = avatarkit_serve(session_yaml(fake), "--workers", "2")
    workers = served.workers(2)
    turns: dict[str, int] = dict.fromkeys(workers, 0)
    pages: list[Page] = []
    for _ in range(40):
        page = Page(served.ws_url)
        if turns[page.worker] >= 2:
            page.close()
            if all(n >= 2 for n in turns.values()):
                break
            continue
        assert page.start()["type"] == "ready"
        page.ws.send(json.dumps({"type": "send", "text": "hi"}))
        recv_until(page.ws, lambda m: m["type"] == "metrics")
        turns[page.worker] += 1
        pages.append(page)
        if all(n >= 2 for n in turns.values()):
            break
    assert all(n >= 2 for n in turns.values()), turns
    for _ in range(10):  # whichever worker answers the scrape, it counts all of them
        with httpx.Client(trust_env=False) as client:
            scrape = client.get(served.url + "/metrics")
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        assert metric(scrape.text, "avatarkit_turns_total") == sum(turns.values())
        assert metric(scrape.text, "avatarkit_sessions_started_total") == len(pages)
        assert metric(scrape.text, "avatarkit_sessions_open") == len(pages)
        assert metric(scrape.text, "avatarkit_time_to_first_speech_seconds_count") == sum(
            turns.values()
        )
    # A worker that dies without draining (SIGKILL) stops counting as open sessions; the turns
    # it served stay counted.
    killed = pages[0].worker
    lost = sum(p.worker == killed for p in pages)
    os.kill(workers[killed], signal.SIGKILL)

    def scrape_now() -> str:
        with httpx.Client(trust_env=False) as client:
            try:
                return client.get(served.url + "/metrics").text
            except httpx.TransportError:
                return ""

    after = wait_until(
        lambda: (
            (t := scrape_now()) and metric(t, "avatarkit_sessions_open") == len(pages) - lost and t
        ),
        what="the dead worker's sessions to stop counting",
    )
    assert metric(after, "avatarkit_turns_total") == sum(turns.values())
    for page in pages:
        page.close()


def test_a_token_is_required_before_any_paid_session(
    avatarkit_serve: Callable[..., Served], fake: FakeLiveAvatar
) -> None:
    secret = "s3cret-serve-token-1234567890"
    served = avatarkit_serve(
        session_yaml(fake), "--auth", "token", env={"AVATARKIT_SERVE_TOKEN": secret}
    )
    assert secret not in " ".join(served.process.args)  # type: ignore[arg-type]
    for token in (None, "", "wrong", secret + "x", secret[:-1]):
        page = Page(served.ws_url, token=token)
        assert page.hello["auth"] is True
        refused = page.start()
        assert (refused["stage"], refused["code"]) == ("auth", "unauthorized")
        with pytest.raises(ConnectionClosed) as closed:
            recv_until(page.ws, lambda m: False)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
    assert fake.sessions == {}  # nothing was created at LiveAvatar
    page = Page(served.ws_url, token=secret)
    assert page.start()["type"] == "ready"
    assert len(fake.sessions) == 1
    page.close()
    assert secret not in served.output()


# -- in one process: readiness, drain order, signed links, the proxy header --------------------


class ClosingRenderer(FakeTextRenderer):
    def __init__(self, log: list[tuple[str, float]]) -> None:
        super().__init__(seconds_per_char=0.02)
        self.log = log

    async def close(self) -> None:
        self.log.append(("close", time.monotonic()))
        await super().close()


def test_readiness_turns_false_before_any_session_closes(
    serve: Callable[..., ServerThread],
) -> None:
    log: list[tuple[str, float]] = []
    loops: list[Any] = []

    def factory() -> AvatarSession:
        loops.append(asyncio.get_running_loop())
        return AvatarSession(
            llm=FakeLLM(["A reply that takes about two seconds to say, or so."]),
            renderer=ClosingRenderer(log),
        )

    server = serve(factory, max_sessions=2, drain_grace=10)
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        assert client.get("/readyz").status_code == 200
        page = Page(server.ws_url)
        assert page.start()["type"] == "ready"
        idle = Page(server.ws_url)  # connected, never started
        page.ws.send(json.dumps({"type": "send", "text": "hi"}))
        recv_until(page.ws, lambda m: m["type"] == "sentence_start")
        state = server.app.state.avatarkit
        drained = asyncio.run_coroutine_threadsafe(state.drain(10), loops[0])
        going, _ = recv_until(page.ws, lambda m: m["type"] == "going_away")
        page.ws.send(json.dumps({"type": "send", "text": "one more?"}))  # while it drains
        refused, _ = recv_until(page.ws, lambda m: m["type"] == "error")
        assert (refused["stage"], refused["code"]) == ("shutdown", "draining")
        while not drained.done():
            answer = client.get("/readyz")
            log.append((f"readyz {answer.status_code}", time.monotonic()))
            time.sleep(0.02)
        drained.result()
        assert going["grace"] == 10
        metrics, _ = recv_until(page.ws, lambda m: m["type"] == "metrics")
        assert not metrics["interrupted"]  # the running turn was let finish
        for ws in (page.ws, idle.ws):
            with pytest.raises(ConnectionClosed) as closed:
                recv_until(ws, lambda m: False)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1012
        after = client.get("/readyz")
        assert after.status_code == 503
        assert after.json()["draining"] is True
        assert client.get("/healthz").status_code == 200  # alive, just not taking pages
    closes = [at for what, at in log if what == "close"]
    not_ready = [at for what, at in log if what == "readyz 503"]
    assert len(closes) == 1
    assert not_ready
    assert min(not_ready) < closes[0]
    assert all(what != "readyz 200" for what, _ in log)


def test_a_signed_link_works_until_it_expires(serve: Callable[..., ServerThread]) -> None:
    from avatarkit.serve.auth import Auth

    secret = b"link-secret-for-tests"
    built: list[AvatarSession] = []

    def factory() -> AvatarSession:
        built.append(AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()))
        return built[-1]

    server = serve(factory, auth=Auth(mode="link", link_secret=secret))
    expired = sign_link(secret, ttl=-1)
    forged = sign_link(b"another-secret", ttl=600)
    tampered = str(int(expired.split(".")[0]) + 10_000) + "." + expired.split(".")[1]
    for token in (expired, forged, tampered, "123.abc", "garbage"):
        refused = Page(server.ws_url, token=token).start()
        assert refused["code"] == "unauthorized", token
    assert built == []
    assert Page(server.ws_url, token=sign_link(secret, ttl=600)).start()["type"] == "ready"
    assert len(built) == 1


def test_the_trusted_proxy_header_is_believed_only_from_the_proxy(
    serve: Callable[..., ServerThread],
) -> None:
    from avatarkit.serve.auth import Auth

    built: list[AvatarSession] = []

    def factory() -> AvatarSession:
        built.append(AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()))
        return built[-1]

    def start_with(header: dict[str, str], *, proxies: tuple[str, ...]) -> dict[str, Any]:
        server = serve(
            factory,
            auth=Auth(mode="proxy", proxy_header="X-Forwarded-User", trusted_proxies=proxies),
        )
        with connect(server.ws_url, proxy=None, open_timeout=10, additional_headers=header) as ws:
            assert recv(ws)["type"] == "hello"
            ws.send(json.dumps({"type": "start"}))
            answer, _ = recv_until(ws, lambda m: m["type"] in ("ready", "error"))
            return answer

    assert start_with({}, proxies=("127.0.0.1/32",))["code"] == "unauthorized"
    assert start_with({"X-Forwarded-User": "ann"}, proxies=("10.0.0.0/8",))["code"] == (
        "unauthorized"  # the header is there, but not from the proxy's address
    )
    assert built == []
    assert start_with({"X-Forwarded-User": "ann"}, proxies=("127.0.0.1/32",))["type"] == "ready"
    assert len(built) == 1


def test_session_starts_are_rate_limited_per_client(serve: Callable[..., ServerThread]) -> None:
    from avatarkit.serve.auth import StartLimiter

    server = serve(
        lambda: AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()),
        max_sessions=20,
        start_limiter=StartLimiter(per_minute=1, burst=3),
    )
    answers = []
    for _ in range(5):
        page = Page(server.ws_url)
        answers.append(page.start())
        page.close()
    assert [a["type"] for a in answers[:3]] == ["ready"] * 3
    assert [a.get("code") for a in answers[3:]] == ["start_rate_limited"] * 2


BROWSER_YAML = """
llm:
  provider: scripted
  delay: 0.01
  replies: ["Hello from a worker process."]
tts:
  provider: fake
  ms_per_char: 10
renderer:
  provider: browser
"""


def test_the_page_reconnects_to_another_worker_and_says_so(
    avatarkit_serve: Callable[..., Served], new_page: Callable[[], Any]
) -> None:
    served = avatarkit_serve(BROWSER_YAML, "--workers", "2", "--drain-grace", "5")
    workers = served.workers(2)
    page = new_page()
    page.goto(served.url + "/")
    page.click("#start")
    page.wait_for_function("window.avatarkit.connection === 'connected'")
    first = page.evaluate("window.avatarkit.worker")
    page.fill("#text", "hello")
    page.press("#text", "Enter")
    page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    os.kill(workers[first], signal.SIGTERM)
    page.wait_for_function("window.avatarkit.reconnects >= 1", timeout=30000)
    page.wait_for_function(
        f"window.avatarkit.connection === 'connected' && window.avatarkit.worker !== '{first}'",
        timeout=30000,
    )
    assert "reconnected to another one" in page.inner_text("#stage-note")
    assert page.is_hidden("#start")  # no second click needed: the person had started
    page.fill("#text", "still there?")
    page.press("#text", "Enter")
    page.wait_for_function(
        "window.avatarkit.metrics && window.avatarkit.metrics.turn === 1 && "
        "window.avatarkit.state === 'idle' && window.avatarkit.audio.played >= 2"
    )
    assert page.errors == []
    assert page.csp_violations == []


def test_start_limits_are_per_forwarded_client_behind_a_trusted_proxy(
    serve: Callable[..., ServerThread],
) -> None:
    """Behind an ingress every page comes from the proxy's address; each client keeps its own
    budget by the proxy's X-Forwarded-For (trusted from --trusted-proxy addresses only)."""
    from avatarkit.serve.auth import StartLimiter

    server = serve(
        lambda: AvatarSession(llm=FakeLLM(), renderer=FakeTextRenderer()),
        max_sessions=20,
        start_limiter=StartLimiter(per_minute=1, burst=1),
    )

    def start_as(forwarded: str) -> dict[str, Any]:
        with connect(
            server.ws_url,
            proxy=None,
            open_timeout=10,
            additional_headers={"X-Forwarded-For": forwarded},
        ) as ws:
            assert recv(ws)["type"] == "hello"
            ws.send(json.dumps({"type": "start"}))
            answer, _ = recv_until(ws, lambda m: m["type"] in ("ready", "error"))
            return answer

    assert start_as("198.51.100.1")["type"] == "ready"
    assert start_as("198.51.100.1")["code"] == "start_rate_limited"
    assert start_as("198.51.100.2")["type"] == "ready"  # another person behind the proxy


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"workers": 0}, {}, "--workers must be at least 1"),
        ({"max_sessions": 0}, {}, "--max-sessions must be at least 1"),
        ({"auth": "magic"}, {}, "--auth must be none, token, link or proxy"),
        ({"auth": "token"}, {}, "--auth token needs the token in $AVATARKIT_SERVE_TOKEN"),
        ({"auth": "link"}, {}, "needs the signing secret in $AVATARKIT_SERVE_LINK_SECRET"),
        ({"auth": "proxy"}, {}, "--auth proxy needs --trusted-proxy-header"),
        (
            {"auth": "proxy", "proxy_header": "X-User", "trusted_proxies": ["not-a-net"]},
            {},
            "--trusted-proxy: ",
        ),
        ({"drain_grace": -1}, {}, "--drain-grace must be 0 or more"),
        ({"drain_grace": float("nan")}, {}, "--drain-grace must be 0 or more"),
        ({"starts_per_minute": 0}, {}, "--starts-per-minute must be more than 0"),
        ({"starts_per_minute": float("nan")}, {}, "--starts-per-minute must be more than 0"),
    ],
)
def test_bad_serve_options_are_clear_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    env: dict[str, str],
    message: str,
) -> None:
    from avatarkit.errors import AvatarKitError
    from avatarkit.serve import run

    for name in ("AVATARKIT_SERVE_TOKEN", "AVATARKIT_SERVE_LINK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    session = tmp_path / "s.yaml"
    session.write_text("llm: {provider: scripted}\nrenderer: {provider: console}\n")
    with pytest.raises(AvatarKitError) as info:
        run(session, port=0, **options)
    assert message in str(info.value)


def test_a_turn_longer_than_the_grace_is_cut_and_its_session_closed(
    serve: Callable[..., ServerThread],
) -> None:
    log: list[tuple[str, float]] = []
    loops: list[Any] = []
    renderers: list[ClosingRenderer] = []

    def factory() -> AvatarSession:
        loops.append(asyncio.get_running_loop())
        renderers.append(ClosingRenderer(log))
        renderers[-1].seconds_per_char = 1.0  # a sentence would take a minute
        return AvatarSession(llm=FakeLLM(["A very long sentence indeed."]), renderer=renderers[-1])

    server = serve(factory)
    page = Page(server.ws_url)
    assert page.start()["type"] == "ready"
    page.ws.send(json.dumps({"type": "send", "text": "talk"}))
    recv_until(page.ws, lambda m: m["type"] == "sentence_start")
    drained = asyncio.run_coroutine_threadsafe(server.app.state.avatarkit.drain(0.3), loops[0])
    drained.result(timeout=30)  # bounded by the grace, not by the minute-long sentence
    going, _ = recv_until(page.ws, lambda m: m["type"] == "going_away")
    assert going["grace"] == 0.3
    with pytest.raises(ConnectionClosed) as closed:
        recv_until(page.ws, lambda m: m["type"] == "ready")
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    assert [what for what, _ in log] == ["close"]
    assert renderers[0].completed == []  # the sentence was cut, not finished
    assert server.app.state.avatarkit.active == 0


def test_a_drain_stops_every_heygen_session(serve: Callable[..., ServerThread]) -> None:
    from avatarkit import load_session
    from avatarkit_heygen.heygen_testing import AVATAR, FakeHeyGen

    loops: list[Any] = []
    with FakeHeyGen() as heygen:
        heygen.max_sessions = 5
        config = {
            "llm": {"provider": "scripted", "replies": ["Hello from HeyGen."]},
            "renderer": {
                "provider": "heygen",
                "api_key": heygen.api_key,
                "base_url": heygen.base_url,
                "avatar_id": AVATAR,
            },
        }

        def factory() -> AvatarSession:
            loops.append(asyncio.get_running_loop())
            return load_session(config)

        server = serve(factory, max_sessions=5)
        pages = [Page(server.ws_url) for _ in range(3)]
        for page in pages:
            assert page.start()["type"] == "ready"
        assert sorted(heygen.sessions.values()) == ["started"] * 3
        pages[0].ws.send(json.dumps({"type": "send", "text": "hi"}))
        recv_until(pages[0].ws, lambda m: m["type"] == "metrics")
        state = server.app.state.avatarkit
        asyncio.run_coroutine_threadsafe(state.drain(5), loops[0]).result(timeout=60)
        for page in pages:
            with pytest.raises(ConnectionClosed) as closed:
                recv_until(page.ws, lambda m: False)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1012
        assert heygen.open_sessions() == []
        stopped = [b["session_id"] for b in heygen.bodies("stop")]
        assert sorted(stopped) == sorted(heygen.sessions)  # each stopped exactly once
        assert state.active == 0


def test_each_worker_has_its_own_session_limit(
    avatarkit_serve: Callable[..., Served], fake: FakeLiveAvatar
) -> None:
    """``--max-sessions`` is per worker: with two workers and a limit of one, each worker
    starts one session and refuses a second; the port holds two. (Starts are not rate-limited
    here: the kernel may send many of these pages from one client to the same worker.)"""
    served = avatarkit_serve(
        session_yaml(fake),
        "--workers",
        "2",
        "--max-sessions",
        "1",
        "--starts-per-minute",
        "100000",
    )
    workers = served.workers(2)
    started: dict[str, Page] = {}
    refused: dict[str, dict[str, Any]] = {}
    pages: list[Page] = []
    for _ in range(80):
        page = Page(served.ws_url)
        pages.append(page)
        answer = page.start()
        if answer["type"] == "ready":
            assert page.worker not in started, "a worker started a second session"
            started[page.worker] = page
        else:
            assert answer["code"] == "server_full", answer
            assert page.worker in started  # refused only by a worker that is full
            refused[page.worker] = answer
        if len(started) == 2 and len(refused) == 2:
            break
    assert set(started) == set(refused) == set(workers)
    assert sum(s.state == "started" for s in fake.sessions.values()) == 2
    for page in pages:
        page.close()


def test_the_page_reconnects_when_its_worker_dies(
    avatarkit_serve: Callable[..., Served], new_page: Callable[[], Any]
) -> None:
    """A worker killed outright (SIGKILL, out of memory) says nothing to its pages: the socket
    just drops (1006). A page whose avatar was up reconnects as after a restart."""
    served = avatarkit_serve(BROWSER_YAML, "--workers", "2")
    workers = served.workers(2)
    page = new_page()
    page.goto(served.url + "/")
    page.click("#start")
    page.wait_for_function("window.avatarkit.connection === 'connected'")
    first = page.evaluate("window.avatarkit.worker")
    os.kill(workers[first], signal.SIGKILL)
    page.wait_for_function("window.avatarkit.reconnects >= 1", timeout=30000)
    assert page.evaluate("window.avatarkit.closeCode") == 1006
    page.wait_for_function(
        f"window.avatarkit.connection === 'connected' && window.avatarkit.worker !== '{first}'",
        timeout=30000,
    )
    page.fill("#text", "still there?")
    page.press("#text", "Enter")
    page.wait_for_function("window.avatarkit.metrics && window.avatarkit.state === 'idle'")
    assert page.errors == []
