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
