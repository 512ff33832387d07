"""Audio and video cannot drift: frames are cut from the sample count."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from avatarkit_video.clock import FrameClock
from avatarkit_video.face import DrawnFace
from avatarkit_video.media import MediaWriter, OutputFiles
from avatarkit_video.options import AAC_SAMPLE_RATES

rates = st.sampled_from(AAC_SAMPLE_RATES)
fps_values = st.integers(min_value=1, max_value=60)


@given(rates, fps_values, st.integers(min_value=0, max_value=10**9))
def test_every_sample_belongs_to_exactly_one_frame(rate: int, fps: int, samples: int) -> None:
    clock = FrameClock(rate, fps)
    n = clock.frames_complete(samples)
    assert clock.frame_start(n) <= samples < clock.frame_start(n + 1)
    cover = clock.frames_to_cover(samples)
    assert clock.frame_start(cover) >= samples
    assert cover == 0 or clock.frame_start(cover - 1) < samples


@given(rates, fps_values, st.integers(min_value=0, max_value=2**31))
def test_frame_n_starts_within_one_sample_of_its_time(rate: int, fps: int, n: int) -> None:
    clock = FrameClock(rate, fps)
    # The frame's own time n/fps and the time of its first sample differ by less than a sample,
    # whatever n is: no error accumulates.
    assert 0 <= n / fps - clock.frame_start(n) / rate < 1 / rate


def test_ten_minutes_in_irregular_chunks_keep_sync_to_a_sample() -> None:
    """The writer's frame loop, replayed on 10 minutes of audio arriving in random chunk sizes,
    for awkward rate/fps pairs (frames that are not a whole number of samples)."""
    rng = random.Random(7)
    for rate, fps in [(22050, 24), (22050, 30), (44100, 29), (24000, 25), (11025, 60)]:
        clock = FrameClock(rate, fps)
        samples = frames = 0
        total = 600 * rate
        while samples < total:
            samples += rng.randint(1, rate // 3)
            done = clock.frames_complete(samples)
            while frames < done:
                frames += 1
        samples_at_last_frame = clock.frame_start(frames)
        drift = abs(frames / fps - samples_at_last_frame / rate)
        assert drift < 1 / rate  # under one sample, let alone one frame
        assert samples - samples_at_last_frame < rate / fps + 1  # only the open frame is pending


def test_a_real_render_has_one_frame_per_frame_of_audio(tmp_path: Path) -> None:
    rate, fps = 22050, 24  # 918.75 samples per frame
    files = OutputFiles.in_folder(tmp_path, "sync")
    writer = MediaWriter(
        files, avatar=DrawnFace(32, 32), fps=fps, sample_rate=rate, subtitles=False
    )
    rng = np.random.default_rng(3)
    total = 12 * rate + 77
    while writer.samples < total:
        n = int(rng.integers(1, rate // 2))
        writer.write((rng.standard_normal(min(n, total - writer.samples)) * 3000).astype(np.int16))
        assert writer.frames == writer.clock.frames_complete(writer.samples)
    writer.close()
    # Closing pads the open frame with silence: audio and video end together.
    assert writer.frames == writer.clock.frames_to_cover(total)
    assert writer.samples == writer.clock.frame_start(writer.frames)

    import av

    with av.open(str(files.video)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        packets = [p for p in container.demux(video) if p.size]
        assert len(packets) == writer.frames
        last = max(float(p.pts * p.time_base) for p in packets)
        first = min(float(p.pts * p.time_base) for p in packets[1:])
        # Frame k sits at k/fps (plus the shift every stream gets for the AAC encoder delay).
        assert abs((last - first) - (writer.frames - 2) / fps) < 1e-3
        assert audio.codec_context.sample_rate == rate
