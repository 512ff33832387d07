from __future__ import annotations

from typing import Any

import pytest

from avatarkit_piper.options import PiperTTSOptions
from avatarkit_piper.voices import load_voice


@pytest.fixture(scope="session")
def joe() -> Any:
    """The bundled voice, loaded once for the whole run (PiperTTS instances share it)."""
    return load_voice(PiperTTSOptions().info)
