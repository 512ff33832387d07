"""The ASGI app: the page, its static files, ``livekit-client`` and the ``/ws`` endpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketState

from avatarkit.serve.assets import LIVEKIT_CLIENT_HINT, STATIC_DIR, find_livekit_client
from avatarkit.serve.auth import Auth, Authorizer, StartLimiter
from avatarkit.serve.connection import (
    CLOSE_ERROR,
    CLOSE_POLICY,
    Limits,
    SessionFactory,
    serve_page,
)
from avatarkit.serve.lifecycle import drain_on_signals
from avatarkit.serve.protocol import error_message
from avatarkit.serve.security import HostAllowlist, SecurityMiddleware, same_origin
from avatarkit.serve.state import DEFAULT_DRAIN_GRACE, ServeState

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(
    factory: SessionFactory,
    *,
    max_sessions: int = 4,
    limits: Limits | None = None,
    title: str = "avatarkit",
    allowed_hosts: Iterable[str] = (),
    auth: Auth | None = None,
    authorize: Authorizer | None = None,
    start_limiter: StartLimiter | None = None,
    drain_grace: float = DEFAULT_DRAIN_GRACE,
) -> Starlette:
    """The ``avatarkit serve`` app; ``factory`` builds one fresh session per started page.

    ``allowed_hosts`` adds names the ``Host`` header may carry to the loopback names. ``auth``
    says who may start a session (default: anyone who can open the page); ``authorize`` is an
    embedding app's own check, used instead. ``start_limiter`` bounds starts per identity.
    ``drain_grace``: seconds running turns get when the process is told to stop (SIGTERM).
    The app's ``state.avatarkit`` is its :class:`~avatarkit.serve.state.ServeState`.
    """
    if max_sessions < 1:
        raise ValueError("max_sessions must be at least 1")
    rule = auth or Auth()
    if authorize is not None:
        rule.hook = authorize
    state = ServeState(max_sessions, auth=rule, start_limiter=start_limiter)
    page_limits = limits or Limits()
    allowlist = HostAllowlist(allowed_hosts)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def livekit_client(request: Request) -> Response:
        bundle = find_livekit_client()
        if bundle is None:
            return PlainTextResponse(LIVEKIT_CLIENT_HINT, status_code=404)
        return FileResponse(bundle, media_type="text/javascript")

    async def health(request: Request) -> Response:
        return JSONResponse(state.health(), headers=_NO_STORE)

    async def ready(request: Request) -> Response:
        return JSONResponse(
            state.health(), status_code=200 if state.ready else 503, headers=_NO_STORE
        )

    async def metrics(request: Request) -> Response:
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type, headers=_NO_STORE)

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            if not same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
                await websocket.send_json(
                    error_message(
                        "origin", "this page's origin may not use this server", code="origin"
                    )
                )
                await websocket.close(CLOSE_POLICY)
                return
            code = await serve_page(
                websocket, factory, limits=page_limits, title=title, state=state
            )
            await _close(websocket, code)
        except Exception:
            logger.exception("page connection failed")
            await _close(websocket, CLOSE_ERROR)

    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/readyz", ready),
        Route("/metrics", metrics),
        Route("/vendor/livekit-client.mjs", livekit_client),
        WebSocketRoute("/ws", websocket_endpoint),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, allowlist=allowlist)],
        lifespan=drain_on_signals(state, drain_grace),
    )
    app.state.avatarkit = state
    return app


_NO_STORE = {"cache-control": "no-store"}


async def _close(websocket: WebSocket, code: int) -> None:
    """Close the socket unless the page already did."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    try:
        await websocket.close(code)
    except Exception as exc:
        logger.debug("closing the page's socket failed: %s", exc)
