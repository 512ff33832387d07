"""Bad options fail with a clear avatarkit error before anything starts; the plugin registers."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarkit.errors import ConfigError
from avatarkit.testing import registered
from avatarkit_video import plugin
from avatarkit_video.options import VideoRendererOptions
from avatarkit_video.renderer import VideoRenderer


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 127}, r"^renderer.width: Value error, must be even for H.264 \(try 128\)$"),
        ({"height": 0}, r"^renderer.height: Input should be greater than or equal to 16$"),
        ({"width": 8000}, r"^renderer.width: Input should be less than or equal to 3840$"),
        ({"width": 3840, "height": 3840}, r"^renderer: .*3840x3840 is larger than 3840x2160$"),
        ({"fps": 0}, r"^renderer.fps: Input should be greater than or equal to 1$"),
        ({"fps": 240}, r"^renderer.fps: Input should be less than or equal to 60$"),
        ({"sample_rate": 12345}, r"^renderer.sample_rate: .*AAC needs one of 8000, 11025, "),
        ({"pause": -1}, r"^renderer.pause: Input should be greater than or equal to 0$"),
        ({"name": "a/b"}, r"^renderer.name: .*must be a plain file name stem"),
        ({"colour": "red"}, r"^renderer.colour: Extra inputs are not permitted$"),
        ({"portrait": "face.png"}, r"^renderer: .*portrait needs mouth_box"),
        ({"mouth_box": [1, 2, 3, 4]}, r"^renderer: .*mouth_box and eye_boxes only apply with a"),
        ({"fps": 0, "width": 3}, r"^renderer.width: .*; fps: Input should be greater than"),
    ],
)
def test_bad_options_are_config_errors_naming_the_field(options, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        VideoRenderer(**options(**overrides))
    assert info.value.field is not None
    assert info.value.field.startswith("renderer")


def test_output_dir_that_is_a_file(options, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("")
    with pytest.raises(
        ConfigError,
        match=r"^renderer.output_dir: the video renderer's output folder '.*taken' is a file",
    ):
        VideoRenderer(**options(output_dir=blocker))
    with pytest.raises(ConfigError, match=r"is inside the file '.*taken', not a folder"):
        VideoRenderer(**options(output_dir=blocker / "sub"))


def test_output_dir_not_writable(options) -> None:
    # /proc refuses new entries even to root, unlike a chmod-ed folder.
    with pytest.raises(
        ConfigError, match=r"output folder '/proc/avatarkit-x' is not writable \("
    ) as e:
        VideoRenderer(**options(output_dir="/proc/avatarkit-x"))
    assert e.value.field == "renderer.output_dir"


def test_missing_output_dir_is_checked_but_only_created_on_start(options, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    VideoRenderer(**options(output_dir=target))
    assert not (tmp_path / "a").exists()


def test_portrait_missing_or_unreadable(options, tmp_path: Path) -> None:
    box = {"mouth_box": [10, 10, 20, 10]}
    with pytest.raises(ConfigError, match=r"portrait '.*nope.png' does not exist or is not a file"):
        VideoRenderer(**options(portrait=tmp_path / "nope.png", **box))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(ConfigError, match=r"portrait '.*junk.png' cannot be read as an image") as e:
        VideoRenderer(**options(portrait=junk, **box))
    assert e.value.field == "renderer.portrait"


def test_mouth_box_outside_the_portrait(options, portrait: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^renderer.mouth_box: \[250, 10, 100, 20\] reaches outside the 300x400"
    ):
        VideoRenderer(**options(portrait=portrait, mouth_box=[250, 10, 100, 20]))


def test_the_plugin_registers_the_video_renderer() -> None:
    with registered(plugin) as registry:
        spec = registry.get("renderer", "video")
    assert spec.options is VideoRendererOptions
    assert spec.factory == "avatarkit_video.renderer:VideoRenderer"
    caps = spec.capabilities()
    assert caps is not None
    assert (caps.audio, caps.text) == (True, False)
