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
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr, ValidationError

from avatarkit._yaml import DuplicateKeyError, Location, Path, YAMLDocument, parse_yaml
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
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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

    Imports each renderer's factory (to learn its capabilities) but performs no I/O.
    """
    doc = _read(source)
    env = os.environ if env is None else env
    secrets: set[str] = set()
    data = _interpolate(doc.value, (), doc, env, secrets)
    if data is None:
        raise ConfigError(
            "the session is empty; it needs at least `llm:` and `renderer:`", path=doc.file
        )
    if not isinstance(data, dict):
        raise _config_error(
            f"a session is a mapping of sections, got {_type_name(data)}", doc.locate(()), None
        )
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise _config_error(
                f"unknown top-level key {key!r}{_suggest(str(key), TOP_LEVEL_KEYS)}; "
                f"valid keys: {', '.join(TOP_LEVEL_KEYS)}",
                doc.locate((str(key),), key=True),
                str(key),
            )
    registry = default_registry() if registry is None else registry

    system_prompt = data.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise _config_error(
            f"expected text, got {_type_name(system_prompt)}",
            doc.locate(("system_prompt",)),
            "system_prompt",
        )
    for kind in ("llm", "renderer"):
        if data.get(kind) is None:
            raise _config_error(
                f"missing required section `{kind}:` (installed {kind} providers: "
                f"{_names(registry, kind)})",
                doc.locate(()),
                None,
            )
    llm, _ = _provider(doc, data, "llm", registry, secrets)
    renderer, prefer = _provider(doc, data, "renderer", registry, secrets)
    tts = _provider(doc, data, "tts", registry, secrets)[0] if data.get("tts") is not None else None

    try:
        capabilities = static_capabilities(renderer.spec)
    except AvatarKitError as exc:
        raise _located(exc, renderer.location, "renderer.provider") from None
    route = None
    if capabilities is not None:
        route = _route(renderer, capabilities, prefer, tts, registry)

    stt, vad, turn = _voice(doc, data, registry, secrets)
    session_raw = data.get("session") or {}
    session_options = cast(
        "SessionOptions", _validate_model(SessionOptions, session_raw, ("session",), doc, secrets)
    )
    frozen = frozenset(secrets)  # every provider redacts every secret of the session
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


# -- reading and interpolation ------------------------------------------------------------------


def _read(source: Source) -> YAMLDocument:
    if isinstance(source, Mapping):
        return _document_from_mapping(source)
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            f"a session is a YAML file path or a mapping, got {type(source).__name__}"
        )
    file = os.fspath(source)
    try:
        text = FilePath(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=file) from None
    import yaml

    try:
        return parse_yaml(text, file)
    except DuplicateKeyError as exc:
        raise _config_error(
            f"duplicate key {exc.key!r} (first given at line {exc.first.line})",
            exc.second,
            _dotted(exc.path),
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise ConfigError(
            f"invalid YAML: {problem}",
            path=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=file) from None


def _document_from_mapping(mapping: Mapping[str, Any]) -> YAMLDocument:
    return YAMLDocument(value=_plain(mapping), file=None, values={}, keys={})


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _interpolate(
    value: Any, path: Path, doc: YAMLDocument, env: Mapping[str, str], secrets: set[str]
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, str(k)), doc, env, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), doc, env, secrets) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    key_is_secret = any(isinstance(p, str) and SECRET_KEY.search(p) for p in path[-1:])

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                raise _config_error(
                    f"environment variable {name} is not set (use ${{{name}:-default}} "
                    "to give a default)",
                    doc.locate(path),
                    _dotted(path),
                )
            found = default
        if found and (key_is_secret or SECRET_KEY.search(name)):
            secrets.add(found)
        return found

    result = _INTERPOLATION.sub(substitute, value)
    leftover = _INTERPOLATION.sub("", value)
    if "${" in leftover:
        raise _config_error(
            "malformed ${...}: write ${NAME} or ${NAME:-default} (NAME: letters, digits, _), "
            "or $${ for a literal ${",
            doc.locate(path),
            _dotted(path),
        )
    return result


# -- provider sections --------------------------------------------------------------------------


def _voice(
    doc: YAMLDocument, data: dict[str, Any], registry: ProviderRegistry, secrets: set[str]
) -> tuple[ProviderConfig | None, ProviderConfig | None, TurnOptions | None]:
    """The voice input sections: ``stt:``, ``vad:`` (provider sections) and ``turn:``."""
    from avatarkit.listening import TurnOptions

    present = {key: data.get(key) is not None for key in ("stt", "vad", "turn")}
    if not present["stt"]:
        for key in ("vad", "turn"):
            if present[key]:
                raise _config_error(
                    f"`{key}:` is for voice input and needs an `stt:` section too "
                    f"(installed stt providers: {_names(registry, 'stt')})",
                    doc.locate((key,), key=True),
                    key,
                )
        return None, None, None
    stt, _ = _provider(doc, data, "stt", registry, secrets)
    vad = _provider(doc, data, "vad", registry, secrets)[0] if present["vad"] else None
    if vad is None:
        try:
            factory = stt.spec.load_factory()  # a plugin module; SDKs load when built
        except AvatarKitError as exc:
            raise _located(exc, stt.location, "stt.provider") from None
        factory = getattr(factory, "__wrapped__", factory)
        # a provider that can do both says which by a `streaming` option; else by its class
        streaming = stt.options.get("streaming", getattr(factory, "streaming", None))
        if streaming is False:
            raise _config_error(
                f"stt provider {stt.provider!r} transcribes whole utterances and needs a "
                f"`vad:` section to find them (installed vad providers: "
                f"{_names(registry, 'vad')})",
                stt.location,
                "stt",
            )
    turn = cast(
        "TurnOptions",
        _validate_model(TurnOptions, data.get("turn") or {}, ("turn",), doc, secrets),
    )
    return stt, vad, turn


def _provider(
    doc: YAMLDocument,
    data: dict[str, Any],
    kind: Kind,
    registry: ProviderRegistry,
    secrets: set[str],
) -> tuple[ProviderConfig, Route | None]:
    raw = data[kind]
    path: Path = (kind,)
    if isinstance(raw, str):  # shorthand: `llm: scripted`
        raw = {"provider": raw}
        name_path: Path = path
    else:
        name_path = (kind, "provider")
    if not isinstance(raw, dict):
        raise _config_error(
            f"expected a mapping with `provider:` and its options, got {_type_name(raw)}",
            doc.locate(path),
            kind,
        )
    options = dict(raw)
    name = options.pop("provider", None)
    if not isinstance(name, str) or not name:
        raise _config_error(
            f"missing `provider:` (installed {kind} providers: {_names(registry, kind)})",
            doc.locate(path),
            f"{kind}.provider",
        )
    try:
        spec = registry.get(kind, name)
    except (ProviderNotFound, PluginError) as exc:
        raise _located(exc, doc.locate(name_path), f"{kind}.provider") from None

    prefer: Route | None = None
    if kind == "renderer" and "prefer" in options:
        value = options.pop("prefer")
        if value not in ("text", "audio", None):
            raise _config_error(
                f"expected 'text' or 'audio', got {value!r}",
                doc.locate((*path, "prefer")),
                "renderer.prefer",
            )
        prefer = cast("Route | None", value)

    _collect_secrets(options, spec, secrets)
    kwargs = _validate(spec, options, path, doc, secrets)
    return (
        ProviderConfig(kind, name, spec, kwargs, doc.locate(path), frozenset(secrets)),
        prefer,
    )


def _validate(
    spec: ProviderSpec,
    options: dict[str, Any],
    path: Path,
    doc: YAMLDocument,
    secrets: set[str],
) -> dict[str, Any]:
    try:
        return spec.validate(options)
    except ValidationError as exc:
        assert spec.options is not None
        raise _validation_error(
            exc, spec.options, options, path, doc, secrets, f"{spec.kind} provider {spec.name!r}"
        ) from None


def _validate_model(
    model: type[BaseModel], raw: Any, path: Path, doc: YAMLDocument, secrets: set[str]
) -> BaseModel:
    if not isinstance(raw, dict):
        raise _config_error(
            f"expected a mapping, got {_type_name(raw)}", doc.locate(path), _dotted(path)
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, model, raw, path, doc, secrets, f"`{path[-1]}:`") from None


def _collect_secrets(options: Mapping[str, Any], spec: ProviderSpec, secrets: set[str]) -> None:
    """Remember raw values of secret fields, so no message can ever echo them."""
    secret_fields = set()
    if spec.options is not None:
        secret_fields = {
            name for name, f in spec.options.model_fields.items() if _is_secret_type(f.annotation)
        }
    for key, value in _walk(options):
        if isinstance(value, str) and value and (key in secret_fields or SECRET_KEY.search(key)):
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


def _is_secret_type(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType or origin is typing.Annotated:
        return any(_is_secret_type(arg) for arg in typing.get_args(annotation))
    return False


def _validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    raw: Mapping[str, Any],
    path: Path,
    doc: YAMLDocument,
    secrets: set[str],
    what: str,
) -> ConfigError:
    problems: list[tuple[Location, str, str]] = []
    for error in exc.errors(include_url=False):
        field_path = _data_path(raw, error["loc"], error["type"])
        full = (*path, *field_path)
        loc = doc.locate(full, key=error["type"] == "extra_forbidden")
        problems.append((loc, _dotted(full), _explain(error, model, field_path, what)))
    loc, field_name, message = problems[0]
    for other_loc, other_field, other_message in problems[1:]:
        message += f"\n  {_where(other_loc, other_field)}: {other_message}"
    return _config_error(redact(message, secrets), loc, field_name)


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
        (isinstance(error.get("input"), str) and SECRET_KEY.search(str(field_path[-1])))
        or _field_is_secret(model, field_path)
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
    if isinstance(value, str):
        return MASK if value and key and SECRET_KEY.search(key) else redact(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), secrets)
