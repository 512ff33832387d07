"""``avatarkit serve``: a web page to talk to an avatar and see it.

One :class:`~avatarkit.AvatarSession` per browser tab (per WebSocket), closed when the tab closes
or the connection drops. The app is built on Starlette and served by uvicorn, both from the
``serve`` extra (``pip install 'avatarkit-core[serve]'``); importing this package does not import
them, so a missing extra is reported by :func:`run` as a clear error.
"""

from __future__ import annotations

# Imported by `avatarkit --help` (for serve's options): only what that needs loads here; the
# rest inside the functions. mypy treats this name as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

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

DEFAULT_MAX_SESSIONS = 4
#: Frames over this size close the connection (1009) before the app sees them; anything over
#: the protocol's own 64 KiB limit but under this gets an error message and the page stays up.
WS_MAX_SIZE = 4 * 1024 * 1024

_REQUIRED = ("starlette", "uvicorn", "websockets")


def require_serve_extra() -> None:
    """Raise a clear error when the ``serve`` extra is not installed."""
    import importlib.util

    from avatarkit.errors import AvatarKitError

    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise AvatarKitError(
            f"avatarkit serve needs {', '.join(missing)}, which are not installed: "
            "pip install 'avatarkit-core[serve]'"
        )


def create_app(
    factory: SessionFactory,
    *,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    limits: Limits | None = None,
    title: str = "avatarkit",
    allowed_hosts: Iterable[str] = (),
    **options: Any,
) -> Starlette:
    """The ASGI app; ``factory`` builds a fresh (not yet started) session for each page that
    asks to start one. ``allowed_hosts`` adds names the ``Host`` header may carry to the
    loopback names (``localhost``, ``127.0.0.1``, ``::1``). Further ``options`` (``auth``,
    ``authorize``, ``start_limiter``, ``drain_grace``) are those of
    :func:`avatarkit.serve.app.create_app`."""
    require_serve_extra()
    from avatarkit.serve.app import create_app as _create_app

    return _create_app(
        factory,
        max_sessions=max_sessions,
        limits=limits,
        title=title,
        allowed_hosts=allowed_hosts,
        **options,
    )


def bind_host_names(host: str) -> list[str]:
    """Names to allow in ``Host`` for a listen address: a specific address is one (pages opened
    at ``http://192.168.1.5:8000`` carry it); a wildcard (``0.0.0.0``) says nothing."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [host]  # a name: the user typed it, so they mean to open it
    return [] if address.is_unspecified else [str(address)]


def uvicorn_config(app: Any, *, host: str, port: int, log_level: str = "info", **extra: Any) -> Any:
    """The uvicorn settings ``run`` uses (tests serve the app with the same ones)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=WS_MAX_SIZE,
        # The lifespan turns SIGTERM/SIGINT into a drain (avatarkit.serve.lifecycle).
        lifespan="on",
        log_level=log_level,
        # After the drain every session is closed; this bounds what is left (plain HTTP).
        timeout_graceful_shutdown=15,
        # X-Forwarded-For is read by avatarkit.serve.auth, from --trusted-proxy addresses only;
        # uvicorn's rewrite would hide which address actually connected.
        proxy_headers=False,
        **extra,
    )


def run(
    path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_sessions: int | None = None,
    allow_hosts: Iterable[str] = (),
    workers: int = 1,
    auth: str | None = None,
    proxy_header: str | None = None,
    trusted_proxies: Iterable[str] = (),
    drain_grace: float | None = None,
    starts_per_minute: float = 10.0,
    gc: str = "tuned",
    loop: str = "auto",
) -> None:
    """Serve the session described by the YAML file ``path`` until stopped.

    The file is validated up front, so a broken file fails here (``ConfigError``) rather than
    in the first page; each page then loads its own fresh session from it, and nothing is
    started until a page asks. ``max_sessions`` (per worker) defaults to
    ``DEFAULT_MAX_SESSIONS``. ``workers`` > 1 runs that many processes on one port under
    uvicorn's supervisor. SIGTERM (and the first Ctrl-C) drains: see ``avatarkit.serve.lifecycle``.
    ``auth`` (``none``, ``token``, ``link``, ``proxy``) defaults to ``none`` on a loopback
    ``host`` only: beyond one, starting without a choice is refused. ``gc`` is the
    garbage-collector policy of each serving process: see ``avatarkit.serve.collector``.
    ``loop`` is its event loop: ``auto`` (uvloop when installed, as the ``serve`` extra does on
    Linux and macOS, else asyncio's own), ``asyncio`` or ``uvloop``.
    """
    require_serve_extra()
    import math
    from pathlib import Path

    from avatarkit.config import load_config
    from avatarkit.errors import AvatarKitError
    from avatarkit.serve.auth import Auth
    from avatarkit.serve.state import DEFAULT_DRAIN_GRACE
    from avatarkit.serve.worker import ServeSettings, build_app, log_with_uvicorn

    if max_sessions is None:
        max_sessions = DEFAULT_MAX_SESSIONS
    if max_sessions < 1:
        raise AvatarKitError(f"--max-sessions must be at least 1, not {max_sessions}")
    if workers < 1:
        raise AvatarKitError(f"--workers must be at least 1, not {workers}")
    if auth is None:
        if not _loopback(host):
            raise AvatarKitError(
                f"avatarkit serve would listen on {host} with no authentication: anyone who can "
                "reach it could start paid avatar sessions. Choose --auth token, link or proxy "
                "(see the deploying guide), or pass --auth none to accept that"
            )
        auth = "none"
    if auth not in ("none", "token", "link", "proxy"):
        raise AvatarKitError(f"--auth must be none, token, link or proxy, not {auth!r}")
    if drain_grace is None:
        drain_grace = DEFAULT_DRAIN_GRACE
    if not (math.isfinite(drain_grace) and drain_grace >= 0):
        raise AvatarKitError(f"--drain-grace must be 0 or more, not {drain_grace}")
    if not (math.isfinite(starts_per_minute) and starts_per_minute > 0):
        raise AvatarKitError(f"--starts-per-minute must be more than 0, not {starts_per_minute}")
    if gc not in ("tuned", "python"):
        raise AvatarKitError(f"--gc must be tuned or python, not {gc!r}")
    loop_name = _event_loop(loop)
    source = Path(path).resolve()
    load_config(source)  # validates everything, builds no provider
    settings = ServeSettings(
        path=str(source),
        max_sessions=max_sessions,
        allowed_hosts=[*bind_host_names(host), *allow_hosts],
        auth=auth,  # type: ignore[arg-type]
        proxy_header=proxy_header,
        trusted_proxies=list(trusted_proxies),
        drain_grace=drain_grace,
        starts_per_minute=starts_per_minute,
        gc=gc,  # type: ignore[arg-type]
    )
    Auth.from_env(settings.auth, proxy_header=proxy_header, trusted_proxies=trusted_proxies)
    if workers == 1:
        import uvicorn

        from avatarkit.serve.collector import tune_collector
        from avatarkit.serve.metrics import forget_dead_processes

        forget_dead_processes(starting=True)  # PROMETHEUS_MULTIPROC_DIR: an earlier run's
        config = uvicorn_config(build_app(settings), host=host, port=port, loop=loop)
        tune_collector(settings.gc)
        log_with_uvicorn()  # after uvicorn.Config: it sets up logging
        _announce(settings, host=host, workers=1, loop=loop_name)
        uvicorn.Server(config).run()
        return
    _run_workers(settings, host=host, port=port, workers=workers, loop=loop, loop_name=loop_name)


def _event_loop(loop: str) -> str:
    """The event loop ``--loop`` gives (``auto``: uvloop when it is installed)."""
    import importlib.util

    from avatarkit.errors import AvatarKitError

    if loop not in ("auto", "asyncio", "uvloop"):
        raise AvatarKitError(f"--loop must be auto, asyncio or uvloop, not {loop!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if loop == "uvloop" and not installed:
        raise AvatarKitError(
            "--loop uvloop: uvloop is not installed (pip install uvloop; the avatarkit-core[serve] "
            "extra installs it on Linux and macOS)"
        )
    if loop == "auto":
        return "uvloop" if installed else "asyncio"
    return loop


def _announce(settings: Any, *, host: str, workers: int, loop: str) -> None:
    import logging
    from pathlib import Path

    log = logging.getLogger("uvicorn.error")
    if settings.auth == "none" and not _loopback(host):
        log.warning(
            "avatarkit serve listens on %s with no authentication: anyone who can reach it can "
            "start paid avatar sessions (see --auth)",
            host,
        )
    # uvicorn logs the address it listens on ("Uvicorn running on http://...") right after this.
    log.info(
        "avatarkit serve: %s, at most %d avatar session(s) at once%s, event loop %s; open the "
        "address below",
        Path(settings.path).name,
        settings.max_sessions,
        f" per worker, {workers} workers" if workers > 1 else "",
        loop,
    )


def _run_workers(
    settings: Any, *, host: str, port: int, workers: int, loop: str, loop_name: str
) -> None:
    """N worker processes on one port under uvicorn's own supervisor."""
    import os
    import shutil
    import tempfile

    from uvicorn.supervisors import Multiprocess

    from avatarkit.serve.metrics import MULTIPROC_ENV, forget_dead_processes
    from avatarkit.serve.worker import SETTINGS_ENV

    os.environ[SETTINGS_ENV] = settings.to_json()
    made_dir = None
    if not os.environ.get(MULTIPROC_ENV):  # metrics shared by every worker (prometheus-client)
        made_dir = tempfile.mkdtemp(prefix="avatarkit-metrics-")
        os.environ[MULTIPROC_ENV] = made_dir
    forget_dead_processes(starting=True)  # a folder of yours may hold an earlier run's
    try:
        config = uvicorn_config(
            "avatarkit.serve.worker:app",
            host=host,
            port=port,
            factory=True,
            workers=workers,
            loop=loop,
        )
        _announce(settings, host=host, workers=workers, loop=loop_name)
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_from_args(args: argparse.Namespace) -> None:
    """``avatarkit serve`` with the options of :mod:`avatarkit.serve.options`."""
    run(
        args.file,
        host=args.host,
        port=args.port,
        max_sessions=args.max_sessions,
        allow_hosts=args.allow_hosts,
        workers=args.workers,
        auth=args.auth,
        proxy_header=args.trusted_proxy_header,
        trusted_proxies=args.trusted_proxies,
        drain_grace=args.drain_grace,
        starts_per_minute=args.starts_per_minute,
        gc=args.gc,
        loop=args.loop,
    )
