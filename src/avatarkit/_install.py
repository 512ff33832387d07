"""Is the ``avatarkit`` import package really ours?

PyPI's ``avatarkit`` is an unrelated project ("Python SDK for avatar WebSocket services") that
installs an import package of the same name, with files (``__init__.py``, ``errors.py``) that
overwrite ours. Installed beside ``avatarkit-core`` it breaks whichever was installed first, and
uninstalling it deletes files of ours. These checks turn that into one plain sentence.

Standard library only: this runs before anything else of avatarkit is trusted to import.
"""

from __future__ import annotations

import os
import sys

__all__ = ["FOREIGN", "InstallConflictWarning", "check", "foreign_beside", "foreign_message"]

#: The PyPI distribution that is not ours but installs an ``avatarkit`` import package.
FOREIGN = "avatarkit"
OURS = "avatarkit-core"
_FIX = f"fix: pip uninstall -y {FOREIGN} {OURS} && pip install {OURS}"

#: Set when ``import avatarkit`` has already warned, so the CLI does not say it twice.
warned = False


class InstallConflictWarning(UserWarning):
    """The unrelated ``avatarkit`` distribution is installed beside avatarkit-core."""


def foreign_message(version: str | None, *, ours: bool) -> str:
    """The sentence shown for a conflict; ``ours``: whether the import package is still ours."""
    found = f"the unrelated PyPI project {FOREIGN!r} ({version or 'unknown version'})"
    if ours:
        return (
            f"{found} is installed in this environment beside {OURS}; both install an "
            f"`avatarkit` import package, so each overwrites the other's files ({_FIX})"
        )
    return (
        f"`import avatarkit` finds {found}, not {OURS}: both install an `avatarkit` import "
        f"package and that one's files won ({_FIX})"
    )


def foreign_beside(package_dir: str) -> str | None:
    """Cheap import-time probe: the version of a ``avatarkit-VERSION.dist-info`` next to our
    package directory (the layout pip and uv give both in one site-packages), else None."""
    parent = os.path.dirname(package_dir)
    try:
        names = os.listdir(parent)
    except OSError:
        return None
    prefix = f"{FOREIGN}-"
    for name in names:
        if name.startswith(prefix) and name.endswith(".dist-info"):
            version = name[len(prefix) : -len(".dist-info")]
            if version[:1].isdigit():
                return version
    return None


def _package_is_ours() -> bool:
    module = sys.modules.get("avatarkit")
    if module is None:
        try:
            import avatarkit as module
        except Exception:
            return False
    return getattr(module, "_DISTRIBUTION", None) == OURS


def check() -> tuple[str, bool] | None:
    """Full check through ``importlib.metadata``: ``(message, fatal)`` or None when all is well.

    Fatal: the ``avatarkit`` import package is not ours (the other project's files won, or an
    uninstall removed ours), so nothing of avatarkit can be trusted to run.
    """
    import importlib.metadata

    try:
        version: str | None = importlib.metadata.version(FOREIGN)
        present = True
    except importlib.metadata.PackageNotFoundError:
        version, present = None, False
    ours = _package_is_ours()
    if present:
        return foreign_message(version, ours=ours), not ours
    if not ours:
        return (
            f"the `avatarkit` import package in this environment is incomplete or not from "
            f"{OURS} (was another package that installs `avatarkit` uninstalled?); fix: "
            f"pip install --force-reinstall {OURS}",
            True,
        )
    return None
