"""The secrets a session keeps out of everything it emits or raises.

Two sources: the values the configuration resolved as secrets (``AvatarSession(secrets=...)``,
which :func:`avatarkit.load_session` fills in), and the keys the providers declare. The rule
for a provider: a ``secrets`` attribute or property (an iterable of ``str`` or pydantic
``SecretStr``), and an ``api_key`` attribute (``str`` or ``SecretStr``), both read afresh each
time, so a token a provider obtains in ``start()`` is covered as soon as it has it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from avatarkit.errors import redact, redact_exception
from avatarkit.events import ErrorEvent, Event

__all__ = ["declared_secrets", "redact_event"]

logger = logging.getLogger("avatarkit.session")


def declared_secrets(provider: object) -> list[object]:
    """The keys ``provider`` declares (see the module docstring); never raises."""
    found: list[object] = []
    for attribute in ("secrets", "api_key"):
        try:
            value = getattr(provider, attribute, None)
        except Exception as exc:  # a property that fails must not break error reporting
            logger.debug("reading %s.%s failed: %s", type(provider).__name__, attribute, exc)
            continue
        if value is None or callable(value):
            continue
        if isinstance(value, str | bytes) or hasattr(value, "get_secret_value"):
            found.append(value)
        elif isinstance(value, Iterable):
            found.extend(v for v in value if v is not None)
    return found


def redact_event(event: Event, secrets: Iterable[object]) -> Event:
    """``event`` with every text field (and an error's exception) cleaned of ``secrets``."""
    values = list(secrets)
    if not values:
        return event
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        if not f.init:
            continue
        value = getattr(event, f.name)
        if isinstance(value, str):
            cleaned = redact(value, values)
            if cleaned != value:
                changes[f.name] = cleaned
    if isinstance(event, ErrorEvent) and event.error is not None:
        changes["error"] = redact_exception(event.error, values)
    return dataclasses.replace(event, **changes) if changes else event
