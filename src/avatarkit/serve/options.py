"""The ``avatarkit serve`` command-line options, defined next to the code that uses them.

Imported by :mod:`avatarkit.cli` when it builds its parser, so it imports nothing heavy.
"""

from __future__ import annotations

import argparse

__all__ = ["add_serve_arguments"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to its sub-parser."""
    parser.add_argument("file", metavar="FILE", help="session YAML file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    parser.add_argument(
        "--max-sessions", type=int, default=None, metavar="N", help="concurrent sessions limit"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        dest="allow_hosts",
        help="a name the Host header may carry besides loopback names (repeatable; "
        "'*.example.com' for subdomains); pages on other names are refused",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on the one port (uvicorn's supervisor); each has its own "
        "--max-sessions",
    )
    parser.add_argument(
        "--auth",
        choices=("none", "token", "link", "proxy"),
        default=None,
        help="who may start a session: anyone who can open the page (none; the default on a "
        "loopback address, and beyond one only when given), a shared token "
        "($AVATARKIT_SERVE_TOKEN), a signed short-lived link ($AVATARKIT_SERVE_LINK_SECRET), "
        "or a user header from a trusted proxy (proxy)",
    )
    parser.add_argument(
        "--trusted-proxy-header",
        metavar="NAME",
        default=None,
        help="with --auth proxy: the header naming the user, e.g. X-Forwarded-User",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        dest="trusted_proxies",
        help="addresses a reverse proxy connects from (repeatable; loopback): its "
        "X-Forwarded-For names the client (per-client start limits) and, with --auth proxy, "
        "its user header is believed",
    )
    parser.add_argument(
        "--drain-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, how long running turns may finish before every session is closed (20)",
    )
    parser.add_argument(
        "--starts-per-minute",
        type=float,
        default=10.0,
        metavar="N",
        help="session starts allowed per client a minute (bursts of 5)",
    )
    parser.add_argument(
        "--gc",
        choices=("tuned", "python"),
        default="tuned",
        help="garbage collector of each serving process: tuned (freeze what exists at start "
        "and what survives a second, young collections only on a burst of 100,000 objects, "
        "full ones every 10 minutes or once peak memory grew by half: no collector "
        "pauses under a steady load) or python (Python's own settings)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop of each serving process: auto (uvloop when installed, as the serve "
        "extra does on Linux and macOS; else asyncio's own), asyncio or uvloop",
    )
