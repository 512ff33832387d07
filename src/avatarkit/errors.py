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
Messages never contain secrets: pass them through :func:`redact` when in doubt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
    "SessionError",
    "redact",
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


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
