"""What both ElevenLabs providers share: the key, the request context, the voice settings."""

from __future__ import annotations

import re
from typing import Any

from avatarkit.credentials import resolve_api_key
from avatarkit.http import RequestContext
from avatarkit_elevenlabs.options import ElevenLabsHTTPOptions

KEY_ENV = "ELEVENLABS_API_KEY"
#: ElevenLabs keys look like ``sk_`` and 48 hex digits; scrubbed even when not ours.
KEY_PATTERN = re.compile(r"\bsk_[A-Za-z0-9]{16,}")


def request_context(options: ElevenLabsHTTPOptions, provider: str) -> RequestContext:
    key = resolve_api_key(
        options.api_key, env_var=KEY_ENV, base_url=options.base_url, provider=provider
    )
    return RequestContext(
        provider=provider,
        base_url=options.base_url,
        model=options.model,
        api_key=key,
        key_env_var=KEY_ENV,
        timeout=options.timeout,
        max_retries=0,
        key_pattern=KEY_PATTERN,
    )


def voice_settings(options: ElevenLabsHTTPOptions) -> dict[str, Any] | None:
    settings = options.voice_settings.model_dump(exclude_none=True)
    return settings or None
