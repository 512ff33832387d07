"""Fixtures for the ``avatarkit serve`` tests: a real uvicorn server on 127.0.0.1 in a thread,
and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from avatarkit.serve import create_app, uvicorn_config

CHROMIUM = os.environ.get("AVATARKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The tests play audio without a click; a person's first message is the gesture.
    "--autoplay-policy=no-user-gesture-required",
]


class ServerThread:
    """uvicorn serving an ASGI app on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn_config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    """``serve(factory, **create_app_kwargs)`` starts the serve app; stopped after the test."""
    servers: list[ServerThread] = []

    def start(factory: Callable[[], Any], **kwargs: Any) -> ServerThread:
        server = ServerThread(create_app(factory, **kwargs)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def serve_asgi() -> Iterator[Callable[[Any], ServerThread]]:
    """Serve any ASGI app (fake third-party endpoints) on 127.0.0.1."""
    servers: list[ServerThread] = []

    def start(app: Any) -> ServerThread:
        server = ServerThread(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium (``apt-get install chromium``), never a downloaded browser build.

    Module-scoped on purpose: Playwright's sync API keeps an asyncio loop marked as running in
    this thread until it stops, which would break the async tests of later modules.
    """
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: apt-get install chromium (scripts/check does it in CI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _poll_function(page: Any) -> Callable[..., Any]:
    """``page.wait_for_function(expression)`` by polling ``page.evaluate``.

    Playwright's own polls through ``eval`` inside the page, which the app's Content Security
    Policy forbids (as it should); ``evaluate`` goes through the DevTools protocol instead, so
    the pages are tested with their real CSP in force.
    """

    def wait_for_function(expression: str, *, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout if timeout is not None else 15000) / 1000
        while True:
            value = page.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.02)

    return wait_for_function


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Callable[[], Any]]:
    """Open pages in a fresh browser context; console errors are collected on ``page.errors``,
    Content Security Policy violations on ``page.csp_violations``."""
    contexts: list[Any] = []

    def open_page() -> Any:
        context = chromium.new_context(viewport={"width": 1100, "height": 700})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.errors = []
        page.csp_violations = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                page.csp_violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        page.wait_for_function = _poll_function(page)
        return page

    yield open_page
    for context in contexts:
        context.close()
