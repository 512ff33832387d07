"""The ``elevenlabs-http`` TTS: the HTTP streaming endpoint, one request per sentence.

For deployments where WebSockets are not allowed out, or as a fallback: ``POST
/v1/text-to-speech/{voice_id}/stream`` with ``output_format=pcm_<rate>`` streams raw 16-bit PCM as
it is synthesised. No word timings: the session estimates interrupted sentences proportionally.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from avatarkit.http import KeyedClient, connection_error, status_error, timeout_error
from avatarkit.providers import AudioChunk
from avatarkit_elevenlabs._common import request_context, voice_settings
from avatarkit_elevenlabs.options import ElevenLabsHTTPOptions

__all__ = ["ElevenLabsHTTPTTS"]

PROVIDER = "elevenlabs-http TTS"


class ElevenLabsHTTPTTS(KeyedClient):
    """Sentence-at-a-time ElevenLabs TTS over HTTP, streamed as it is synthesised."""

    provider = PROVIDER

    def __init__(self, **options: Any) -> None:
        self.options = ElevenLabsHTTPOptions(**options)
        self.sample_rate = self.options.sample_rate
        self._ctx = request_context(self.options, PROVIDER)
        self._timeout = self.options.timeout

    def __repr__(self) -> str:
        o = self.options
        return (
            f"ElevenLabsHTTPTTS(voice_id={o.voice_id!r}, model={o.model!r}, "
            f"base_url={o.base_url!r})"
        )

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return
        await self.start()
        assert self._client is not None
        o = self.options
        body: dict[str, Any] = {"text": text, "model_id": o.model}
        settings = voice_settings(o)
        if settings:
            body["voice_settings"] = settings
        if o.language_code:
            body["language_code"] = o.language_code
        url = f"{o.base_url.rstrip('/')}/v1/text-to-speech/{quote(o.voice_id, safe='')}/stream"
        request = self._client.build_request(
            "POST",
            url,
            params={"output_format": f"pcm_{o.sample_rate}"},
            json=body,
            headers={"xi-api-key": self._ctx.api_key, "accept": "audio/pcm"},
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise timeout_error(self._ctx) from None
        except httpx.TransportError as exc:
            raise connection_error(self._ctx, exc) from None
        try:
            if response.status_code >= 400:
                raise await self._status_error(response)
            pending = b""
            try:
                async for data in response.aiter_bytes():
                    data = pending + data
                    whole = len(data) - len(data) % 2
                    pending = data[whole:]
                    if whole:
                        yield AudioChunk(data[:whole], self.sample_rate)
            except httpx.TimeoutException:
                raise timeout_error(self._ctx) from None
            except httpx.TransportError as exc:
                raise connection_error(self._ctx, exc, mid_stream=True) from None
        finally:
            await response.aclose()

    async def _status_error(self, response: httpx.Response) -> Exception:
        raw = (await response.aread()).decode(errors="replace")
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = None
        detail = raw.strip()[:300] or None
        advice = None
        if isinstance(parsed, dict) and isinstance(parsed.get("detail"), dict):
            inner = parsed["detail"]
            detail = str(inner.get("message") or detail)
            if inner.get("status") == "voice_not_found":
                advice = f"voice {self.options.voice_id!r} was not found: check the voice_id option"
        return status_error(
            response.status_code,
            self._ctx,
            detail=detail,
            advice=advice,
            request_id=response.headers.get("request-id"),
            body=parsed if parsed is not None else raw,
        )
