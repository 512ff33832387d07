"""Recordings never replace each other (or an earlier one) unless asked to, and close() waits.

Renderers here start truly together: the names are reserved in worker threads, so the race is
real, and each recording is read back to check its MP4 and WAV belong to the same renderer.
"""

from __future__ import annotations

from datetime import datetime

import anyio
import pytest

from avatarkit.errors import ConfigError
from avatarkit_video import renderer as renderer_module
from avatarkit_video.renderer import VideoRenderer


class _FrozenClock(datetime):
    """Every renderer built in the test gets the same default name, as in one second."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
        return cls(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def same_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(renderer_module, "datetime", _FrozenClock)


async def record(renderer: VideoRenderer, media, seconds: float) -> None:
    await renderer.start()
    await renderer.speak(media.chunks(media.speech(seconds)))
    await renderer.close()


async def test_unnamed_renderers_started_together_get_their_own_files(
    media, options, same_second, tmp_path
) -> None:
    opts = options(pause=0.0)
    del opts["name"]
    lengths = [0.2, 0.6, 1.0, 1.4]  # apart by more than AAC padding
    renderers = [VideoRenderer(**opts) for _ in lengths]
    assert len({r.files.video.name for r in renderers}) == 1  # the clash is set up
    async with anyio.create_task_group() as tg:
        for r, seconds in zip(renderers, lengths, strict=True):
            tg.start_soon(record, r, media, seconds)
    stems = sorted(r.files.video.stem for r in renderers)
    first = "avatar-20260102-030405"
    assert stems == [first, f"{first}-2", f"{first}-3", f"{first}-4"]
    for r, seconds in zip(renderers, lengths, strict=True):
        wav, rate = media.read_wav(r.files.audio)  # this renderer's own audio, not another's
        assert abs(wav.size / rate - seconds) <= 1 / media.FPS
        recording = media.read(r.files.video)
        assert abs(recording.audio_seconds - seconds) <= 0.15
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{s}.{ext}" for s in stems for ext in ("mp4", "vtt", "wav")
    )


async def test_an_explicit_name_does_not_replace_an_earlier_recording(
    media, options, tmp_path
) -> None:
    await record(VideoRenderer(**options(pause=0.0)), media, 0.4)
    wav = (tmp_path / "out" / "take.wav").read_bytes()
    with pytest.raises(ConfigError, match=r"take\.mp4.*already exist.*overwrite: true") as info:
        VideoRenderer(**options(pause=0.0))
    assert info.value.field == "name"
    assert (tmp_path / "out" / "take.wav").read_bytes() == wav


async def test_overwrite_true_replaces_it(media, options, tmp_path) -> None:
    await record(VideoRenderer(**options(pause=0.0)), media, 0.4)
    again = VideoRenderer(**options(pause=0.0, overwrite=True))
    await record(again, media, 0.2)
    samples, rate = media.read_wav(tmp_path / "out" / "take.wav")
    assert abs(samples.size / rate - 0.2) <= 1 / media.FPS


async def test_two_renderers_racing_for_one_name_one_wins_one_fails_clearly(
    media, options, tmp_path
) -> None:
    a, b = (
        VideoRenderer(**options(pause=0.0)),
        VideoRenderer(**options(pause=0.0)),
    )  # neither started yet
    outcomes: dict[str, BaseException | None] = {}

    async def run(label: str, r: VideoRenderer, seconds: float) -> None:
        try:
            await record(r, media, seconds)
            outcomes[label] = None
        except ConfigError as exc:
            outcomes[label] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", a, 0.2)
        tg.start_soon(run, "b", b, 0.6)
    assert sorted(o is None for o in outcomes.values()) == [False, True]
    winner = a if outcomes["a"] is None else b
    loser = "b" if winner is a else "a"
    assert "already exist" in str(outcomes[loser])
    samples, rate = media.read_wav(tmp_path / "out" / "take.wav")
    seconds = 0.2 if winner is a else 0.6
    assert abs(samples.size / rate - seconds) <= 1 / media.FPS
    assert abs(media.read(tmp_path / "out" / "take.mp4").audio_seconds - seconds) <= 0.15


async def test_a_second_concurrent_close_waits_until_the_files_are_finished(media, options) -> None:
    renderer = VideoRenderer(**options(pause=1.0))  # the final pause gives close() work
    await renderer.start()
    await renderer.speak(media.chunks(media.speech(0.5)))
    thread = renderer._thread
    assert thread is not None
    finished_when_returned: list[bool] = []

    async def close() -> None:
        await renderer.close()
        finished_when_returned.append(not thread.alive)

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        tg.start_soon(close)
    assert finished_when_returned == [True, True]
    assert media.read(renderer.files.video).audio_seconds > 0.4


async def test_a_failed_start_gives_the_name_back(media, options, tmp_path, monkeypatch) -> None:
    from avatarkit_video.worker import RenderThread

    def broken(self) -> None:  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(RenderThread, "start", broken)
    with pytest.raises(Exception, match="disk full"):
        await VideoRenderer(**options(pause=0.0)).start()
    assert list((tmp_path / "out").iterdir()) == []
