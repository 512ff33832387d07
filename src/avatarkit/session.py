"""AvatarSession: the turn engine. (Being written: scaffold only in this commit.)"""

from __future__ import annotations

from typing import Any

__all__ = ["AvatarSession"]


class AvatarSession:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("AvatarSession lands in the next commit")
