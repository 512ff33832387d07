"""Where a session's recording goes, told to the person at the terminal (``run``, ``say``).

A renderer that records exposes its paths as ``files.all()`` (the video renderer does; the
paths are final once it has started). The CLI says where they are when the session starts,
warns when one of them already existed (so an earlier recording is never replaced silently),
and lists what was written when the session closes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Recordings"]


def _paths(renderer: Any) -> list[Path]:
    files = getattr(renderer, "files", None)
    all_files = getattr(files, "all", None)
    if not callable(all_files):
        return []
    try:
        return [Path(p) for p in all_files()]
    except Exception:  # a renderer's own attribute: never let it break the command
        return []


class Recordings:
    """Announces a renderer's recording files on ``err``; build it before the session starts."""

    def __init__(self, renderer: Any, err: TextIO) -> None:
        self.renderer = renderer
        self.err = err
        self._before = {p.resolve(): _stamp(p) for p in _paths(renderer) if p.exists()}

    def started(self) -> None:
        """Call once the session has started: the renderer's paths are final."""
        paths = _paths(self.renderer)
        if not paths:
            return
        self.err.write(f"recording to {_join(paths)}\n")
        replaced = [p for p in paths if p.resolve() in self._before]
        if replaced:
            self.err.write(
                f"warning: replacing the earlier recording {_join(replaced)} "
                "(the renderer's fixed `name:` option; remove it for a new name each run)\n"
            )
        self.err.flush()

    def finished(self) -> None:
        """Call after the session has closed: lists the files written."""
        written = [
            p
            for p in _paths(self.renderer)
            if p.exists() and _stamp(p) != self._before.get(p.resolve())
        ]
        if written:
            self.err.write(f"saved {_join(written)}\n")
            self.err.flush()


def _stamp(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


def _join(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)
