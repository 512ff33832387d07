"""HeyGen streaming-avatar and LiveAvatar renderers for avatarkit.

Importing this package is light: the renderer module (httpx, tenacity) loads on first use of
its names, and the livekit SDK only when media is connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "HeyGenCallbacks",
    "HeyGenRenderer",
    "HeyGenRendererOptions",
    "HeyGenSession",
    "HeyGenSessionEnded",
    "HeyGenTaskResult",
    "__version__",
]

if TYPE_CHECKING:
    from avatarkit_heygen.api import HeyGenSessionEnded
    from avatarkit_heygen.backend import HeyGenCallbacks, HeyGenSession, HeyGenTaskResult
    from avatarkit_heygen.heygen import HeyGenRenderer
    from avatarkit_heygen.heygen_options import HeyGenRendererOptions

_LAZY = {
    "HeyGenSessionEnded": "avatarkit_heygen.api",
    "HeyGenCallbacks": "avatarkit_heygen.backend",
    "HeyGenSession": "avatarkit_heygen.backend",
    "HeyGenTaskResult": "avatarkit_heygen.backend",
    "HeyGenRenderer": "avatarkit_heygen.heygen",
    "HeyGenRendererOptions": "avatarkit_heygen.heygen_options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'avatarkit_heygen' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
