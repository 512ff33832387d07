"""A session killed mid-render (SIGKILL: no cleanup at all) leaves playable files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import sys
    import anyio
    import numpy as np
    from avatarkit.providers import AudioChunk
    from avatarkit.testing import tone
    from avatarkit_video.renderer import VideoRenderer

    RATE = 16000

    async def source():
        pcm = tone(30.0, RATE)
        step = RATE // 10 * 2  # 100 ms chunks, produced about 4x faster than real time
        for start in range(0, len(pcm), step):
            await anyio.sleep(0.025)
            yield AudioChunk(pcm[start : start + step], RATE)

    async def report(renderer):
        while True:
            await anyio.sleep(0.05)
            print(f"rendered {renderer.duration:.3f}", flush=True)

    async def main():
        renderer = VideoRenderer(
            output_dir=sys.argv[1], name="crash", width=96, height=96, sample_rate=RATE,
            pause=0.0,
        )
        await renderer.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(report, renderer)
            renderer.caption("This sentence never ends.")
            await renderer.speak(source())

    anyio.run(main)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_mid_render_leaves_a_playable_mp4_and_wav(media, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rendered = 0.0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            rendered = float(line.split()[1])
            if rendered >= 2.0:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    assert rendered >= 2.0

    # The MP4 was never closed, yet decodes: every fragment written before the kill plays.
    rec = media.read(tmp_path / "crash.mp4")
    assert rec.codecs["video"] == "h264"
    assert rec.codecs["audio"] == "aac"
    # Lost at most the fragment being built (0.2 s) and what the muxer interleaves (0.1 s).
    assert len(rec.frames) / media.FPS >= rendered - 0.5
    assert rec.audio_seconds >= rendered - 0.5
    assert rec.dark_pixels((0, 0, 96, 96)).max() > 0  # the mouth was open: speech frames

    # The WAV header is rewritten as the file grows (every 0.1 s): readers see the audio.
    wav, rate = media.read_wav(tmp_path / "crash.wav")
    assert wav.size / rate >= rendered - 0.3


UNCLOSED = textwrap.dedent(
    """
    import sys
    import anyio
    from avatarkit.providers import AudioChunk
    from avatarkit.testing import tone
    from avatarkit_video.renderer import VideoRenderer

    async def main():
        renderer = VideoRenderer(
            output_dir=sys.argv[1], name="unclosed", width=64, height=64, sample_rate=16000,
            pause=0.0,
        )
        await renderer.start()

        async def source():
            yield AudioChunk(tone(2.0, 16000), 16000)

        await renderer.speak(source())
        raise RuntimeError("the application crashed without closing the renderer")

    anyio.run(main)
    """
)


def test_an_unclosed_renderer_is_finished_at_exit(media, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(UNCLOSED)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "the application crashed" in result.stderr
    rec = media.read(tmp_path / "unclosed.mp4")
    assert len(rec.frames) == 2 * media.FPS  # everything: the exit hook closed the files
    wav, _ = media.read_wav(tmp_path / "unclosed.wav")
    assert wav.size == 2 * 16000
