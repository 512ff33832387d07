"""Where the page's files come from.

The page's own HTML, CSS and ES modules ship inside this package (``static/``). ``livekit-client``,
which the page needs only to watch a LiveKit-based avatar (HeyGen), is not ours to ship: it is
installed from the npm registry into a cache folder and served from there when present::

    npm install --prefix ~/.cache/avatarkit/npm livekit-client@2

Looked up, first match wins: ``$AVATARKIT_LIVEKIT_CLIENT`` (the ``.mjs`` file itself or an npm
prefix holding ``node_modules``), ``$XDG_CACHE_HOME/avatarkit/npm`` (``~/.cache/avatarkit/npm``),
and ``./node_modules`` of the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LIVEKIT_CLIENT_HINT", "STATIC_DIR", "find_livekit_client", "livekit_client_prefix"]

STATIC_DIR = Path(__file__).parent / "static"

_BUNDLE = Path("node_modules", "livekit-client", "dist", "livekit-client.esm.mjs")

LIVEKIT_CLIENT_HINT = (
    "livekit-client is not installed for avatarkit serve; install it from npm with "
    "`npm install --prefix ~/.cache/avatarkit/npm livekit-client@2` "
    "(or point AVATARKIT_LIVEKIT_CLIENT at livekit-client.esm.mjs) and reload the page"
)


def livekit_client_prefix() -> Path:
    """The default npm prefix that ``npm install --prefix`` should install into."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache, "avatarkit", "npm")


def find_livekit_client() -> Path | None:
    """The ``livekit-client`` ES module bundle, or ``None`` when it is not installed."""
    candidates: list[Path] = []
    configured = os.environ.get("AVATARKIT_LIVEKIT_CLIENT")
    if configured:
        path = Path(configured).expanduser()
        candidates.append(path if path.suffix in (".mjs", ".js") else path / _BUNDLE)
    candidates += [livekit_client_prefix() / _BUNDLE, Path.cwd() / _BUNDLE]
    return next((p for p in candidates if p.is_file()), None)
