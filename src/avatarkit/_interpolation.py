"""``${NAME}``, ``${NAME:-default}`` and ``$$`` in session files, defaults nested.

A small recursive-descent parser rather than a regular expression, so a default may itself hold
``${...}`` (``${A:-${B:-x}}``: ``A``, else ``B``, else ``x``) and every malformed form is named.
A default is expanded only when it is used, so ``${A:-${B}}`` needs ``B`` only when ``A`` is
unset or empty. The whole text is checked for syntax before any variable is looked up, so a
malformed ``${`` is reported before a missing variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Expansion", "InterpolationError", "expand"]


@dataclass
class Expansion:
    """The expanded text, the values that are secrets, and variables that were set but empty."""

    value: str
    secrets: set[str] = field(default_factory=set)
    empty: list[str] = field(default_factory=list)


def expand(
    text: str, env: Mapping[str, str], *, secret: bool, secret_name: re.Pattern[str]
) -> Expansion:
    """Expand ``text`` with ``env``.

    Args:
        secret: the whole value is a secret (its key is named like one): every variable's value
            used in it is reported in ``secrets``.
        secret_name: variables whose name matches are secrets wherever they are used.

    Raises:
        InterpolationError: malformed ``${...}``, or a variable without a default is not set.
    """
    expander = _Expander(text, env, secret, secret_name)
    value = expander.expand()
    return Expansion(value, expander.secrets, expander.empty)


class InterpolationError(Exception):
    """A ``${...}`` that cannot be expanded; ``message`` says why."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Expander:
    """A small recursive-descent parser for ``${NAME}``, ``${NAME:-default}`` and ``$$``."""

    def __init__(
        self, text: str, env: Mapping[str, str], secret: bool, secret_name: re.Pattern[str]
    ) -> None:
        self.text = text
        self.env = env
        self.secret = secret
        self.secret_name = secret_name
        self.secrets: set[str] = set()
        self.empty: list[str] = []

    def expand(self) -> str:
        self._run(0, nested=False, use=False)  # the syntax first, so it is reported first
        out, i = self._run(0, nested=False, use=True)
        assert i == len(self.text)
        return out

    def _run(self, i: int, *, nested: bool, use: bool) -> tuple[str, int]:
        """Expand from ``i`` to the end (or, in a default, to its closing ``}``)."""
        text, out = self.text, list[str]()
        while i < len(text):
            ch = text[i]
            if nested and ch == "}":
                return "".join(out), i
            if ch == "$" and text.startswith("$$", i):
                out.append("$")
                i += 2
            elif ch == "$" and text.startswith("${", i):
                value, i = self._reference(i, use=use)
                out.append(value)
            else:
                out.append(ch)
                i += 1
        if nested:
            raise InterpolationError(self._malformed("a ${ is not closed by }"))
        return "".join(out), i

    def _reference(self, start: int, *, use: bool) -> tuple[str, int]:
        text = self.text
        name_match = _NAME.match(text, start + 2)
        if name_match is None:
            raise InterpolationError(self._malformed("${ must be followed by a variable name"))
        name, i = name_match.group(0), name_match.end()
        found = self.env.get(name) if use else ""
        if text.startswith("}", i):
            if use and found is None:
                raise InterpolationError(
                    f"environment variable {name} is not set (use ${{{name}:-default}} "
                    "to give a default)"
                )
            value, i = found or "", i + 1
            if use and value == "":
                self.empty.append(name)
        elif text.startswith(":-", i):
            fallback = use and not found
            default, i = self._run(i + 2, nested=True, use=fallback)
            i += 1  # the closing }
            value = default if fallback else (found or "")
        else:
            raise InterpolationError(self._malformed(f"after ${{{name} expected }} or :-default}}"))
        if use and value and (self.secret or self.secret_name.search(name)):
            self.secrets.add(value)
        return value, i

    @staticmethod
    def _malformed(detail: str) -> str:
        return (
            f"malformed ${{...}} ({detail}): write ${{NAME}} or ${{NAME:-default}} "
            "(NAME: letters, digits, _), or $${ for a literal ${"
        )
