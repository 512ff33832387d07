"""What keeps other sites away from a local ``avatarkit serve``: Host allowlist, Origin check,
no framing.

- **Host allowlist** (DNS rebinding): a page on ``attacker.example`` whose name is re-pointed at
  127.0.0.1 reaches this server with ``Host: attacker.example`` and its own origin, so an
  Origin-equals-Host check alone passes. Every HTTP request and WebSocket handshake whose Host is
  not an allowed name is refused before the app sees it. Loopback names are allowed by default.
- **Origin** (cross-site WebSocket): browsers send their page's ``Origin`` on a WebSocket; only
  the server's own is accepted.
- **No framing**: every response says ``X-Frame-Options: DENY`` and CSP ``frame-ancestors
  'none'``, so no other page can embed the app (hidden frames, clickjacked buttons).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DEFAULT_ALLOWED_HOSTS",
    "OPS_PATHS",
    "SECURITY_HEADERS",
    "HostAllowlist",
    "SecurityMiddleware",
    "host_name",
    "same_origin",
]

logger = logging.getLogger(__name__)

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")

#: Read-only endpoints for orchestrators and scrapers, answered whatever the ``Host``: kubelet
#: probes and Prometheus address a pod by its IP. They start nothing and show only counts; a
#: public deployment routes only the page's paths to the server (docs: deploying).
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

#: The page's scripts, styles and images come from this server only. ``connect-src`` is open to
#: WebSocket/HTTP(S) origins because the avatar's LiveKit room is on the provider's servers.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' ws: wss: http: https:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.encode(), value.encode())
    for name, value in (
        ("x-frame-options", "DENY"),
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("permissions-policy", "microphone=(self), camera=(), geolocation=()"),
    )
)


def host_name(host: str) -> str | None:
    """The name part of a ``Host`` header (no port, lower case, no trailing dot); None if it is
    not a well-formed host."""
    host = host.strip().lower()
    if not host:
        return None
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        if end < 0:
            return None
        rest = host[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return host[1:end]
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        host = name
    elif sep and ":" not in name:
        return None  # "name:notaport"
    return host.rstrip(".") or None


class HostAllowlist:
    """Names a request's ``Host`` may carry.

    Entries are exact names (``avatar.example.com``), subdomain wildcards (``*.example.com``)
    or ``*`` (any host: only behind a proxy that checks Host itself). Loopback IP literals are
    always allowed; no DNS name can be made to look like one.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.any = False
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for name in (*DEFAULT_ALLOWED_HOSTS, *names):
            self.add(name)

    def add(self, name: str) -> None:
        name = name.strip().lower().rstrip(".")
        if not name:
            raise ValueError("an allowed host cannot be empty")
        if name == "*":
            self.any = True
        elif name.startswith("*."):
            self.suffixes.append(name[1:])
        else:
            self.exact.add(name.strip("[]"))

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:
            return False
        name = host_name(host_header)
        if name is None:
            return False
        if self.any or name in self.exact or any(name.endswith(s) for s in self.suffixes):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def describe(self) -> str:
        names = sorted(self.exact) + [f"*{s}" for s in self.suffixes]
        return "any host" if self.any else ", ".join(names)


def same_origin(origin: str | None, host: str | None) -> bool:
    """Browsers send ``Origin`` on a WebSocket; only this server's own page may connect.
    Clients without ``Origin`` are not browsers (and cannot be driven by another site)."""
    if origin is None:
        return True
    if host is None:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


class SecurityMiddleware:
    """ASGI middleware: refuse foreign ``Host`` headers (except on :data:`OPS_PATHS`); add the
    no-framing headers to every HTTP response."""

    def __init__(self, app: Any, allowlist: HostAllowlist) -> None:
        self.app = app
        self.allowlist = allowlist

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        probe = kind == "http" and scope.get("path") in OPS_PATHS
        if not probe and not self.allowlist.allows(host):
            logger.warning(
                "refused a %s request for host %r (allowed: %s; add names with --allow-host)",
                kind,
                (host or "")[:100],
                self.allowlist.describe(),
            )
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # before accept: 403
                return
            await _plain(send, 400, b"Invalid Host header\n")
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
