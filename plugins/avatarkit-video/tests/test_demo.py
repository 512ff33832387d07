"""``avatarkit demo``: the scripted conversation through real Piper and the video renderer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from avatarkit import demo
from avatarkit.errors import ProviderNotFound
from avatarkit.testing import registered
from avatarkit_video import plugin as video_plugin


def test_demo_writes_a_talking_video_offline(media, tmp_path: Path, capsys) -> None:
    output = tmp_path / "demo out"
    assert demo.main(["--output", str(output)]) == 0
    printed = capsys.readouterr().out

    for turn in demo.TURNS:
        assert f"you:    {turn}\n" in printed
    assert "avatar: Hi! I am the avatarkit demo avatar." in printed
    files = {name: output / f"demo.{ext}" for name, ext in [("video", "mp4"), ("audio", "wav")]}
    files["transcript"] = output / "demo.vtt"
    for label, path in files.items():
        assert re.search(rf"^  {label} +{re.escape(str(path))}$", printed, re.M)
        assert path.stat().st_size > 0

    # Piper really spoke: seconds of non-silent 22.05 kHz audio, one transcript cue per sentence.
    wav, rate = media.read_wav(files["audio"])
    assert rate == 22050
    assert wav.size / rate > 10
    assert np.abs(wav).max() > 3000
    vtt = files["transcript"].read_text(encoding="utf-8")
    cues = re.findall(r"^\d\d:\d\d:\d\d\.\d{3} --> .*\n(.+)$", vtt, re.M)
    assert cues[0] == "Hi! I am the avatarkit demo avatar."
    assert len(cues) == 6

    rec = media.read(files["video"])
    assert rec.codecs["video"] == "h264"
    assert (rec.width, rec.height) == (480, 480)
    assert abs(len(rec.frames) / 25 - wav.size / rate) < 0.04
    from avatarkit_video.face import DrawnFace

    dark = rec.dark_pixels(DrawnFace(480, 480).mouth_region())
    assert np.count_nonzero(dark > 50) > len(dark) / 3  # talking much of the time
    assert np.count_nonzero(dark == 0) > 10  # and resting between sentences


def test_demo_without_piper_says_what_to_install(tmp_path: Path) -> None:
    import anyio

    with registered(video_plugin) as registry, pytest.raises(ProviderNotFound, match="piper"):
        anyio.run(lambda: demo.run(tmp_path, registry=registry))


def test_demo_with_an_unusable_output_folder_fails_clearly(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert demo.main(["--output", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("avatarkit demo: ")
    assert "is a file, not a folder" in err
