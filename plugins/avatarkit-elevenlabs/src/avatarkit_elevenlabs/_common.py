"""What both ElevenLabs providers share: the key, the request context, the voice settings."""

from __future__ import annotations

import re
from typing import Any

from avatarkit.http import RequestContext, keyed_context
from avatarkit_elevenlabs.options import ElevenLabsHTTPOptions

KEY_ENV = "ELEVENLABS_API_KEY"
#: ElevenLabs keys look like ``sk_`` and 48 hex digits; scrubbed even when not ours.
KEY_PATTERN = re.compile(r"\bsk_[A-Za-z0-9]{16,}")


def request_context(options: ElevenLabsHTTPOptions, provider: str) -> RequestContext:
    return keyed_context(
        provider=provider,
        api_key=options.api_key,
        env_var=KEY_ENV,
        key_pattern=KEY_PATTERN,
        base_url=options.base_url,
        model=options.model,
        timeout=options.timeout,
    )


def voice_settings(options: ElevenLabsHTTPOptions) -> dict[str, Any] | None:
    settings = options.voice_settings.model_dump(exclude_none=True)
    return settings or None
