"""Start-up stays light: which modules `import avatarkit`, `avatarkit --help` and
`avatarkit providers` load (sets, not times: the times are in benchmarks/startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import avatarkit
from avatarkit._source_caps import capabilities_from_source
from avatarkit.plugins import get_plugin_manager
from avatarkit.providers import RendererCapabilities, renderer_capabilities

#: Provider SDKs and the heavy libraries behind them (top-level module names).
SDKS = {
    "openai",
    "anthropic",
    "livekit",
    "av",
    "piper",
    "onnxruntime",
    "websockets",
    "httpx_ws",
    "aiohttp",
    "faster_whisper",
    "ctranslate2",
    "deepgram",
    "elevenlabs",
    "cartesia",
}


def _modules_after(code: str) -> set[str]:
    probe = textwrap.dedent(
        """
        import json, sys
        {code}
        sys.stdout.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
        """
    ).format(code=code)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.rsplit("\nMODULES ", 1)[1]
    return set(json.loads(line))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_avatarkit_loads_only_its_own_light_modules() -> None:
    modules = _modules_after("import avatarkit")
    ours = {m for m in modules if m == "avatarkit" or m.startswith("avatarkit.")}
    assert ours == {"avatarkit", "avatarkit._install", "avatarkit._version"}
    assert _top(modules) & {"pydantic", "pluggy", "anyio", "yaml", "numpy", "httpx"} == set()
    assert _top(modules) & SDKS == set()


def test_public_names_load_on_first_use() -> None:
    modules = _modules_after("from avatarkit import Message\nassert Message.__module__")
    assert "avatarkit.providers" in modules
    assert "avatarkit.session" not in modules  # only what the name needs
    assert "pydantic" not in _top(modules)


def test_every_public_name_resolves_and_dir_lists_them() -> None:
    for name in avatarkit.__all__:
        assert getattr(avatarkit, name) is not None, name
    assert set(avatarkit.__all__) <= set(dir(avatarkit))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = avatarkit.nope  # type: ignore[attr-defined]


def test_help_imports_neither_pydantic_nor_an_sdk_nor_a_plugin() -> None:
    modules = _modules_after(
        "from avatarkit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    top = _top(modules)
    assert top & (SDKS | {"pydantic", "yaml", "anyio", "pluggy", "numpy", "httpx"}) == set()
    assert {m for m in top if m.startswith("avatarkit_")} == set()


def test_providers_imports_no_sdk_with_every_plugin_installed() -> None:
    modules = _modules_after(
        "import contextlib, io\nfrom avatarkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['providers']) == 0"
    )
    top = _top(modules)
    installed = {m for m in top if m.startswith("avatarkit_")}
    assert {"avatarkit_video", "avatarkit_heygen", "avatarkit_piper"} <= installed
    assert top & SDKS == set()


# -- capabilities read from source agree with the imported classes -----------------------------


def _string_renderers() -> list[tuple[str, str]]:
    from avatarkit.plugins import ProviderRegistry

    registry = ProviderRegistry()
    get_plugin_manager().hook.register_providers(registry=registry)
    return [
        (s.name, s.factory) for s in registry if s.kind == "renderer" and isinstance(s.factory, str)
    ]


@pytest.mark.parametrize(("name", "factory"), _string_renderers())
def test_source_capabilities_match_the_imported_class(name: str, factory: str) -> None:
    from_source = capabilities_from_source(factory)
    assert from_source is not None, f"{name}: {factory} should be readable from source"
    module, _, attr = factory.partition(":")
    cls = getattr(__import__(module, fromlist=[attr]), attr)
    assert from_source == renderer_capabilities(cls)


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    name = f"capsrc_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("class R:\n    async def speak(self, audio): ...\n", RendererCapabilities(False, True)),
        (
            "class R(object):\n    async def speak_text(self, t): ...\n"
            "    async def speak(self, a): ...\n",
            RendererCapabilities(True, True),
        ),
        ("class R:\n    def speak(self, audio): ...\n", None),  # sync: let the import decide
        ("class R(Base):\n    async def speak(self, audio): ...\n", None),  # base may add one
        ("@wrap\nclass R:\n    async def speak(self, audio): ...\n", None),
        ("class R:\n    async def speak(self, audio): ...\nR = other()\n", None),
        ("class R:\n    speak = make()\n    async def speak_text(self, t): ...\n", None),
        ("def R():\n    pass\n", None),
        ("class Other:\n    async def speak(self, a): ...\n", None),
    ],
)
def test_source_reading_is_conservative(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    expected: RendererCapabilities | None,
) -> None:
    module = _module(tmp_path, monkeypatch, source)
    assert capabilities_from_source(f"{module}:R") == expected
    assert module not in sys.modules  # read, never imported


def test_source_reading_of_a_missing_module_is_none() -> None:
    assert capabilities_from_source("no_such_module_here:R") is None
    assert capabilities_from_source("avatarkit.providers:RendererCapabilities.x") is None
