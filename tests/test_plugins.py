"""Plugin discovery through real entry points of distributions installed for the test."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from avatarkit.errors import PluginError, ProviderNotFound
from avatarkit.plugins import get_plugin_manager, load_registry
from avatarkit.testing import installed_distribution

GOOD = """
import avatarkit

class EchoLLM:
    async def stream(self, messages):
        yield messages[-1].content

@avatarkit.hookimpl
def register_providers(registry):
    registry.llm("{name}", EchoLLM, description="echo for tests")
"""

IMPORT_FAILS = "import avatarkit_no_such_dependency_xyz\n"

REGISTER_RAISES = """
import avatarkit

@avatarkit.hookimpl
def register_providers(registry):
    raise RuntimeError("boom while registering")
"""


def install(
    root: Path, dist: str, module: str, source: str, version: str = "1.2.3"
) -> AbstractContextManager[Path]:
    return installed_distribution(
        root / dist,
        dist,
        version=version,
        entry_points={module: module},
        files={f"{module}.py": source},
    )


def test_plugin_is_discovered_and_attributed_to_its_distribution(tmp_path: Path) -> None:
    with install(tmp_path, "avatarkit-echotest", "echotest_plugin", GOOD.format(name="echotest")):
        registry = load_registry()
    spec = registry.get("llm", "echotest")
    assert spec.source.distribution == "avatarkit-echotest"
    assert spec.source.version == "1.2.3"
    assert spec.source.plugin == "echotest_plugin"
    assert spec.description == "echo for tests"
    assert registry.get("llm", "scripted").source.distribution == "avatarkit-core"


def test_broken_plugins_are_reported_and_do_not_take_others_down(tmp_path: Path) -> None:
    with (
        install(tmp_path, "avatarkit-importfails", "importfails_plugin", IMPORT_FAILS),
        install(tmp_path, "avatarkit-raises", "raises_plugin", REGISTER_RAISES, "0.3"),
        install(tmp_path, "avatarkit-fine", "fine_plugin", GOOD.format(name="fine")),
    ):
        registry = load_registry()
    assert "fine" in registry.names("llm")
    broken = {b.plugin: b for b in registry.broken}
    failed_import = broken["importfails_plugin"]
    assert failed_import.distribution == "avatarkit-importfails"
    assert "avatarkit_no_such_dependency_xyz" in failed_import.error
    assert "ModuleNotFoundError" in failed_import.error
    raised = broken["raises_plugin"]
    assert raised.distribution == "avatarkit-raises"
    assert raised.version == "0.3"
    assert "boom while registering" in raised.error
    # Asking for a provider that is not there mentions the broken plugins.
    with pytest.raises(ProviderNotFound) as info:
        registry.get("llm", "missing")
    assert "importfails_plugin" in str(info.value)
    assert "avatarkit-raises" in str(info.value)


def test_same_provider_name_from_two_distributions_names_both(tmp_path: Path) -> None:
    with (
        install(tmp_path, "avatarkit-first", "first_plugin", GOOD.format(name="twin")),
        install(tmp_path, "avatarkit-second", "second_plugin", GOOD.format(name="twin")),
    ):
        registry = load_registry()
    with pytest.raises(PluginError) as info:
        registry.get("llm", "twin")
    message = str(info.value)
    assert "avatarkit-first" in message
    assert "avatarkit-second" in message
    assert any("twin" in c for c in registry.conflicts)


def test_allow_and_deny_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        install(tmp_path, "avatarkit-one", "one_plugin", GOOD.format(name="one")),
        install(tmp_path, "avatarkit-two", "two_plugin", GOOD.format(name="two")),
    ):
        monkeypatch.setenv("AVATARKIT_PLUGINS", "avatarkit-one")
        only_one = load_registry(get_plugin_manager())
        monkeypatch.delenv("AVATARKIT_PLUGINS")
        monkeypatch.setenv("AVATARKIT_DISABLE_PLUGINS", "two_plugin")
        without_two = load_registry(get_plugin_manager())
        monkeypatch.delenv("AVATARKIT_DISABLE_PLUGINS")
        both = load_registry(get_plugin_manager())
    assert "one" in only_one.names("llm")
    assert "two" not in only_one.names("llm")
    assert "scripted" in only_one.names("llm")  # built-ins are always there
    assert "one" in without_two.names("llm")
    assert "two" not in without_two.names("llm")
    assert {"one", "two"} <= set(both.names("llm"))


def test_builtins_register_through_the_hook() -> None:
    registry = load_registry(get_plugin_manager(entry_points=False))
    assert registry.names("llm") == ["scripted"]
    assert registry.names("renderer") == ["browser", "console"]
    assert registry.get("renderer", "console").source.distribution == "avatarkit-core"
