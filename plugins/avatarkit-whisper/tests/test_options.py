"""Options and the pinned weights: errors before anything heavy loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from avatarkit.errors import ProviderError
from avatarkit_whisper import model as model_module
from avatarkit_whisper.model import BUNDLED_MODEL_BIN_SHA256, bundled_model_path, verify_bundled
from avatarkit_whisper.options import SileroVADOptions, WhisperSTTOptions


def test_defaults() -> None:
    o = WhisperSTTOptions()
    assert o.model is None
    assert o.language == "en"
    assert SileroVADOptions().threshold == 0.5


def test_model_must_be_a_ctranslate2_folder(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a directory"):
        WhisperSTTOptions(model=tmp_path / "missing")
    with pytest.raises(ValidationError, match=r"no model\.bin"):
        WhisperSTTOptions(model=tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x")
    assert WhisperSTTOptions(model=tmp_path).model == tmp_path


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        WhisperSTTOptions(modle="tiny")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SileroVADOptions(threshold=1.5)


def test_the_bundled_weights_match_the_pinned_hash() -> None:
    verify_bundled(bundled_model_path())


def test_changed_weights_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    shutil.copy(bundled_model_path() / "config.json", copy / "config.json")
    (copy / "model.bin").write_bytes(b"not the weights")
    with pytest.raises(ProviderError, match=BUNDLED_MODEL_BIN_SHA256):
        verify_bundled(copy)


def test_a_local_model_folder_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"garbage")
    with pytest.raises(ProviderError, match="cannot load the Whisper model"):
        model_module.load_model(tmp_path, "int8", 1)
