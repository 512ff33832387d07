"""The avatarkit command. (Scaffold.)"""

from __future__ import annotations


def main() -> None:
    raise SystemExit("avatarkit CLI lands in a following commit")
