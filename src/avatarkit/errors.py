"""Every error avatarkit raises, in one hierarchy.

Catch at the level you care about::

    AvatarKitError                 anything avatarkit raises on purpose
    ├── ConfigError                bad YAML or options: carries path, line, column, field
    ├── PluginError                a plugin failed to import or register: carries distribution
    ├── ProviderNotFound           no provider of that kind and name (lists what is installed)
    ├── CapabilityError            the renderer cannot be fed by this session (audio-only, no TTS)
    ├── SessionError               the session was misused (closed, not started)
    └── ProviderError              a provider failed at run time: carries provider, retryable
        ├── ProviderHTTPError      the service answered with an error status
        ├── ProviderTimeout        the service did not answer in time
        └── ProviderConnectionError  the service could not be reached or dropped the connection

Plugins raise these (never vendor SDK exceptions) so retry and interrupt policy is uniform.
Messages never contain secrets: pass them through :func:`redact` when in doubt. A session
passes every error it raises or reports through :func:`redact_exception`, so a key that a vendor
error carries (in a request URL, in its ``__cause__``) never reaches the caller.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias
from urllib.parse import quote, quote_plus

__all__ = [
    "AvatarKitError",
    "CapabilityError",
    "ConfigError",
    "PluginError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderNotFound",
    "ProviderTimeout",
    "RedactedError",
    "SessionError",
    "redact",
    "redact_exception",
]


class AvatarKitError(Exception):
    """Base of every error avatarkit raises on purpose."""


class ConfigError(AvatarKitError):
    """A session description is wrong; says where (file:line:column) and which field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        problems: Sequence[AvatarKitError] = (),
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.field = field
        #: When one file has several problems: each of them (this error describes the first
        #: and lists the rest). Empty for a single problem.
        self.problems = tuple(problems)
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
        if self.field:
            where = f"{where}: {self.field}" if where else self.field
        return f"{where}: {self.message}" if where else self.message


class PluginError(AvatarKitError):
    """A plugin could not be loaded or registered something invalid."""

    def __init__(self, message: str, *, distribution: str | None = None) -> None:
        self.distribution = distribution
        super().__init__(message)


class ProviderNotFound(AvatarKitError):
    """No provider of this kind and name is installed."""

    def __init__(
        self,
        kind: str,
        name: str,
        available: Sequence[str],
        hint: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.available = list(available)
        self.hint = hint
        installed = ", ".join(self.available) if self.available else "none"
        message = f"no {kind} provider {name!r}; installed: {installed}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class CapabilityError(AvatarKitError):
    """The renderer cannot be driven the way the session is configured."""


class SessionError(AvatarKitError):
    """The session was used in a way its lifecycle does not allow."""


class ProviderError(AvatarKitError):
    """A provider failed while running. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, provider: str, retryable: bool = False) -> None:
        self.provider = provider
        self.retryable = retryable
        super().__init__(f"{provider}: {message}")


class ProviderHTTPError(ProviderError):
    """The service answered with an error status (4xx is not retryable except 408 and 429)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int,
        request_id: str | None = None,
        body: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        if retryable is None:
            retryable = status_code in (408, 429) or status_code >= 500
        super().__init__(f"HTTP {status_code}: {message}", provider=provider, retryable=retryable)


class ProviderTimeout(ProviderError):
    """The service (or a provider stage) did not answer in time."""

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message, provider=provider, retryable=True)


class ProviderConnectionError(ProviderError):
    """The service could not be reached, or the connection dropped."""

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message, provider=provider, retryable=True)


class RedactedError(Exception):
    """Stands in for a vendor exception whose text had to be cleaned of secrets.

    Found in the ``__cause__``/``__context__`` chain of errors a session raises; its message is
    ``"OriginalType: redacted message"``, ``original_type`` names the original class and the
    original traceback is kept.
    """

    def __init__(self, message: str, *, original_type: str) -> None:
        self.original_type = original_type
        super().__init__(message)


#: Secrets shorter than this are only redacted as whole tokens (not inside longer words), so a
#: short value cannot mangle every message; longer ones are redacted wherever they appear.
_SHORT = 6

Span: TypeAlias = tuple[int, int]  # start, end of a secret in a text


def _secret_text(value: object) -> str:
    getter = getattr(value, "get_secret_value", None)  # pydantic SecretStr / SecretBytes
    if callable(getter):
        value = getter()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _variants(secrets: Iterable[object]) -> tuple[str, ...]:
    """Each secret as written, and as it appears percent-encoded in a URL (the same tuple for
    the same secrets: callers may cache what they derive from it)."""
    return _variants_of(tuple(_secret_text(s) for s in secrets))


@functools.lru_cache(maxsize=32)
def _variants_of(texts: tuple[str, ...]) -> tuple[str, ...]:
    found: set[str] = set()
    for text in texts:
        if text.strip():
            found.update({text, quote(text, safe=""), quote_plus(text), quote(text)})
    return tuple(sorted(found, key=len, reverse=True))  # a longer secret before one it contains


_WORD_CHARS = frozenset(string.ascii_letters + string.digits)


def _spans(text: str, variants: Sequence[str], before: str = "", after: str = "") -> list[Span]:
    """Where ``variants`` (longest first) stand in ``text``: leftmost, non-overlapping, a short
    one only as a whole token. ``before``/``after`` are the characters around ``text`` when it
    is a piece of a longer text (empty: its start or end)."""
    taken: list[Span] = []
    for secret in variants:
        start = text.find(secret)
        short = len(secret) < _SHORT
        while start >= 0:
            end = start + len(secret)
            fits = not any(a < end and start < b for a, b in taken)
            if fits and short:
                prev = text[start - 1] if start else before[-1:]
                after_it = text[end] if end < len(text) else after[:1]
                fits = prev not in _WORD_CHARS and after_it not in _WORD_CHARS
            if fits:
                taken.append((start, end))
                start = text.find(secret, end)
            else:
                start = text.find(secret, start + 1)
    taken.sort()
    return taken


def _masked(text: str, spans: Sequence[Span], mask: str) -> str:
    """``text`` with each of ``spans`` replaced by ``mask``."""
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(mask)
        last = end
    out.append(text[last:])
    return "".join(out)


def redact(text: str, secrets: Iterable[object]) -> str:
    """Replace every secret in ``text`` with ``***``.

    A secret may be a ``str``, a number (an unquoted YAML value), bytes or a pydantic
    ``SecretStr``; empty ones are ignored. Its URL-encoded forms are redacted too. A secret of
    fewer than 6 characters is redacted only where it stands alone (not inside a longer word).
    """
    values = _variants(secrets)
    if not values:
        return text
    return _masked(text, _spans(text, values), "***")


def _redact_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"), secrets).encode()
    if isinstance(value, tuple | list):
        return type(value)(_redact_value(v, secrets) for v in value)
    return value


def redact_exception(error: BaseException, secrets: Iterable[object]) -> BaseException:
    """``error`` with no secret left in its text, its attributes or its cause chain.

    An :class:`AvatarKitError` is cleaned in place (its type, and so every ``except`` clause,
    stays); any other exception whose text holds a secret is replaced by a
    :class:`RedactedError`. ``__cause__`` and ``__context__`` are cleaned the same way, since
    tracebacks print them.
    """
    values = _variants(secrets)
    if not values:
        return error
    return _clean(error, values, {})


def _clean(
    error: BaseException, values: Sequence[str], seen: dict[int, BaseException]
) -> BaseException:
    if id(error) in seen:
        return seen[id(error)]
    if isinstance(error, AvatarKitError):
        cleaned: BaseException = error
        seen[id(error)] = cleaned
        error.args = _redact_value(error.args, values)
        for key, value in list(vars(error).items()):
            setattr(error, key, _redact_value(value, values))
    else:
        try:
            text = str(error)
        except Exception:  # a vendor __str__ that fails: say nothing of it
            text = ""
        try:
            shown = repr(error.args)
        except Exception:
            shown = ""
        notes = [str(n) for n in getattr(error, "__notes__", None) or ()]
        said = "\n".join([text, shown, *notes])
        if redact(said, values) == said:
            cleaned = error
            seen[id(error)] = cleaned
        else:
            name = type(error).__qualname__
            cleaned = RedactedError(f"{name}: {redact(text, values)}", original_type=name)
            cleaned.__traceback__ = error.__traceback__
            for note in notes:  # traceback prints notes too
                cleaned.add_note(redact(note, values))
            seen[id(error)] = cleaned
    cause, context = error.__cause__, error.__context__
    cleaned.__cause__ = None if cause is None else _clean(cause, values, seen)
    cleaned.__context__ = None if context is None else _clean(context, values, seen)
    cleaned.__suppress_context__ = error.__suppress_context__
    return cleaned
