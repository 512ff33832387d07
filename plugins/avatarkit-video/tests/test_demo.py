"""``avatarkit demo``: the scripted conversation through real Piper and the video renderer."""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path

import anyio
import numpy as np
import pytest

from avatarkit import demo
from avatarkit.errors import ProviderNotFound
from avatarkit.testing import registered
from avatarkit_video import plugin as video_plugin
from avatarkit_video.face import DrawnFace


def test_demo_writes_a_talking_video_offline(media, tmp_path: Path) -> None:
    # One turn of the real demo (all of it takes longer than this suite should), on asyncio
    # as `avatarkit demo` runs it (the renderer and session are tested on trio as well).
    output = tmp_path / "demo out"
    printed = io.StringIO()
    files = anyio.run(functools.partial(demo.run, output, turns=demo.TURNS[:1], out=printed))
    text = printed.getvalue()

    assert f"you:    {demo.TURNS[0]}\n" in text
    assert "avatar: Hi! I am the avatarkit demo avatar. I run entirely on your computer" in text
    assert files == [output / "demo.mp4", output / "demo.wav", output / "demo.vtt"]
    for label, path in zip(("video", "audio", "transcript"), files, strict=True):
        assert re.search(rf"^  {label} +{re.escape(str(path))}$", text, re.M)

    # Piper really spoke: seconds of non-silent 22.05 kHz audio, one transcript cue per sentence.
    wav, rate = media.read_wav(files[1])
    assert rate == 22050
    assert wav.size / rate > 4
    assert np.abs(wav).max() > 3000
    vtt = files[2].read_text(encoding="utf-8")
    cues = re.findall(r"^\d\d:\d\d:\d\d\.\d{3} --> .*\n(.+)$", vtt, re.M)
    assert cues == [
        "Hi!",
        "I am the avatarkit demo avatar.",
        "I run entirely on your computer, with no network and no API key.",
    ]

    rec = media.read(files[0])
    assert rec.codecs["video"] == "h264"
    size = rec.width
    assert size == rec.height
    assert len(rec.frames) / 25 == pytest.approx(wav.size / rate, abs=0.04)
    dark = rec.dark_pixels(DrawnFace(size, size).mouth_region())
    assert np.count_nonzero(dark > 50) > len(dark) / 3  # talking much of the time
    assert np.count_nonzero(dark == 0) > 5  # and resting before and between sentences


async def test_demo_without_piper_says_what_to_install(tmp_path: Path) -> None:
    with registered(video_plugin) as registry, pytest.raises(ProviderNotFound, match="piper"):
        await demo.run(tmp_path, registry=registry, out=io.StringIO())


def test_demo_with_an_unusable_output_folder_fails_clearly(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert demo.main(["--output", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("avatarkit demo: ")
    assert "is a file, not a folder" in err
