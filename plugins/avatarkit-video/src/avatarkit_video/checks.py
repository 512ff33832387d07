"""Up-front checks of the renderer's options, so bad ones fail before any work starts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from avatarkit.errors import ConfigError
from avatarkit_video.options import VideoRendererOptions

__all__ = ["check_output_dir", "validate_options"]


def validate_options(options: Mapping[str, Any]) -> VideoRendererOptions:
    """Validate keyword options given in code; ConfigError naming each bad field."""
    try:
        return VideoRendererOptions.model_validate(dict(options))
    except ValidationError as exc:
        errors = exc.errors()
        first = ".".join(map(str, errors[0]["loc"]))
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if i else "") + e["msg"]
            for i, e in enumerate(errors)
        )
        raise ConfigError(problems, field=f"renderer.{first}" if first else "renderer") from None


def check_output_dir(folder: Path) -> None:
    """Make sure files can be created in ``folder`` (created if missing) by trying it.

    Trying is the only reliable test (permissions, ACLs, read-only mounts, root). Folders this
    creates for the trial are removed again: the recording creates them when it starts.
    """
    folder = folder.expanduser()
    where = f"the video renderer's output folder {str(folder)!r}"
    missing: list[Path] = []
    probe = folder.absolute()
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == folder.absolute() else f"is inside the file {str(probe)!r}"
        raise ConfigError(f"{where} {what}, not a folder", field="renderer.output_dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".avatarkit-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"{where} is not writable ({reason}); choose a folder you can write to",
            field="renderer.output_dir",
        ) from None
    finally:
        for path in missing:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break
