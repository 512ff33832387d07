"""Plugin loading and the provider registry.

We wrap pluggy's loader instead of calling ``load_setuptools_entrypoints``: that one silently
skips a second plugin with the same name and lets one broken plugin abort the whole load. Here
each plugin is loaded on its own, and one that fails is recorded as *broken* (shown by
``avatarkit providers``, mentioned when a provider is not found) while the others and the
built-ins load: an exception at import, ``sys.exit()`` or any other ``BaseException`` (except
``KeyboardInterrupt``, which is the user's Ctrl-C), a hook pluggy rejects, a misspelled hook name
(checked per plugin: pluggy's ``check_pending`` would fail the whole manager), an async hook, and
an exception while registering (whatever it registered before failing is rolled back). Two
distributions claiming the same provider name is reported naming both.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import pluggy
from pydantic import BaseModel

from avatarkit import hookspecs
from avatarkit._version import DISTRIBUTION, __version__
from avatarkit.errors import PluginError, ProviderNotFound
from avatarkit.providers import RendererCapabilities, renderer_capabilities

__all__ = [
    "BUILTIN_PLUGINS",
    "BrokenPlugin",
    "Kind",
    "PluginManager",
    "ProviderRegistry",
    "ProviderSpec",
    "default_registry",
    "get_plugin_manager",
    "load_entry_points",
    "load_registry",
]

logger = logging.getLogger(__name__)

Kind = Literal["llm", "tts", "renderer", "stt", "vad"]
KINDS: tuple[Kind, ...] = ("llm", "tts", "renderer", "stt", "vad")
ENTRY_POINT_GROUP = "avatarkit"
BUILTIN_PLUGINS = (
    "avatarkit.builtins.scripted",
    "avatarkit.builtins.console",
    "avatarkit.builtins.browser",
)

#: Where to get a provider that is not installed, for the "not found" hint.
KNOWN_PROVIDERS: dict[tuple[Kind, str], str] = {
    ("llm", "openai"): "avatarkit-openai",
    ("tts", "openai"): "avatarkit-openai",
    ("llm", "anthropic"): "avatarkit-anthropic",
    ("renderer", "heygen"): "avatarkit-heygen",
    ("renderer", "liveavatar"): "avatarkit-heygen",
    ("tts", "piper"): "avatarkit-piper",
    ("renderer", "video"): "avatarkit-video",
    ("stt", "whisper"): "avatarkit-whisper",
    ("vad", "silero"): "avatarkit-whisper",
    ("stt", "deepgram"): "avatarkit-deepgram",
    ("stt", "openai"): "avatarkit-openai",
}


@dataclass(frozen=True, slots=True)
class PluginSource:
    """Which plugin (and distribution) registered something."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.distribution is None:
            return self.plugin
        return f"{self.distribution} {self.version or ''}".strip()


@dataclass(frozen=True, slots=True)
class BrokenPlugin:
    """A plugin that could not be imported or failed while registering."""

    plugin: str
    distribution: str | None
    version: str | None
    error: str

    def describe(self) -> str:
        origin = ""
        if self.distribution:
            origin = (
                f" ({self.distribution} {self.version})"
                if self.version
                else f" ({self.distribution})"
            )
        return f"plugin {self.plugin!r}{origin} is broken: {self.error}"


@dataclass(frozen=True)
class ProviderSpec:
    """One registered provider: how to build it and where it came from."""

    kind: Kind
    name: str
    factory: Callable[..., Any] | str
    options: type[BaseModel] | None
    source: PluginSource
    description: str | None = None

    def load_factory(self) -> Callable[..., Any]:
        """The factory, importing it first if it was registered as ``"module:attr"``."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"{self.kind} provider {self.name!r} from {self.source.describe()} cannot be "
                f"loaded from {self.factory!r}: {type(exc).__name__}: {exc}",
                distribution=self.source.distribution,
            ) from exc
        if not callable(obj):
            raise PluginError(
                f"{self.kind} provider {self.name!r}: {self.factory!r} is not callable",
                distribution=self.source.distribution,
            )
        return cast("Callable[..., Any]", obj)

    def capabilities(self) -> RendererCapabilities | None:
        """For renderers: which routes the factory's class supports (imports it)."""
        if self.kind != "renderer":
            return None
        return renderer_capabilities(self.load_factory())

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate options with the provider's model; raises ``pydantic.ValidationError``.

        Returns the keyword arguments for the factory: field values as validated (secrets stay
        ``SecretStr``), only the fields that were given or have defaults.
        """
        if self.options is None:
            return dict(options)
        model = self.options.model_validate(dict(options))
        return {name: getattr(model, name) for name in type(model).model_fields}

    def create(self, **options: Any) -> Any:
        """Validate ``options`` and build the provider."""
        return self.load_factory()(**self.validate(options))


class ProviderRegistry:
    """Collects providers from every plugin's ``register_providers`` hook."""

    def __init__(self) -> None:
        self._providers: dict[tuple[Kind, str], ProviderSpec] = {}
        self._conflicts: dict[tuple[Kind, str], str] = {}
        self._source = PluginSource("<direct>")
        self.broken: list[BrokenPlugin] = []

    # -- the registration API plugins call ---------------------------------------------------

    def llm(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        options: type[BaseModel] | None = None,
        description: str | None = None,
    ) -> None:
        """Register an LLM provider."""
        self._add("llm", name, factory, options, description)

    def tts(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        options: type[BaseModel] | None = None,
        description: str | None = None,
    ) -> None:
        """Register a text-to-speech provider."""
        self._add("tts", name, factory, options, description)

    def renderer(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        options: type[BaseModel] | None = None,
        description: str | None = None,
    ) -> None:
        """Register an avatar renderer."""
        self._add("renderer", name, factory, options, description)

    def stt(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        options: type[BaseModel] | None = None,
        description: str | None = None,
    ) -> None:
        """Register a speech-to-text provider (see :class:`avatarkit.providers.STT`)."""
        self._add("stt", name, factory, options, description)

    def vad(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        *,
        options: type[BaseModel] | None = None,
        description: str | None = None,
    ) -> None:
        """Register a voice activity detector (see :class:`avatarkit.providers.VAD`)."""
        self._add("vad", name, factory, options, description)

    def _add(
        self,
        kind: Kind,
        name: str,
        factory: Callable[..., Any] | str,
        options: type[BaseModel] | None,
        description: str | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{kind} provider name must be a non-empty string, got {name!r}")
        if isinstance(factory, str) and ":" not in factory:
            raise PluginError(f"{kind} provider {name!r}: factory string must be 'module:attr'")
        if not isinstance(factory, str) and not callable(factory):
            raise PluginError(f"{kind} provider {name!r}: factory {factory!r} is not callable")
        if options is not None and not (
            isinstance(options, type) and issubclass(options, BaseModel)
        ):
            raise PluginError(f"{kind} provider {name!r}: options must be a pydantic model class")
        key = (kind, name)
        existing = self._providers.get(key)
        if existing is not None:
            message = (
                f"{kind} provider {name!r} is registered twice: by "
                f"{existing.source.describe()} and by {self._source.describe()}"
            )
            logger.error(message)
            self._conflicts[key] = message
            return
        self._providers[key] = ProviderSpec(kind, name, factory, options, self._source, description)

    # -- lookups -----------------------------------------------------------------------------

    def names(self, kind: Kind) -> list[str]:
        """Sorted names of the providers of ``kind``."""
        return sorted(name for k, name in self._providers if k == kind)

    def __iter__(self) -> Iterator[ProviderSpec]:
        return iter(sorted(self._providers.values(), key=lambda s: (KINDS.index(s.kind), s.name)))

    def __contains__(self, key: object) -> bool:
        return key in self._providers

    @property
    def conflicts(self) -> list[str]:
        """Messages for provider names claimed by two plugins."""
        return list(self._conflicts.values())

    def get(self, kind: Kind, name: str) -> ProviderSpec:
        """The provider ``name`` of ``kind``; raises a helpful error when there is none."""
        key = (kind, name)
        if key in self._conflicts:
            raise PluginError(self._conflicts[key])
        spec = self._providers.get(key)
        if spec is not None:
            return spec
        available = self.names(kind)
        hints = []
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
        if close:
            hints.append(f"did you mean {close[0]!r}?")
        package = KNOWN_PROVIDERS.get(key)
        if package:
            hints.append(f"pip install {package}")
        hints.extend(b.describe() for b in self.broken)
        raise ProviderNotFound(kind, name, available, "; ".join(hints) or None)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what failed to load, and where each plugin came from."""

    def __init__(self) -> None:
        super().__init__("avatarkit")
        self.broken: list[BrokenPlugin] = []
        self.sources: dict[str, PluginSource] = {}

    def register_source(self, plugin: object, source: PluginSource) -> None:
        self.register(plugin, name=source.plugin)
        self.sources[source.plugin] = source


def _csv_env(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def load_entry_points(pm: PluginManager) -> None:
    """Register every plugin of the ``avatarkit`` entry-point group, recording failures.

    ``AVATARKIT_PLUGINS=a,b`` loads only those (distribution or entry-point names);
    ``AVATARKIT_DISABLE_PLUGINS=a,b`` skips those.
    """
    allow = _csv_env("AVATARKIT_PLUGINS")
    deny = _csv_env("AVATARKIT_DISABLE_PLUGINS") or set()
    seen: dict[str, PluginSource] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        names = {ep.name, dist} - {None}
        if allow is not None and not names & allow:
            continue
        if names & deny:
            continue
        source = PluginSource(ep.name, dist, version)
        if ep.name in seen:
            if seen[ep.name].distribution == dist:
                continue  # the same distribution seen twice on sys.path
            message = (
                f"entry point {ep.name!r} is claimed by both {seen[ep.name].describe()} "
                f"and {source.describe()}; only the first is loaded"
            )
            logger.error(message)
            pm.broken.append(BrokenPlugin(ep.name, dist, version, message))
            continue
        seen[ep.name] = source
        try:
            module = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a plugin must not end the loader
            _broken(pm.broken, source, f"failed to import: {_describe(exc)}")
            continue
        _register_plugin(pm, module, source)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _broken(broken: list[BrokenPlugin], source: PluginSource, error: str) -> None:
    logger.warning("plugin %r (%s) is broken: %s", source.plugin, source.distribution, error)
    broken.append(BrokenPlugin(source.plugin, source.distribution, source.version, error))


def _register_plugin(pm: PluginManager, plugin: object, source: PluginSource) -> bool:
    """Register one plugin, or record it as broken and leave the manager as it was."""
    try:
        pm.register_source(plugin, source)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        _broken(pm.broken, source, f"cannot be registered: {_describe(exc)}")
        return False
    unknown = [
        name
        for name, hook in vars(pm.hook).items()
        if not name.startswith("_")
        and not hook.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in hook.get_hookimpls())
    ]
    if unknown:
        pm.unregister(plugin)
        pm.sources.pop(source.plugin, None)
        known = sorted(
            n for n, h in vars(pm.hook).items() if not n.startswith("_") and h.has_spec()
        )
        hints = [
            f"{name!r}" + "".join(f" (did you mean {c!r}?)" for c in _close(name, known))
            for name in unknown
        ]
        _broken(
            pm.broken,
            source,
            f"implements unknown hook {', '.join(hints)}; avatarkit hooks: {', '.join(known)}",
        )
        return False
    return True


def _close(word: str, choices: list[str]) -> list[str]:
    return difflib.get_close_matches(word, choices, n=1, cutoff=0.6)


def get_plugin_manager(*, entry_points: bool = True) -> PluginManager:
    """A fresh plugin manager with the built-ins and (by default) every installed plugin."""
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        source = PluginSource(module_name, DISTRIBUTION, __version__)
        pm.register_source(importlib.import_module(module_name), source)
    try:
        pm.check_pending()  # the built-ins: a failure here is avatarkit's own bug
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    if entry_points:
        load_entry_points(pm)
    if os.environ.get("AVATARKIT_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: logger.debug("pluggy: %s", msg.rstrip()))
        pm.enable_tracing()
    return pm


def load_registry(pm: PluginManager | None = None) -> ProviderRegistry:
    """Call every plugin's ``register_providers`` and return what they registered.

    Each plugin is called on its own, so one that raises (even ``SystemExit``) is recorded as
    broken, whatever it registered before failing is dropped, and the others still register.
    """
    pm = pm if pm is not None else get_plugin_manager()
    registry = ProviderRegistry()
    registry.broken.extend(pm.broken)
    # pluggy's order: last registered first; we want built-ins first for stable conflict reports.
    for impl in reversed(pm.hook.register_providers.get_hookimpls()):
        source = pm.sources.get(impl.plugin_name, PluginSource(impl.plugin_name))
        registry._source = source
        kwargs = {"registry": registry}
        saved = dict(registry._providers), dict(registry._conflicts)
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            if inspect.isawaitable(result) or inspect.isgenerator(result):
                getattr(result, "close", lambda: None)()  # never started: no warning, no effect
                raise PluginError("register_providers must be a plain function, not async")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            registry._providers, registry._conflicts = saved
            _broken(registry.broken, source, f"register_providers failed: {_describe(exc)}")
    registry._source = PluginSource("<direct>")
    return registry


_default: ProviderRegistry | None = None
_default_lock = threading.Lock()


def default_registry(*, refresh: bool = False) -> ProviderRegistry:
    """The process-wide registry, built on first use (never at import time)."""
    global _default
    with _default_lock:
        if _default is None or refresh:
            _default = load_registry()
        return _default
