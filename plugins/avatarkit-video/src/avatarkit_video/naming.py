"""Choosing a recording's file names so that one never replaces another by accident.

The names are *reserved* by creating the three files with ``O_EXCL`` (create, fail if present),
which is atomic: of two renderers that start together, in one process or two, only one gets a
name; the other moves on to the next (``NAME-2`` ...) or, for a name the user chose, fails
clearly. Replacing an earlier recording takes ``overwrite: true``.
"""

from __future__ import annotations

import os
from pathlib import Path

from avatarkit.errors import ConfigError
from avatarkit_video.media import OutputFiles

__all__ = ["existing", "release", "reserve", "taken_error"]

#: Numbered names tried after the first before giving up (a folder full of recordings).
_MAX_TRIES = 10_000


def existing(files: OutputFiles) -> list[Path]:
    """The files of this recording that already exist."""
    return [path for path in files.all() if path.exists()]


def taken_error(files: OutputFiles, found: list[Path]) -> ConfigError:
    names = ", ".join(p.name for p in found)
    return ConfigError(
        f"{names} already exist in {str(files.video.parent)!r}: choose another name, "
        "leave name out (a new numbered name is picked) or set overwrite: true to replace them",
        field="name",
    )


def _claim(files: OutputFiles) -> bool:
    """Create all three files exclusively; on any clash remove what this call created."""
    created: list[Path] = []
    try:
        for path in files.all():
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.close(fd)
            created.append(path)
    except FileExistsError:
        for path in created:
            path.unlink(missing_ok=True)
        return False
    return True


def reserve(folder: Path, stem: str, *, numbered: bool, overwrite: bool) -> OutputFiles:
    """Reserve ``stem``'s files in ``folder`` (made if missing) and return them.

    ``overwrite``: take the name whatever exists. ``numbered``: on a clash try ``stem-2``,
    ``stem-3`` ... Otherwise a clash is a :class:`ConfigError` naming the files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = OutputFiles.in_folder(folder, stem)
    if overwrite:
        return files
    for n in range(1, _MAX_TRIES + 1):
        candidate = files if n == 1 else OutputFiles.in_folder(folder, f"{stem}-{n}")
        if _claim(candidate):
            return candidate
        if not numbered:
            raise taken_error(candidate, existing(candidate))
    raise ConfigError(
        f"{_MAX_TRIES} recordings named {stem!r} already exist in {str(folder)!r}",
        field="output_dir",
    )


def release(files: OutputFiles) -> None:
    """Give back names reserved by a recording that never started (its files still empty)."""
    for path in files.all():
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except OSError:
            continue
