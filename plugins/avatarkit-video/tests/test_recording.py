"""A recording read back with PyAV: streams, sync, mouth motion, WAV, transcript."""

from __future__ import annotations

import anyio
import numpy as np

from avatarkit_video.renderer import VideoRenderer


def syllables(media, seconds: float) -> np.ndarray:
    """Tone switched on 160 ms / off 120 ms, like syllables of speech."""
    pcm = media.speech(seconds)
    t = np.arange(pcm.size) / media.RATE
    on = (t % 0.28) < 0.16
    return (pcm * on).astype(np.int16)


async def test_recording_streams_sync_mouth_wav_and_transcript(media, options) -> None:
    renderer = VideoRenderer(**options(pause=0.4))
    first, second = syllables(media, 1.4), media.speech(0.6)
    await renderer.start()
    renderer.caption("Hello there.")
    await renderer.speak(media.chunks(first))
    renderer.caption("A <second> sentence & more.")
    await renderer.speak(media.chunks(second, chunk_ms=13))
    await renderer.close()

    rate, fps, pause = media.RATE, media.FPS, 0.4
    gap = np.zeros(round(pause * rate), np.int16)
    expected = np.concatenate([gap, first, gap, second, gap])
    seconds = expected.size / rate  # 3.2 s: a whole number of frames
    rec = media.read(renderer.files.video)

    # Container: codecs, size, frame rate, and one frame per 1/fps of audio.
    assert rec.codecs == {"video": "h264", "audio": "aac", "subtitle": "mov_text"}
    assert (rec.width, rec.height, rec.fps) == (media.SIZE, media.SIZE, fps)
    assert rec.metadata.get("title") == "take"
    assert len(rec.frames) == round(seconds * fps)
    # AAC adds its encoder delay (1024 samples) in front and pads the last 1024-sample frame.
    assert seconds <= rec.audio_seconds <= seconds + 2048 / rate

    # The WAV holds exactly the timeline: speech, and silence for the pauses.
    wav, wav_rate = media.read_wav(renderer.files.audio)
    assert wav_rate == rate
    np.testing.assert_array_equal(wav, expected)

    # The decoded AAC is the same speech (lossy, so compare the envelope, aligned by search).
    decoded = rec.audio
    lags = range(0, 2049, 16)
    scores = [
        np.corrcoef(np.abs(decoded[lag : lag + expected.size]), np.abs(expected))[0, 1]
        for lag in lags
        if decoded[lag:].size >= expected.size
    ]
    assert max(scores) > 0.9

    # The mouth: open (dark pixels inside) exactly when the audio is loud, closed in silence.
    dark = rec.dark_pixels(renderer.avatar.mouth_region())
    per_frame = expected.reshape(-1, rate // fps).astype(np.float32)
    loud = np.sqrt(np.mean(per_frame**2, axis=1)) > 1000
    assert dark[loud].mean() > 20
    assert np.corrcoef(dark, loud)[0, 1] > 0.7
    first_frames = slice(round(pause * fps) + 1, round((pause + 1.4) * fps) - 1)
    during = dark[first_frames]
    assert during.min() < 0.3 * during.max(), "the mouth (nearly) closes between syllables"
    # Silent for 5 frames (200 ms): the jaw has come to rest.
    quiet = ~np.any([np.roll(loud, k) for k in range(5)], axis=0)
    assert np.count_nonzero(quiet) >= 10
    assert dark[quiet].max() <= 2

    # Sync, measured on the file's own timestamps: the mouth opens with the sound.
    audio_onset = rec.audio_start + np.argmax(np.abs(rec.audio) > 0.1) / rec.audio_rate
    video_onset = rec.frame_times[int(np.argmax(dark > 20))]
    assert abs(video_onset - audio_onset) <= 1.0 / fps + 1e-6

    # Transcript: beside the video as WebVTT, and muxed as the mov_text track.
    vtt = renderer.files.transcript.read_text(encoding="utf-8")
    assert vtt == (
        "WEBVTT\n\n"
        "1\n00:00:00.400 --> 00:00:01.800\nHello there.\n\n"
        "2\n00:00:02.200 --> 00:00:02.800\nA &lt;second&gt; sentence &amp; more.\n\n"
    )
    assert [text for _, _, text in rec.subtitles] == [
        "Hello there.",
        "A <second> sentence & more.",
    ]
    for (start, end, _), cue in zip(rec.subtitles, renderer.cues, strict=True):
        # shifted, like every stream, by the AAC encoder delay at most
        assert 0 <= start - cue.start <= 0.1
        assert abs((end - start) - (cue.end - cue.start)) < 0.002


async def test_silence_is_not_frozen(media, options) -> None:
    renderer = VideoRenderer(**options(pause=0.0))
    await renderer.start()
    await renderer.speak(media.chunks(np.zeros(media.RATE * 6, np.int16)))
    await renderer.close()
    rec = media.read(renderer.files.video)
    frames = np.stack(rec.frames).astype(np.int16)
    changes = np.abs(np.diff(frames, axis=0)).reshape(len(frames) - 1, -1).max(axis=1)
    assert np.count_nonzero(changes > 40) >= 10, "idle motion and blinks move the picture"
    assert rec.dark_pixels(renderer.avatar.mouth_region()).max() <= 2, "mouth stays closed"


async def test_audio_at_another_rate_and_stereo_is_converted(media, options) -> None:
    renderer = VideoRenderer(**options(pause=0.0))
    stereo_rate = 48000
    mono = media.speech(1.0, stereo_rate)
    stereo = np.stack([mono, mono], axis=1).reshape(-1)

    async def source():
        from avatarkit.providers import AudioChunk

        step = 4800 * 2
        for start in range(0, stereo.size, step):
            yield AudioChunk(stereo[start : start + step].astype("<i2").tobytes(), stereo_rate, 2)

    await renderer.start()
    await renderer.speak(source())
    await renderer.close()
    wav, rate = media.read_wav(renderer.files.audio)
    assert rate == media.RATE
    assert abs(wav.size - media.RATE) <= media.RATE // media.FPS  # padded to a whole frame
    assert np.abs(wav).max() > 10000


async def test_default_name_never_replaces_an_earlier_recording(media, options, tmp_path) -> None:
    opts = options()
    del opts["name"]
    names = []
    for _ in range(2):
        renderer = VideoRenderer(**opts)
        await renderer.start()
        await renderer.close()
        names.append(renderer.files.video.name)
    assert names[0] != names[1]
    for n in names:
        assert await anyio.Path(tmp_path / "out" / n).is_file()
