"""Registration, light discovery and option validation of the heygen renderer."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from avatarkit.plugins import default_registry
from avatarkit_heygen import HeyGenRendererOptions
from avatarkit_heygen.heygen import HeyGenRenderer

from .conftest import API_KEY


def test_entry_point_registers_a_text_renderer() -> None:
    spec = default_registry(refresh=True).get("renderer", "heygen")
    assert spec.source.distribution == "avatarkit-heygen"
    assert spec.load_factory() is HeyGenRenderer
    capabilities = spec.capabilities()
    assert capabilities is not None
    assert (capabilities.text, capabilities.audio) == (True, False)


def test_discovery_imports_no_vendor_sdk() -> None:
    code = (
        "import sys\n"
        "from avatarkit.plugins import default_registry\n"
        "default_registry().get('renderer', 'heygen')\n"
        "heavy = {'livekit', 'tenacity', 'avatarkit_heygen.heygen', 'avatarkit_heygen.media'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_options_validate_like_yaml() -> None:
    options = HeyGenRendererOptions.model_validate(
        {"api_key": API_KEY, "avatar_id": "A", "voice_rate": 1.2, "quality": "low"}
    )
    assert API_KEY not in repr(options)
    assert API_KEY not in str(options.model_dump())
    with pytest.raises(ValidationError, match="give api_key"):
        HeyGenRendererOptions.model_validate({"avatar_id": "A"})
    with pytest.raises(ValidationError, match="only one way"):
        HeyGenRendererOptions.model_validate(
            {"api_key": "k", "avatar_id": "A", "backend_url": "http://127.0.0.1:1"}
        )
    with pytest.raises(ValidationError, match="avatar_id is required"):
        HeyGenRendererOptions.model_validate({"api_key": "k"})
    with pytest.raises(ValidationError, match="avatar_idd"):
        HeyGenRendererOptions.model_validate({"api_key": "k", "avatar_idd": "A"})
    with pytest.raises(ValidationError, match="voice_rate"):
        HeyGenRendererOptions.model_validate({"api_key": "k", "avatar_id": "A", "voice_rate": 3})
    assert HeyGenRendererOptions.model_validate({"backend_url": "http://127.0.0.1:1"})


def test_every_option_is_a_renderer_argument() -> None:
    import inspect

    parameters = inspect.signature(HeyGenRenderer).parameters
    assert set(HeyGenRendererOptions.model_fields) <= set(parameters)
