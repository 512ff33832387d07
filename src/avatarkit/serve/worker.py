"""The app of one ``avatarkit serve`` process, built from :class:`ServeSettings`.

With ``--workers N`` uvicorn's supervisor starts N worker processes, each importing
``avatarkit.serve.worker:app`` (an app factory); the settings reach them in the environment
(``AVATARKIT_SERVE_SETTINGS``, JSON, no secrets: those stay in their own variables).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from avatarkit.serve.auth import Auth, AuthMode, StartLimiter
from avatarkit.serve.collector import GCPolicy, tune_collector
from avatarkit.serve.state import DEFAULT_DRAIN_GRACE

__all__ = ["SETTINGS_ENV", "ServeSettings", "app", "build_app", "log_with_uvicorn"]

SETTINGS_ENV = "AVATARKIT_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """Everything a worker needs to build its app (picklable, JSON-able, secret-free)."""

    path: str
    max_sessions: int
    allowed_hosts: list[str] = field(default_factory=list)
    auth: AuthMode = "none"
    proxy_header: str | None = None
    trusted_proxies: list[str] = field(default_factory=list)
    drain_grace: float = DEFAULT_DRAIN_GRACE
    starts_per_minute: float = 10.0
    gc: GCPolicy = "tuned"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))


def build_app(settings: ServeSettings) -> Any:
    """The serve app for ``settings`` (each page loads the YAML file afresh)."""
    from avatarkit.config import load_session
    from avatarkit.serve import create_app

    source = Path(settings.path)

    def factory() -> Any:
        return load_session(source)

    return create_app(
        factory,
        max_sessions=settings.max_sessions,
        title=source.name,
        allowed_hosts=settings.allowed_hosts,
        auth=Auth.from_env(
            settings.auth,
            proxy_header=settings.proxy_header,
            trusted_proxies=settings.trusted_proxies,
        ),
        start_limiter=StartLimiter(per_minute=settings.starts_per_minute),
        drain_grace=settings.drain_grace,
    )


def log_with_uvicorn() -> None:
    """Send ``avatarkit.serve``'s INFO messages (drain, refused hosts) to uvicorn's log, which
    is what an operator watches; call it after uvicorn has set its logging up."""
    ours = logging.getLogger("avatarkit.serve")
    handlers = logging.getLogger("uvicorn").handlers
    if not handlers or ours.handlers:
        return
    for handler in handlers:
        ours.addHandler(handler)
    ours.setLevel(min(ours.getEffectiveLevel(), logging.INFO))
    ours.propagate = False


def app() -> Any:
    """uvicorn's app factory in each worker process."""
    log_with_uvicorn()
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers with `avatarkit serve`")
    settings = ServeSettings.from_json(text)
    built = build_app(settings)
    tune_collector(settings.gc)
    return built
