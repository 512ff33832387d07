"""The ``silero`` VAD: Silero's ONNX model on onnxruntime, no torch.

The model file is the ``silero_vad_v6.onnx`` that faster-whisper ships in its ``assets``
folder (MIT, from snakers4/silero-vad): faster-whisper is already this plugin's dependency
for the STT, so the VAD adds no package and no download. It reads 512-sample frames at 16 kHz
(32 ms) with the previous frame's last 64 samples as context, and carries its LSTM state
(``h``, ``c``) from frame to frame.

Speech starts when a frame's probability reaches ``threshold`` and has lasted ``min_speech``;
it ends after ``min_silence`` below ``threshold - 0.15`` (Silero's own hysteresis).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from avatarkit.errors import ProviderError
from avatarkit.providers import AudioChunk, SpeechEvent
from avatarkit_whisper.options import SileroVADOptions

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime  # type: ignore[import-untyped]

__all__ = ["SileroVAD", "silero_model_path"]

PROVIDER = "silero"
SAMPLE_RATE = 16000
FRAME = 512  # samples per model call at 16 kHz
CONTEXT = 64
FRAME_SECONDS = FRAME / SAMPLE_RATE

_lock = threading.Lock()
_session: onnxruntime.InferenceSession | None = None


def silero_model_path() -> str:
    """Path of the Silero ONNX model shipped inside faster-whisper."""
    try:
        from faster_whisper.utils import get_assets_path
    except ImportError as exc:
        raise ProviderError(
            f"faster-whisper cannot be imported ({exc}): pip install avatarkit-whisper",
            provider=PROVIDER,
        ) from exc
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    if not os.path.isfile(path):
        raise ProviderError(f"{path} is missing: reinstall faster-whisper", provider=PROVIDER)
    return path


def _load_session() -> onnxruntime.InferenceSession:
    """One inference session per process (it is thread-safe and keeps no state of its own)."""
    global _session
    with _lock:
        if _session is None:
            try:
                import onnxruntime
            except ImportError as exc:
                raise ProviderError(
                    f"onnxruntime cannot be imported ({exc})", provider=PROVIDER
                ) from exc
            opts = onnxruntime.SessionOptions()
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            _session = onnxruntime.InferenceSession(
                silero_model_path(), providers=["CPUExecutionProvider"], sess_options=opts
            )
        return _session


class _Stream:
    """The model's state over one audio stream: probabilities frame by frame."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        import numpy as np

        self.session = session
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)

    def probabilities(self, samples: np.ndarray) -> list[float]:
        """Speech probability of each whole frame in ``samples`` (float32, len % 512 == 0)."""
        import numpy as np

        out: list[float] = []
        for i in range(0, len(samples), FRAME):
            frame = samples[i : i + FRAME]
            batch = np.concatenate([self.context, frame])[None, :]
            prob, self.h, self.c = self.session.run(
                None, {"input": batch, "h": self.h, "c": self.c}
            )
            self.context = frame[-CONTEXT:]
            out.append(float(np.asarray(prob).reshape(-1)[0]))
        return out


class SileroVAD:
    """Voice activity detection with Silero's ONNX model (16 kHz mono)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, **options: Any) -> None:
        self.options = SileroVADOptions(**options)

    def __repr__(self) -> str:
        return f"SileroVAD(threshold={self.options.threshold})"

    async def start(self) -> None:
        await anyio.to_thread.run_sync(_load_session)

    async def close(self) -> None:
        pass  # the process-wide session is reused by the next detector

    async def detect(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[SpeechEvent]:
        import numpy as np

        session = await anyio.to_thread.run_sync(_load_session)
        stream = _Stream(session)
        o = self.options
        off = max(o.threshold - 0.15, 0.01)
        pending = np.zeros(0, dtype=np.float32)
        frames = 0  # frames scored so far
        speaking = False  # reported as speaking
        voiced_since: int | None = None  # first frame of the current voiced stretch
        last_voiced = -1
        min_speech = max(1, round(o.min_speech / FRAME_SECONDS))
        min_silence = max(1, round(o.min_silence / FRAME_SECONDS))
        async for chunk in audio:
            if chunk.sample_rate != SAMPLE_RATE or chunk.channels != 1:
                raise ProviderError(
                    f"needs mono audio at {SAMPLE_RATE} Hz, got {chunk.channels} channel(s) "
                    f"at {chunk.sample_rate} Hz",
                    provider=PROVIDER,
                )
            samples = np.frombuffer(chunk.data, dtype="<i2").astype(np.float32) / 32768.0
            pending = np.concatenate([pending, samples])
            whole = len(pending) - len(pending) % FRAME
            if not whole:
                continue
            batch, pending = pending[:whole], pending[whole:]
            probs = await anyio.to_thread.run_sync(stream.probabilities, batch)
            for prob in probs:
                index = frames
                frames += 1
                voiced = prob >= o.threshold or (voiced_since is not None and prob >= off)
                if voiced:
                    if voiced_since is None:
                        voiced_since = index
                    last_voiced = index
                    if not speaking and index - voiced_since + 1 >= min_speech:
                        speaking = True
                        yield SpeechEvent("speech_started", voiced_since * FRAME_SECONDS)
                elif voiced_since is not None and index - last_voiced >= min_silence:
                    if speaking:
                        speaking = False
                        yield SpeechEvent("speech_ended", (last_voiced + 1) * FRAME_SECONDS)
                    voiced_since = None
        if speaking:
            yield SpeechEvent("speech_ended", (last_voiced + 1) * FRAME_SECONDS)
