"""Prometheus metrics of ``avatarkit serve`` (``/metrics``), safe across worker processes.

With ``--workers N`` every worker writes its figures to files in ``PROMETHEUS_MULTIPROC_DIR``
(set by ``avatarkit serve`` before the workers start) and a scrape of any worker adds them all
up, so one scrape of the shared port counts every worker's turns. In one process the default
registry is used. ``prometheus_client`` is imported only when the app is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from avatarkit.errors import ProviderError
from avatarkit.events import ErrorEvent, Event, TurnMetrics, VoiceMetrics

__all__ = ["MULTIPROC_ENV", "ServeMetrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_SECONDS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_TURN_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class ServeMetrics:
    """The metrics one app records; one instance per app (a fresh registry each, so several
    apps in one process, as in tests, do not clash)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        registry = None if self.multiprocess else self.registry
        gauge_mode: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.sessions_open = Gauge(
            "avatarkit_sessions_open",
            "Avatar sessions running now",
            registry=registry,
            **gauge_mode,
        )
        self.sessions_started = Counter(
            "avatarkit_sessions_started", "Avatar sessions started", registry=registry
        )
        self.starts_refused = Counter(
            "avatarkit_session_starts_refused",
            "Session starts refused, by reason",
            ["reason"],
            registry=registry,
        )
        self.turns = Counter(
            "avatarkit_turns",
            "Turns completed (interrupted or not), by input: typed or spoken (the microphone)",
            ["input"],
            registry=registry,
        )
        for source in ("typed", "spoken"):
            self.turns.labels(input=source)  # both series exist (at 0) from the first scrape
        self.turns_interrupted = Counter(
            "avatarkit_turns_interrupted", "Turns cut short by the user", registry=registry
        )
        self.errors = Counter(
            "avatarkit_errors",
            "Failed turns and sessions, by stage and provider",
            ["stage", "provider"],
            registry=registry,
        )
        self.first_token = Histogram(
            "avatarkit_time_to_first_token_seconds",
            "From the user's message to the LLM's first token",
            buckets=_SECONDS,
            registry=registry,
        )
        self.first_speech = Histogram(
            "avatarkit_time_to_first_speech_seconds",
            "From the user's message to the avatar starting to speak",
            buckets=_SECONDS,
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "avatarkit_turn_seconds",
            "Length of a turn, message to the end of the reply",
            buckets=_TURN_SECONDS,
            registry=registry,
        )
        # Spoken turns, from the end of the user's speech (what the person waits through).
        self.voice_final = Histogram(
            "avatarkit_voice_to_final_transcript_seconds",
            "From the end of the user's speech to the final transcript (the turn's end)",
            buckets=_SECONDS,
            registry=registry,
        )
        self.voice_first_token = Histogram(
            "avatarkit_voice_to_first_token_seconds",
            "From the end of the user's speech to the LLM's first token",
            buckets=_SECONDS,
            registry=registry,
        )
        self.voice_first_speech = Histogram(
            "avatarkit_voice_to_first_speech_seconds",
            "From the end of the user's speech to the avatar starting to answer",
            buckets=_SECONDS,
            registry=registry,
        )

    def record_event(self, event: Event, source: str = "typed") -> None:
        """Called for every session event (synchronously; cheap); ``source`` says where the
        turn running now came from: ``typed`` or ``spoken`` (the microphone)."""
        if isinstance(event, TurnMetrics):
            self.turns.labels(input=source).inc()
            if event.interrupted:
                self.turns_interrupted.inc()
            if event.time_to_first_token is not None:
                self.first_token.observe(event.time_to_first_token)
            if event.time_to_first_speech is not None:
                self.first_speech.observe(event.time_to_first_speech)
            self.turn_seconds.observe(event.duration)
        elif isinstance(event, VoiceMetrics):
            for histogram, value in (
                (self.voice_final, event.to_final_transcript),
                (self.voice_first_token, event.to_first_token),
                (self.voice_first_speech, event.to_first_speech),
            ):
                if value is not None:
                    histogram.observe(value)
        elif isinstance(event, ErrorEvent):
            self.record_error(event.stage, event.error)

    def record_error(self, stage: str, error: BaseException | None) -> None:
        provider = error.provider if isinstance(error, ProviderError) else "none"
        self.errors.labels(stage=stage, provider=provider).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The scrape's body and content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            _forget_dead_workers(multiprocess.mark_process_dead)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def _forget_dead_workers(mark_process_dead: Callable[[int], None]) -> None:
    """Drop the live gauges of workers that are gone (a crashed or killed worker would keep
    counting its sessions otherwise; uvicorn's supervisor does not tell prometheus-client)."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return
    pids = set()
    for path in Path(folder).glob("gauge_live*_*.db"):
        found = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if found:
            pids.add(int(found.group(1)))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid)
        except PermissionError:
            pass  # alive, another user's
