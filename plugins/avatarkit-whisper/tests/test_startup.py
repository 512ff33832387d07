"""The offline voice stack loads only when a voice session starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("faster_whisper", "ctranslate2", "onnxruntime", "tokenizers")
VOICE_YAML = Path(__file__).parents[3] / "examples" / "voice.yaml"


def loaded_after(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    modules: list[str] = json.loads(out.splitlines()[-1])
    return [m for m in modules if m.split(".")[0] in HEAVY]


def test_help_and_providers_import_no_voice_engine() -> None:
    assert (
        loaded_after(
            "from avatarkit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "main(['providers'])"
        )
        == []
    )


def test_checking_and_building_a_voice_session_imports_no_voice_engine() -> None:
    assert (
        loaded_after(
            "from avatarkit.cli import main\n"
            f"assert main(['check', {str(VOICE_YAML)!r}]) == 0\n"
            "import avatarkit\n"
            f"session = avatarkit.load_session({str(VOICE_YAML)!r})\n"
            "assert session.stt is not None and session.vad is not None"
        )
        == []
    )


def test_starting_a_voice_session_loads_it() -> None:
    loaded = loaded_after(
        "import anyio, avatarkit\n"
        f"session = avatarkit.load_session({str(VOICE_YAML)!r})\n"
        "async def main():\n"
        "    async with session:\n"
        "        pass\n"
        "anyio.run(main)"
    )
    assert "faster_whisper" in loaded
    assert "onnxruntime" in loaded
