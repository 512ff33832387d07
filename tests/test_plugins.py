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


MISSPELLED_HOOK = """
import avatarkit

class EchoLLM:
    async def stream(self, messages):
        yield "never"

@avatarkit.hookimpl
def register_provider(registry):  # missing the final s
    registry.llm("misspelled", EchoLLM)
"""

EXITS_AT_IMPORT = "import sys\nsys.exit(3)\n"

EXITS_WHILE_REGISTERING = """
import sys
import avatarkit

@avatarkit.hookimpl
def register_providers(registry):
    sys.exit("bye from a plugin")
"""

BASE_EXCEPTION_AT_IMPORT = """
class Stop(BaseException):
    pass

raise Stop("not an Exception at all")
"""

HALF_REGISTERS_THEN_RAISES = """
import avatarkit

class EchoLLM:
    async def stream(self, messages):
        yield "half"

class Stop(BaseException):
    pass

@avatarkit.hookimpl
def register_providers(registry):
    registry.llm("half-registered", EchoLLM)
    raise Stop("after registering one")
"""

ASYNC_HOOK = """
import avatarkit

@avatarkit.hookimpl
async def register_providers(registry):
    registry.llm("from-async", object)
"""

WRONG_ARGUMENTS = """
import avatarkit

@avatarkit.hookimpl
def register_providers(registry, settings):
    registry.llm("wrong-args", object)
"""

HOSTILE = {
    "wrongargs_plugin": WRONG_ARGUMENTS,
    "misspelled_plugin": MISSPELLED_HOOK,
    "exitsimport_plugin": EXITS_AT_IMPORT,
    "exitsregister_plugin": EXITS_WHILE_REGISTERING,
    "baseexc_plugin": BASE_EXCEPTION_AT_IMPORT,
    "half_plugin": HALF_REGISTERS_THEN_RAISES,
    "async_plugin": ASYNC_HOOK,
}


def test_each_plugin_is_isolated_whatever_it_does(tmp_path: Path) -> None:
    from contextlib import ExitStack

    with ExitStack() as stack:
        for module, source in HOSTILE.items():
            stack.enter_context(install(tmp_path, f"avatarkit-{module}", module, source))
        stack.enter_context(
            install(tmp_path, "avatarkit-fine", "fine_plugin", GOOD.format(name="fine"))
        )
        registry = load_registry()
    assert "fine" in registry.names("llm")
    assert "scripted" in registry.names("llm")  # the built-ins
    assert {"browser", "console"} <= set(registry.names("renderer"))
    for gone in ("misspelled", "half-registered", "from-async"):
        assert gone not in registry.names("llm")
    broken = {b.plugin: b.error for b in registry.broken}
    assert set(HOSTILE) <= set(broken)
    assert broken["misspelled_plugin"] == (
        "implements unknown hook 'register_provider' (did you mean 'register_providers'?); "
        "avatarkit hooks: register_providers"
    )
    assert broken["exitsimport_plugin"] == "failed to import: called sys.exit(3)"
    assert broken["exitsregister_plugin"] == (
        "register_providers failed: called sys.exit('bye from a plugin')"
    )
    assert broken["baseexc_plugin"] == "failed to import: Stop: not an Exception at all"
    assert broken["half_plugin"] == "register_providers failed: Stop: after registering one"
    assert "must be a plain function, not async" in broken["async_plugin"]
    assert broken["wrongargs_plugin"].startswith("cannot be registered: PluginValidationError")
    assert "settings" in broken["wrongargs_plugin"]


def test_ctrl_c_while_loading_plugins_still_stops_the_program(tmp_path: Path) -> None:
    source = "raise KeyboardInterrupt\n"
    with install(tmp_path, "avatarkit-ctrlc", "ctrlc_plugin", source):
        with pytest.raises(KeyboardInterrupt):
            load_registry()


def test_avatarkit_providers_names_each_broken_plugin_and_why(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "site"
    from contextlib import ExitStack

    with ExitStack() as stack:
        for module, source in HOSTILE.items():
            stack.enter_context(
                installed_distribution(
                    root,
                    f"avatarkit-{module.replace('_', '-')}",
                    entry_points={module: module},
                    files={f"{module}.py": source},
                )
            )
        result = subprocess.run(
            [sys.executable, "-m", "avatarkit", "providers"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    table, _, problems = result.stdout.partition("\nproblems:\n")
    assert "scripted" in table
    assert "console" in table
    for module in HOSTILE:
        (line,) = [ln for ln in problems.splitlines() if f"plugin {module!r}" in ln]
        assert f"avatarkit-{module.replace('_', '-')}" in line
    assert "called sys.exit(3)" in problems
    assert "did you mean 'register_providers'?" in problems
