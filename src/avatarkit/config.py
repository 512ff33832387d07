"""YAML sessions: load, interpolate, validate and build an :class:`~avatarkit.AvatarSession`.

A session file names one provider per section and gives its options::

    system_prompt: You are a helpful assistant.
    llm: {provider: openai, model: gpt-4o-mini, api_key: "${OPENAI_API_KEY}"}
    tts: {provider: piper}                 # only needed when the renderer speaks audio only
    renderer: {provider: heygen, prefer: text, api_key: "${HEYGEN_API_KEY}"}
    session: {lookahead: 1, max_history: 20, timeouts: {first_token: 10}}

Everything is checked before anything is built: each provider's options by its own pydantic
model, and the route (text or audio) from the renderer's methods, so an audio-only renderer
without ``tts:`` fails at load time. Errors say ``file:line:column``, the field
(``llm.temperature``) and what was expected. Secrets (``SecretStr`` options, and values put into
keys named like ``*key*``, ``*token*``, ``*secret*``, ``*password*``) never appear in errors,
reprs or :func:`dump_config`.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError

from avatarkit._interpolation import InterpolationError, expand
from avatarkit._yaml import MAX_BYTES, Location, Path, YAMLDocument, YAMLProblem, parse_yaml
from avatarkit.errors import (
    AvatarKitError,
    CapabilityError,
    ConfigError,
    PluginError,
    ProviderNotFound,
    redact,
)
from avatarkit.plugins import Kind, ProviderRegistry, ProviderSpec, default_registry
from avatarkit.providers import RendererCapabilities, renderer_capabilities

if TYPE_CHECKING:
    from avatarkit.listening import TurnOptions
    from avatarkit.session import AvatarSession, Route

__all__ = [
    "ProviderConfig",
    "SessionConfig",
    "SessionOptions",
    "TimeoutOptions",
    "check",
    "dump_config",
    "load_config",
    "load_session",
    "static_capabilities",
]

Source = Mapping[str, Any] | str | os.PathLike[str]

TOP_LEVEL_KEYS = ("system_prompt", "llm", "tts", "renderer", "session", "stt", "vad", "turn")
#: Keys whose values are treated as secrets wherever they appear.
SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|key|token|secret|password|passwd|credentials?)$", re.IGNORECASE
)
MASK = "***"
#: Top-level keys starting with this are ignored: a place to define anchors (``x-base: &base``).
EXTENSION_PREFIX = "x-"


class TimeoutOptions(BaseModel):
    """``session.timeouts``: seconds before a hung stage becomes an error (unset: no limit)."""

    model_config = ConfigDict(extra="forbid")
    first_token: float | None = Field(None, gt=0, description="LLM's first token.")
    tts_first_chunk: float | None = Field(None, gt=0, description="TTS's first audio chunk.")
    speak: float | None = Field(
        None, gt=0, description="Added to a sentence's expected length for the renderer."
    )


class SessionOptions(BaseModel):
    """The ``session:`` section."""

    model_config = ConfigDict(extra="forbid")
    lookahead: int = Field(1, ge=0, description="Sentences synthesised ahead (audio route).")
    max_history: int | None = Field(
        None, ge=2, description="Messages kept in history (the system prompt is always kept)."
    )
    timeouts: TimeoutOptions = Field(default_factory=TimeoutOptions)


@dataclass(frozen=True, repr=False)
class ProviderConfig:
    """One validated provider section, ready to build (nothing is built until :meth:`build`)."""

    kind: Kind
    provider: str
    spec: ProviderSpec
    options: dict[str, Any]
    location: Location
    secrets: frozenset[str] = field(default=frozenset(), compare=False)

    def build(self) -> Any:
        """Create the provider; errors say which section of the file it came from."""
        factory = self.spec.load_factory()
        try:
            return factory(**self.options)
        except ConfigError as exc:
            if exc.path is not None or self.location.path is None:
                raise
            # A provider's own option check (e.g. a missing API key): say where in the file.
            field_name = f"{self.kind}.{exc.field}" if exc.field else self.kind
            raise _config_error(exc.message, self.location, field_name) from None
        except AvatarKitError:
            raise
        except Exception as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self.secrets)
            raise _config_error(
                f"{self.kind} provider {self.provider!r} could not be built: {message}",
                self.location,
                self.kind,
            ) from None

    def __repr__(self) -> str:
        options = _masked(self.options, self.secrets)
        return f"ProviderConfig(kind={self.kind!r}, provider={self.provider!r}, options={options})"


@dataclass(frozen=True, repr=False)
class SessionConfig:
    """A validated session description: what :func:`load_session` builds from."""

    source: str | None
    system_prompt: str | None
    llm: ProviderConfig
    renderer: ProviderConfig
    tts: ProviderConfig | None
    prefer: Route | None
    route: Route | None
    capabilities: RendererCapabilities | None
    session: SessionOptions
    secrets: frozenset[str] = field(default=frozenset(), compare=False)
    # voice input (the `stt:`, `vad:` and `turn:` sections)
    stt: ProviderConfig | None = None
    vad: ProviderConfig | None = None
    turn: TurnOptions | None = None

    def build(self) -> AvatarSession:
        """Build every provider the route needs (a text route builds no TTS) and the session."""
        from avatarkit.session import AvatarSession, Timeouts

        llm = self.llm.build()
        renderer = self.renderer.build()
        tts = self.tts.build() if self.tts is not None and self.route != "text" else None
        timeouts = self.session.timeouts
        return AvatarSession(
            llm=llm,
            renderer=renderer,
            tts=tts,
            system_prompt=self.system_prompt,
            prefer=self.route or self.prefer,
            lookahead=self.session.lookahead,
            max_history=self.session.max_history,
            timeouts=Timeouts(
                first_token=timeouts.first_token,
                tts_first_chunk=timeouts.tts_first_chunk,
                speak=timeouts.speak,
            ),
            secrets=self.secrets,  # kept out of every error and event the session emits
            stt=self.stt.build() if self.stt is not None else None,
            vad=self.vad.build() if self.vad is not None else None,
            turn=self.turn,
        )

    def summary(self) -> str:
        """A few human-readable lines: the providers, where they come from, and the route."""

        def describe(p: ProviderConfig) -> str:
            return f"{p.provider} (from {p.spec.source.describe()})"

        lines = [f"{self.source or '<mapping>'}: OK", f"  llm:      {describe(self.llm)}"]
        if self.tts is None:
            lines.append("  tts:      none")
        else:
            unused = "" if self.route != "text" else "  [not used: the renderer speaks text]"
            lines.append(f"  tts:      {describe(self.tts)}{unused}")
        caps = self.capabilities.describe() if self.capabilities else "capabilities unknown"
        lines.append(f"  renderer: {describe(self.renderer)}, {caps}")
        if self.route is None:
            lines.append(
                "  route:    decided when the renderer is built (its factory is not a class)"
            )
        elif self.route == "text":
            lines.append("  route:    text (LLM -> sentences -> renderer.speak_text; no TTS)")
        else:
            lines.append("  route:    audio (LLM -> sentences -> TTS -> renderer.speak)")
        if self.stt is not None:
            lines.append(f"  stt:      {describe(self.stt)}")
            lines.append(f"  vad:      {describe(self.vad) if self.vad else 'none'}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SessionConfig(source={self.source!r}, llm={self.llm!r}, tts={self.tts!r}, "
            f"renderer={self.renderer!r}, route={self.route!r})"
        )


# -- public functions ---------------------------------------------------------------------------


def load_session(
    source: Source,
    *,
    registry: ProviderRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> AvatarSession:
    """Build an :class:`~avatarkit.AvatarSession` from a YAML file or a mapping.

    Args:
        source: path of a YAML file, or a mapping with the same structure.
        registry: providers to choose from (default: every installed plugin).
        env: variables for ``${VAR}`` interpolation (default: ``os.environ``).

    Raises:
        ConfigError: the description is wrong (says file:line, field and what was expected).
        ProviderNotFound: a provider name is not installed (lists those that are).
        CapabilityError: the renderer cannot be fed as configured (e.g. audio-only, no ``tts:``).
        PluginError: the plugin providing a provider is broken.
    """
    return load_config(source, registry=registry, env=env).build()


def load_config(
    source: Source,
    *,
    registry: ProviderRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> SessionConfig:
    """Validate a session description completely without building any provider.

    Imports each renderer's factory (to learn its capabilities) but performs no I/O. Every
    problem found is reported in one error: a single problem raises its own error
    (:class:`ConfigError`, :class:`ProviderNotFound`, :class:`CapabilityError`, ...); several
    raise one :class:`ConfigError` listing them all, each in ``problems``.
    """
    doc = _read(source)
    env = os.environ if env is None else env
    problems = _Problems()
    for dup in doc.problems:
        problems.add(_config_error(dup.message, dup.location, _dotted(dup.path)))
    state = _State(doc, env, problems)
    value = doc.value
    if isinstance(value, dict):  # `x-...:` top-level keys only hold anchors for reuse
        value = {k: v for k, v in value.items() if not str(k).startswith(EXTENSION_PREFIX)}
    data = state.interpolate(value, ())
    if data is None:
        problems.raise_if_any()
        raise ConfigError(
            "the session is empty; it needs at least `llm:` and `renderer:`", path=doc.file
        )
    if not isinstance(data, dict):
        problems.add(
            _config_error(
                f"a session is a mapping of sections, got {_type_name(data)}",
                doc.locate(()),
                None,
            )
        )
        problems.raise_if_any()
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(
                _config_error(
                    f"unknown top-level key {key!r}{_suggest(str(key), TOP_LEVEL_KEYS)}; "
                    f"valid keys: {', '.join(TOP_LEVEL_KEYS)}",
                    doc.locate((str(key),), key=True),
                    str(key),
                )
            )
    registry = default_registry() if registry is None else registry

    system_prompt = data.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        problems.add(
            _config_error(
                f"expected text, got {_type_name(system_prompt)}",
                doc.locate(("system_prompt",)),
                "system_prompt",
            )
        )
    for kind in ("llm", "renderer"):
        if data.get(kind) is None:
            problems.add(
                _config_error(
                    f"missing required section `{kind}:` (installed {kind} providers: "
                    f"{_names(registry, kind)})",
                    doc.locate(()),
                    None,
                )
            )
    llm = _provider(state, data, "llm", registry)[0] if data.get("llm") is not None else None
    renderer, prefer = (
        _provider(state, data, "renderer", registry)
        if data.get("renderer") is not None
        else (None, None)
    )
    tts = _provider(state, data, "tts", registry)[0] if data.get("tts") is not None else None

    capabilities: RendererCapabilities | None = None
    route: Route | None = None
    if renderer is not None:
        try:
            capabilities = static_capabilities(renderer.spec)
        except AvatarKitError as exc:
            problems.add(_located(exc, renderer.location, "renderer.provider"))
        tts_ok = tts is not None or data.get("tts") is None  # a broken tts: section is reported
        if capabilities is not None and tts_ok:
            try:
                route = _route(renderer, capabilities, prefer, tts, registry)
            except AvatarKitError as exc:
                problems.add(exc)

    session_raw = data.get("session")
    session_options = SessionOptions()
    if session_raw is not None:
        validated = _validate_model(SessionOptions, session_raw, ("session",), state)
        session_options = cast("SessionOptions", validated or session_options)

    stt, vad, turn = _voice(state, data, registry)

    problems.raise_if_any(state.secrets)
    assert llm is not None  # else a problem was raised above
    assert renderer is not None
    frozen = frozenset(state.secrets)  # every provider redacts every secret of the session
    return SessionConfig(
        source=doc.file,
        system_prompt=system_prompt,
        llm=replace(llm, secrets=frozen),
        renderer=replace(renderer, secrets=frozen),
        tts=replace(tts, secrets=frozen) if tts is not None else None,
        prefer=prefer,
        route=route,
        capabilities=capabilities,
        session=session_options,
        secrets=frozen,
        stt=replace(stt, secrets=frozen) if stt is not None else None,
        vad=replace(vad, secrets=frozen) if vad is not None else None,
        turn=turn,
    )


def check(
    source: Source,
    *,
    registry: ProviderRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Validate ``source`` as :func:`load_config` does and return the human summary."""
    return load_config(source, registry=registry, env=env).summary()


def dump_config(config: SessionConfig) -> str:
    """The effective configuration (defaults filled in) as YAML, with every secret masked."""
    import yaml

    def section(p: ProviderConfig, extra: Mapping[str, Any] = {}) -> dict[str, Any]:
        return {"provider": p.provider, **extra, **_masked(p.options, config.secrets)}

    out: dict[str, Any] = {}
    if config.system_prompt is not None:
        out["system_prompt"] = redact(config.system_prompt, config.secrets)
    out["llm"] = section(config.llm)
    if config.tts is not None:
        out["tts"] = section(config.tts)
    out["renderer"] = section(config.renderer, {"prefer": config.prefer} if config.prefer else {})
    out["session"] = config.session.model_dump(mode="json")
    if config.stt is not None:
        out["stt"] = section(config.stt)
    if config.vad is not None:
        out["vad"] = section(config.vad)
    if config.turn is not None:
        out["turn"] = config.turn.model_dump(mode="json")
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True)


# -- collecting problems ------------------------------------------------------------------------


class _Problems:
    """Every problem found in one description, raised together at the end."""

    def __init__(self) -> None:
        self.items: list[AvatarKitError] = []

    def add(self, exc: AvatarKitError) -> None:
        self.items.append(exc)

    def raise_if_any(self, secrets: Iterable[str] = ()) -> None:
        if not self.items:
            return
        items = sorted(self.items, key=_position)  # file order; stable for the rest
        if len(items) == 1:
            raise items[0]
        first, rest = items[0], items[1:]
        more = "".join(f"\n  {redact(str(other), secrets)}" for other in rest)
        if isinstance(first, ConfigError):
            raise ConfigError(
                first.message + more,
                path=first.path,
                line=first.line,
                column=first.column,
                field=first.field,
                problems=items,
            )
        raise ConfigError(str(first) + more, problems=items)


def _position(exc: AvatarKitError) -> tuple[int, int, int]:
    if isinstance(exc, ConfigError) and exc.line is not None:
        return (0, exc.line, exc.column or 0)
    found = re.match(r"[^\n]*?:(\d+):(\d+): ", str(exc))  # a located non-config error
    if found:
        return (0, int(found.group(1)), int(found.group(2)))
    return (1, 0, 0)


@dataclass
class _State:
    """What validation of one description accumulates."""

    doc: YAMLDocument
    env: Mapping[str, str]
    problems: _Problems
    secrets: set[str] = field(default_factory=set)
    #: Values whose ``${...}`` failed: no further problem is reported inside them.
    failed: set[Path] = field(default_factory=set)
    #: Variables that were set to "" and used, by the value they were used in.
    empty_vars: dict[Path, list[str]] = field(default_factory=dict)

    def interpolate(self, value: Any, path: Path) -> Any:
        """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``.

        Defaults may themselves hold ``${...}`` (``${A:-${B:-x}}``); a default is only expanded
        when it is used.
        """
        if isinstance(value, dict):
            return {k: self.interpolate(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.interpolate(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value
        try:
            found = expand(value, self.env, secret=_is_secret_key(path), secret_name=SECRET_KEY)
        except InterpolationError as exc:
            self.failed.add(path)
            self.problems.add(_config_error(exc.message, self.doc.locate(path), _dotted(path)))
            return value
        self.secrets.update(found.secrets)
        if found.empty:
            self.empty_vars[path] = found.empty
        return found.value

    def is_failed(self, path: Path) -> bool:
        return any(path[: len(f)] == f for f in self.failed)


def _is_secret_key(path: Path) -> bool:
    return bool(path) and isinstance(path[-1], str) and bool(SECRET_KEY.search(path[-1]))


# -- reading --------------------------------------------------------------------------------------


def _read(source: Source) -> YAMLDocument:
    if isinstance(source, Mapping):
        return YAMLDocument(value=_plain(source), file=None)
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            f"a session is a YAML file path or a mapping, got {type(source).__name__}"
        )
    file = os.fspath(source)
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("file not found", path=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=file) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_BYTES} bytes, the limit for a session file", path=file
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=file) from None
    import yaml

    try:
        return parse_yaml(text, file)
    except YAMLProblem as exc:
        raise _config_error(exc.message, exc.location, _dotted(exc.path) or None) from None
    except yaml.MarkedYAMLError as exc:
        raise _yaml_syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=file) from None


#: Contexts whose start is where the mistake is (an unclosed bracket or quote), not where the
#: parser noticed it.
_OPENING_CONTEXTS = ("flow sequence", "flow mapping", "quoted scalar")


def _yaml_syntax_error(exc: Any, file: str) -> ConfigError:
    problem = exc.problem or "invalid YAML"
    mark, context = exc.problem_mark, exc.context
    if context and exc.context_mark is not None and any(c in context for c in _OPENING_CONTEXTS):
        opened, noticed = exc.context_mark, exc.problem_mark
        what = "'['" if "sequence" in context else "'{'" if "mapping" in context else "quote"
        message = f"invalid YAML: this {what} is never closed ({context}"
        if noticed is not None:
            message += f", {problem} at line {noticed.line + 1} column {noticed.column + 1}"
        message += ")"
        return ConfigError(message, path=file, line=opened.line + 1, column=opened.column + 1)
    if mark is None:
        mark = exc.context_mark
    if context:
        problem = f"{context}, {problem}"
    return ConfigError(
        f"invalid YAML: {problem}",
        path=file,
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- provider sections --------------------------------------------------------------------------


def _voice(
    state: _State, data: dict[str, Any], registry: ProviderRegistry
) -> tuple[ProviderConfig | None, ProviderConfig | None, TurnOptions | None]:
    """The voice input sections: ``stt:``, ``vad:`` (provider sections) and ``turn:``."""
    from avatarkit.listening import TurnOptions

    doc, problems = state.doc, state.problems
    present = {key: data.get(key) is not None for key in ("stt", "vad", "turn")}
    if not present["stt"]:
        for key in ("vad", "turn"):
            if present[key]:
                problems.add(
                    _config_error(
                        f"`{key}:` is for voice input and needs an `stt:` section too "
                        f"(installed stt providers: {_names(registry, 'stt')})",
                        doc.locate((key,), key=True),
                        key,
                    )
                )
        return None, None, None
    stt = _provider(state, data, "stt", registry)[0]
    vad = _provider(state, data, "vad", registry)[0] if present["vad"] else None
    if stt is not None and not present["vad"]:
        try:
            factory = stt.spec.load_factory()  # a plugin module; SDKs load when built
        except AvatarKitError as exc:
            problems.add(_located(exc, stt.location, "stt.provider"))
        else:
            factory = getattr(factory, "__wrapped__", factory)
            # a provider that can do both says which by a `streaming` option; else its class
            streaming = stt.options.get("streaming", getattr(factory, "streaming", None))
            if streaming is False:
                problems.add(
                    _config_error(
                        f"stt provider {stt.provider!r} transcribes whole utterances and needs "
                        "a `vad:` section to find them (installed vad providers: "
                        f"{_names(registry, 'vad')})",
                        stt.location,
                        "stt",
                    )
                )
    turn = TurnOptions()
    if present["turn"]:
        validated = _validate_model(TurnOptions, data["turn"], ("turn",), state)
        turn = cast("TurnOptions", validated or turn)
    return stt, vad, turn


def _provider(
    state: _State,
    data: dict[str, Any],
    kind: Kind,
    registry: ProviderRegistry,
) -> tuple[ProviderConfig | None, Route | None]:
    """Validate one provider section; problems go to ``state`` (None if it cannot be built)."""
    doc, problems = state.doc, state.problems
    raw = data[kind]
    path: Path = (kind,)
    if isinstance(raw, str):  # shorthand: `llm: scripted`
        raw = {"provider": raw}
        name_path: Path = path
    else:
        name_path = (kind, "provider")
    if not isinstance(raw, dict):
        problems.add(
            _config_error(
                f"expected a mapping with `provider:` and its options, got {_type_name(raw)}",
                doc.locate(path),
                kind,
            )
        )
        return None, None
    options = dict(raw)
    name = options.pop("provider", None)
    if state.is_failed(name_path):
        return None, None
    if not isinstance(name, str) or not name:
        problems.add(
            _config_error(
                f"missing `provider:` (installed {kind} providers: {_names(registry, kind)})",
                doc.locate(path),
                f"{kind}.provider",
            )
        )
        return None, None
    try:
        spec = registry.get(kind, name)
    except (ProviderNotFound, PluginError) as exc:
        problems.add(_located(exc, doc.locate(name_path), f"{kind}.provider"))
        return None, None

    ok = True
    prefer: Route | None = None
    if kind == "renderer" and "prefer" in options:
        value = options.pop("prefer")
        if value not in ("text", "audio", None):
            if not state.is_failed((*path, "prefer")):
                problems.add(
                    _config_error(
                        f"expected 'text' or 'audio', got {value!r}",
                        doc.locate((*path, "prefer")),
                        "renderer.prefer",
                    )
                )
            ok = False
        else:
            prefer = cast("Route | None", value)

    secret_fields = _secret_fields(spec)
    options = _secret_scalars_as_text(options, path, spec, secret_fields, state)
    _collect_secrets(options, secret_fields, state.secrets)
    ok = _check_empty_secrets(options, path, secret_fields, state) and ok
    kwargs = _validate(spec, options, path, state)
    if kwargs is None or not ok:
        return None, prefer
    return (
        ProviderConfig(kind, name, spec, kwargs, doc.locate(path), frozenset(state.secrets)),
        prefer,
    )


def _secret_fields(spec: ProviderSpec) -> set[str]:
    if spec.options is None:
        return set()
    return {name for name, f in spec.options.model_fields.items() if _is_secret_type(f.annotation)}


def _is_secret_option(key: str, secret_fields: set[str]) -> bool:
    return key in secret_fields or bool(SECRET_KEY.search(key))


def _secret_scalars_as_text(
    options: dict[str, Any],
    path: Path,
    spec: ProviderSpec,
    secret_fields: set[str],
    state: _State,
) -> dict[str, Any]:
    """A key written unquoted (``api_key: 12345678``) is read by YAML as a number: give it back
    as the text it was written as, so it is a secret like any other and is never echoed.
    (Not for an option the provider declares as a number, such as ``max_token: 100``.)"""
    out = dict(options)
    fields = spec.options.model_fields if spec.options is not None else {}
    for key, value in options.items():
        declared = fields.get(str(key))
        if (
            isinstance(value, int | float)  # bool is an int: `token: yes` too
            and _is_secret_option(str(key), secret_fields)
            and (declared is None or _admits_text(declared.annotation))
        ):
            written = state.doc.scalar_text((*path, str(key)))
            out[key] = written if written is not None else str(value)
    return out


def _check_empty_secrets(
    options: Mapping[str, Any], path: Path, secret_fields: set[str], state: _State
) -> bool:
    """An empty key is never a working key: say so here, not as a 401 at the first turn."""
    ok = True
    for key, value in options.items():
        full = (*path, str(key))
        if not (isinstance(value, str) and not value.strip()):
            continue
        if not _is_secret_option(str(key), secret_fields) or state.is_failed(full):
            continue
        ok = False
        empty = state.empty_vars.get(full)
        if empty:
            why = f"environment variable {', '.join(empty)} is set but empty"
        else:
            why = "it is given as an empty string"
        state.problems.add(
            _config_error(
                f"{key} is empty ({why}); give the key, or leave the option out to use the "
                "provider's default",
                state.doc.locate(full),
                _dotted(full),
            )
        )
    return ok


def _validate(
    spec: ProviderSpec,
    options: dict[str, Any],
    path: Path,
    state: _State,
) -> dict[str, Any] | None:
    try:
        return spec.validate(options)
    except ValidationError as exc:
        assert spec.options is not None
        _validation_errors(
            exc, spec.options, options, path, state, f"{spec.kind} provider {spec.name!r}"
        )
        return None


def _validate_model(
    model: type[BaseModel], raw: Any, path: Path, state: _State
) -> BaseModel | None:
    if not isinstance(raw, dict):
        if not state.is_failed(path):
            state.problems.add(
                _config_error(
                    f"expected a mapping, got {_type_name(raw)}",
                    state.doc.locate(path),
                    _dotted(path),
                )
            )
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        _validation_errors(exc, model, raw, path, state, f"`{path[-1]}:`")
        return None


def _collect_secrets(
    options: Mapping[str, Any], secret_fields: set[str], secrets: set[str]
) -> None:
    """Remember raw values of secret fields, so no message can ever echo them."""
    for key, value in _walk(options):
        if isinstance(value, str) and value and _is_secret_option(key, secret_fields):
            secrets.add(value)


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)
    else:
        yield key, value


def _admits_text(annotation: Any) -> bool:
    if annotation is str or annotation is Any or _is_secret_type(annotation):
        return True
    return any(_admits_text(arg) for arg in typing.get_args(annotation))


def _is_secret_type(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType or origin is typing.Annotated:
        return any(_is_secret_type(arg) for arg in typing.get_args(annotation))
    return False


def _validation_errors(
    exc: ValidationError,
    model: type[BaseModel],
    raw: Mapping[str, Any],
    path: Path,
    state: _State,
    what: str,
) -> None:
    """One problem per field pydantic rejected, each located in the file."""
    for error in exc.errors(include_url=False):
        field_path = _data_path(raw, error["loc"], error["type"])
        full = (*path, *field_path)
        if state.is_failed(full):
            continue  # its ${...} already failed: that is the problem to report
        loc = state.doc.locate(full, key=error["type"] == "extra_forbidden")
        message = _explain(error, model, field_path, what)
        state.problems.add(_config_error(redact(message, state.secrets), loc, _dotted(full)))


def _data_path(raw: Any, loc: Iterable[int | str], error_type: str) -> Path:
    """The part of pydantic's ``loc`` that names data in the document (drops union tags)."""
    out: list[str | int] = []
    current = raw
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(current, dict) and part in current:
            out.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            out.append(part)
            current = current[part]
        elif i == len(parts) - 1 and isinstance(part, str) and error_type == "missing":
            out.append(part)
        # anything else is a union branch tag such as 'str' or 'function-after[...]'
    return tuple(out)


def _explain(error: Any, model: type[BaseModel], field_path: Path, what: str) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(field_path[-1]) if field_path else "?"
        valid = _fields_at(model, field_path[:-1])
        hint = _suggest(key, valid)
        listing = f"; valid options: {', '.join(valid)}" if valid else ""
        return f"unknown option {key!r} for {what}{hint}{listing}"
    if kind == "missing":
        expected = _annotation_at(model, field_path)
        return f"required option missing for {what}" + (
            f" (expected {expected})" if expected else ""
        )
    secret = bool(field_path) and (
        bool(SECRET_KEY.search(str(field_path[-1]))) or _field_is_secret(model, field_path)
    )
    got = "" if secret else f", got {_short(error.get('input'))}"
    return f"{error['msg']}{got}"


def _fields_at(model: type[BaseModel], path: Path) -> list[str]:
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        f = current.model_fields.get(part) if _is_model(current) else None
        current = _inner_model(f.annotation) if f is not None else None
        if current is None:
            return []
    return list(current.model_fields) if _is_model(current) else []


def _annotation_at(model: type[BaseModel], path: Path) -> str | None:
    current: Any = model
    annotation: Any = None
    for part in path:
        if isinstance(part, int):
            continue
        f = current.model_fields.get(part) if _is_model(current) else None
        if f is None:
            return None
        annotation = f.annotation
        current = _inner_model(annotation)
    if annotation is None:
        return None
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _field_is_secret(model: type[BaseModel], path: Path) -> bool:
    current: Any = model
    for i, part in enumerate(path):
        if isinstance(part, int):
            continue
        f = current.model_fields.get(part) if _is_model(current) else None
        if f is None:
            return False
        if i == len(path) - 1 or _is_secret_type(f.annotation):
            return _is_secret_type(f.annotation)
        current = _inner_model(f.annotation)
    return False


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if _is_model(annotation):
        return cast("type[BaseModel]", annotation)
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# -- routing ------------------------------------------------------------------------------------


def static_capabilities(spec: ProviderSpec) -> RendererCapabilities | None:
    """What the renderer's class can do, found without building it.

    A class factory is inspected directly; a function factory through ``__wrapped__`` or its
    return annotation. ``None`` when there is no way to tell before building.
    """
    factory = spec.load_factory()
    target: Any = inspect.unwrap(factory) if not isinstance(factory, type) else factory
    if not isinstance(target, type):
        try:
            target = typing.get_type_hints(target).get("return")
        except Exception:
            target = None
    if not isinstance(target, type):
        return None
    return renderer_capabilities(target)


def _route(
    renderer: ProviderConfig,
    caps: RendererCapabilities,
    prefer: Route | None,
    tts: ProviderConfig | None,
    registry: ProviderRegistry,
) -> Route:
    """The same decision :class:`~avatarkit.AvatarSession` makes, with file:line attached."""
    name = renderer.provider
    where = _where(renderer.location, "renderer")
    if not caps.text and not caps.audio:
        raise CapabilityError(
            f"{where}: renderer {name!r} has neither an async speak_text(text) nor an async "
            "speak(audio) method, so it cannot say anything"
        )
    if prefer == "text" and not caps.text:
        raise CapabilityError(f"{where}: prefer: text, but renderer {name!r} only speaks audio")
    if prefer == "audio" and not caps.audio:
        raise CapabilityError(f"{where}: prefer: audio, but renderer {name!r} only speaks text")
    audio = prefer == "audio" or (
        prefer is None and caps.audio and (tts is not None or not caps.text)
    )
    if audio and tts is None:
        reason = (
            f"renderer {name!r} speaks audio only"
            if not caps.text
            else f"prefer: audio for renderer {name!r}"
        )
        raise CapabilityError(
            f"{where}: {reason}, so the session needs a `tts:` section; installed TTS "
            f"providers: {_names(registry, 'tts')}"
        )
    return "audio" if audio else "text"


# -- formatting ---------------------------------------------------------------------------------


def _config_error(message: str, loc: Location, field_name: str | None) -> ConfigError:
    return ConfigError(
        message, path=loc.path, line=loc.line, column=loc.column, field=field_name or None
    )


def _where(loc: Location, field_name: str | None = None) -> str:
    where = loc.path or ""
    if loc.path is not None and loc.line is not None:
        where += f":{loc.line}"
        if loc.column is not None:
            where += f":{loc.column}"
    if field_name:
        where = f"{where}: {field_name}" if where else field_name
    return where


def _located(exc: AvatarKitError, loc: Location, field_name: str) -> AvatarKitError:
    """The same error, its message prefixed with where in the file it was triggered."""
    where = _where(loc, field_name)
    exc.args = (f"{where}: {exc.args[0] if exc.args else exc}", *exc.args[1:])
    return exc


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(registry: ProviderRegistry, kind: Kind) -> str:
    return ", ".join(registry.names(kind)) or "none installed"


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _masked(value: Any, secrets: frozenset[str] | set[str], key: str = "") -> Any:
    """A JSON/YAML-friendly copy of ``value`` with secrets replaced by ``***``."""
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, Mapping):
        return {str(k): _masked(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v, secrets, key) for v in value]
    if key and SECRET_KEY.search(key) and value is not None and value != "":
        return MASK  # whatever its type: an unquoted `api_key: 12345678` is a number
    if isinstance(value, str):
        return redact(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), secrets)
