"""Bad options fail at construction, before any voice is loaded, naming what is wrong."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pydantic
import pytest

from avatarkit import ConfigError
from avatarkit.plugins import default_registry
from avatarkit_piper.tts import PiperTTS
from avatarkit_piper.voices import bundled_voice_path


def make_voice(tmp_path: Path, **changes: Any) -> Path:
    """A copy of the bundled voice's files (the model is linked), with config changes."""
    source = bundled_voice_path()
    model = tmp_path / "voice.onnx"
    model.symlink_to(source)
    config = json.loads(Path(f"{source}.json").read_text())
    config.update(changes)
    (tmp_path / "voice.onnx.json").write_text(json.dumps(config))
    return model


def test_missing_voice_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ConfigError, match="Piper voice model not found") as info:
        PiperTTS(voice=missing)
    assert str(missing) in str(info.value)
    assert info.value.field == "voice"


def test_missing_voice_config(tmp_path: Path) -> None:
    model = tmp_path / "lonely.onnx"
    shutil.copyfile(bundled_voice_path(), model)
    with pytest.raises(ConfigError, match=r"Piper voice config not found") as info:
        PiperTTS(voice=model)
    assert f"{model}.json" in str(info.value)
    assert ".onnx.json beside it" in str(info.value)
    assert info.value.field == "voice"


def test_missing_explicit_voice_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Piper voice config not found") as info:
        PiperTTS(voice_config=tmp_path / "nope.json")
    assert info.value.field == "voice_config"


def test_voice_config_given_explicitly(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.symlink_to(bundled_voice_path())
    config = tmp_path / "config.json"
    shutil.copyfile(f"{bundled_voice_path()}.json", config)
    tts = PiperTTS(voice=str(model), voice_config=str(config))
    assert tts.info.config == config
    assert tts.sample_rate == 22050


def test_voice_must_be_an_onnx_file(tmp_path: Path) -> None:
    wav = tmp_path / "voice.wav"
    wav.write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match=r"voice must be a Piper \.onnx model file"):
        PiperTTS(voice=wav)


def test_voice_that_is_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "voice.onnx"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is not a file"):
        PiperTTS(voice=folder)


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file"
)
def test_unreadable_voice_file(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    shutil.copyfile(bundled_voice_path(), model)
    shutil.copyfile(f"{bundled_voice_path()}.json", f"{model}.json")
    model.chmod(0)
    with pytest.raises(ConfigError, match="is not readable"):
        PiperTTS(voice=model)


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux /proc")
def test_voice_file_that_fails_to_read(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    model.symlink_to("/proc/self/mem")  # a regular file whose first byte cannot be read
    with pytest.raises(ConfigError, match=r"is not readable \(Input/output error\)") as info:
        PiperTTS(voice=model)
    assert str(model) in str(info.value)
    assert info.value.field == "voice"


def test_voice_config_that_is_not_json(tmp_path: Path) -> None:
    model = make_voice(tmp_path)
    Path(f"{model}.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="is not valid JSON") as info:
        PiperTTS(voice=model)
    assert f"{model}.json" in str(info.value)


def test_voice_config_that_is_not_a_piper_config(tmp_path: Path) -> None:
    model = make_voice(tmp_path)
    Path(f"{model}.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ConfigError, match="is not a Piper voice config"):
        PiperTTS(voice=model)


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"rate": 10}, "rate", "less than or equal to 4"),
        ({"rate": 0}, "rate", "greater than or equal to 0.25"),
        ({"sentence_silence": -1}, "sentence_silence", "greater than or equal to 0"),
        ({"volume": 0}, "volume", "greater than 0"),
        ({"threads": 0}, "threads", "greater than or equal to 1"),
        ({"speaker": 1}, "speaker", "has only one speaker; remove the speaker option"),
    ],
)
def test_out_of_range_options(options: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        PiperTTS(**options)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: piper: ")


def test_speakers_of_a_multi_speaker_voice(tmp_path: Path) -> None:
    model = make_voice(tmp_path, num_speakers=3, speaker_id_map={"ann": 0, "bob": 2})
    assert PiperTTS(voice=model, speaker="bob").options.speaker_id() == 2
    assert PiperTTS(voice=model, speaker=1).options.speaker_id() == 1
    assert PiperTTS(voice=model).options.speaker_id() is None
    with pytest.raises(ConfigError, match=r"speaker 3 is out of range: .* speakers 0\.\.2"):
        PiperTTS(voice=model, speaker=3)
    with pytest.raises(ConfigError, match=r"no speaker 'eve' \(known: ann, bob\)") as info:
        PiperTTS(voice=model, speaker="eve")
    assert info.value.field == "speaker"


def test_registry_options_reject_typos_and_bad_paths(tmp_path: Path) -> None:
    spec = default_registry(refresh=True).get("tts", "piper")
    with pytest.raises(pydantic.ValidationError, match="speed"):
        spec.validate({"speed": 1.2})
    with pytest.raises(pydantic.ValidationError, match="Piper voice model not found"):
        spec.validate({"voice": str(tmp_path / "missing.onnx")})


async def test_a_corrupt_model_fails_at_start_naming_the_file(tmp_path: Path) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"this is not an onnx model")
    shutil.copyfile(f"{bundled_voice_path()}.json", f"{model}.json")
    tts = PiperTTS(voice=model)
    with pytest.raises(ConfigError, match="cannot load Piper voice model") as info:
        await tts.start()
    assert str(model) in str(info.value)
    assert info.value.field == "voice"
