"""Rendering speed of the video renderer, and audio/video sync over a long session.

    python benchmarks/video_render.py                 # speed at a few sizes
    python benchmarks/video_render.py --long 600      # 10 minutes, drift

Speed: CPU milliseconds per frame (percentiles over batches of frames) and the real-time factor
(wall seconds per second of video; below 1 is faster than real time). Sync: after the long
render, the MP4 is decoded and the last video frame's time is compared with the audio's length.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from avatarkit_video.face import DrawnFace
from avatarkit_video.media import MediaWriter, OutputFiles


def speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Noise shaped into 4 Hz syllables: exercises the mouth like speech does."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (rng.standard_normal(n) * 6000 * envelope).astype(np.int16)


def speed(size: int, seconds: float, fps: int, rate: int, folder: Path) -> None:
    writer = MediaWriter(
        OutputFiles.in_folder(folder, f"speed-{size}"),
        avatar=DrawnFace(size, size),
        fps=fps,
        sample_rate=rate,
    )
    pcm = speechlike(seconds, rate)
    step = rate // 2
    per_frame: list[float] = []
    wall = time.perf_counter()
    for start in range(0, pcm.size, step):
        cpu, frames = time.process_time(), writer.frames
        writer.write(pcm[start : start + step])
        if writer.frames > frames:
            per_frame.append((time.process_time() - cpu) * 1000 / (writer.frames - frames))
    writer.close()
    wall = time.perf_counter() - wall
    p50, p90, p99 = np.percentile(per_frame, [50, 90, 99])
    print(
        f"{size:>5}x{size:<5} {fps} fps: CPU ms/frame p50 {p50:5.1f}  p90 {p90:5.1f}  "
        f"p99 {p99:5.1f}   real-time factor {wall / seconds:.3f}"
    )


def long_session(seconds: float, fps: int, rate: int, folder: Path) -> None:
    files = OutputFiles.in_folder(folder, "long")
    writer = MediaWriter(files, avatar=DrawnFace(32, 32), fps=fps, sample_rate=rate)
    rng = np.random.default_rng(1)
    total = round(seconds * rate)
    wall = time.perf_counter()
    while writer.samples < total:
        n = min(int(rng.integers(1, rate)), total - writer.samples)
        writer.write(speechlike(n / rate, rate, seed=int(rng.integers(1 << 30))))
    writer.close()
    wall = time.perf_counter() - wall
    with av.open(str(files.video)) as container:
        video = container.streams.video[0]
        times = sorted(float(p.pts * p.time_base) for p in container.demux(video) if p.size)
    frames = len(times)
    audio_seconds = writer.samples / rate
    drift = abs(frames / fps - audio_seconds)
    step = np.diff(times[1:])
    print(
        f"{seconds / 60:.1f} min at {fps} fps, {rate} Hz: {frames} frames for "
        f"{audio_seconds:.4f} s of audio; frames x 1/fps - audio = {drift * 1000:.3f} ms "
        f"({drift * fps:.4f} frames); frame spacing {step.min() * 1000:.3f}-"
        f"{step.max() * 1000:.3f} ms; rendered in {wall:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 480, 720])
    parser.add_argument("--seconds", type=float, default=10.0, help="speed test length")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--rate", type=int, default=22050)
    parser.add_argument("--long", type=float, default=0.0, help="seconds for the sync test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            speed(size, args.seconds, args.fps, args.rate, folder)
        if args.long:
            long_session(args.long, args.fps, args.rate, folder)


if __name__ == "__main__":
    main()
