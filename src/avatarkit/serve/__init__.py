"""``avatarkit serve``: a web page to talk to an avatar and see it.

One :class:`~avatarkit.AvatarSession` per browser tab (per WebSocket), closed when the tab closes
or the connection drops. The app is built on Starlette and served by uvicorn, both from the
``serve`` extra (``pip install 'avatarkit[serve]'``); importing this package does not import them,
so a missing extra is reported by :func:`run` as a clear error.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarkit.errors import AvatarKitError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from avatarkit.serve.connection import Limits, SessionFactory

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "WS_MAX_SIZE",
    "bind_host_names",
    "create_app",
    "require_serve_extra",
    "run",
    "run_from_args",
    "uvicorn_config",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 4
#: Frames over this size close the connection (1009) before the app sees them; anything over
#: the protocol's own 64 KiB limit but under this gets an error message and the page stays up.
WS_MAX_SIZE = 4 * 1024 * 1024

_REQUIRED = ("starlette", "uvicorn", "websockets")


def require_serve_extra() -> None:
    """Raise a clear error when the ``serve`` extra is not installed."""
    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise AvatarKitError(
            f"avatarkit serve needs {', '.join(missing)}, which are not installed: "
            "pip install 'avatarkit[serve]'"
        )


def create_app(
    factory: SessionFactory,
    *,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    limits: Limits | None = None,
    title: str = "avatarkit",
    allowed_hosts: Iterable[str] = (),
) -> Starlette:
    """The ASGI app; ``factory`` builds a fresh (not yet started) session for each page that
    asks to start one. ``allowed_hosts`` adds names the ``Host`` header may carry to the
    loopback names (``localhost``, ``127.0.0.1``, ``::1``)."""
    require_serve_extra()
    from avatarkit.serve.app import create_app as _create_app

    return _create_app(
        factory,
        max_sessions=max_sessions,
        limits=limits,
        title=title,
        allowed_hosts=allowed_hosts,
    )


def bind_host_names(host: str) -> list[str]:
    """Names to allow in ``Host`` for a listen address: a specific address is one (pages opened
    at ``http://192.168.1.5:8000`` carry it); a wildcard (``0.0.0.0``) says nothing."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [host]  # a name: the user typed it, so they mean to open it
    return [] if address.is_unspecified else [str(address)]


def uvicorn_config(app: Any, *, host: str, port: int, log_level: str = "info") -> Any:
    """The uvicorn settings ``run`` uses (tests serve the app with the same ones)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=WS_MAX_SIZE,
        lifespan="off",
        log_level=log_level,
        # Pages get a close frame at shutdown and their sessions close; give paid sessions
        # time to be stopped before uvicorn gives up on them.
        timeout_graceful_shutdown=15,
    )


def run(
    path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_sessions: int | None = None,
    allow_hosts: Iterable[str] = (),
) -> None:
    """Serve the session described by the YAML file ``path`` until interrupted (Ctrl-C).

    The file is validated up front, so a broken file fails here (``ConfigError``) rather than
    in the first page; each page then loads its own fresh session from it, and nothing is
    started until a page connects. ``max_sessions`` defaults to ``DEFAULT_MAX_SESSIONS``.
    """
    require_serve_extra()
    import uvicorn

    from avatarkit.config import load_config, load_session

    if max_sessions is None:
        max_sessions = DEFAULT_MAX_SESSIONS
    if max_sessions < 1:
        raise AvatarKitError(f"--max-sessions must be at least 1, not {max_sessions}")
    source = Path(path)
    load_config(source)  # validates everything, builds no provider

    def factory() -> Any:
        return load_session(source)

    allowed = [*bind_host_names(host), *allow_hosts]
    app = create_app(factory, max_sessions=max_sessions, title=source.name, allowed_hosts=allowed)
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port))
    # uvicorn logs the address it listens on ("Uvicorn running on http://...") right after this.
    logging.getLogger("uvicorn.error").info(
        "avatarkit serve: %s, at most %d avatar session(s) at once; open the address below",
        source.name,
        max_sessions,
    )
    server.run()


def run_from_args(args: argparse.Namespace) -> None:
    """``avatarkit serve`` with the options of :mod:`avatarkit.serve.options`."""
    run(
        args.file,
        host=args.host,
        port=args.port,
        max_sessions=args.max_sessions,
        allow_hosts=args.allow_hosts,
    )
