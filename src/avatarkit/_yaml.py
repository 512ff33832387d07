"""YAML to plain Python values, remembering where in the file every value came from.

We build on PyYAML's own composer (already a dependency) rather than a round-trip library:
``compose`` turns the text into a node graph in one linear pass, gives every node a start mark
(line, column), and keeps an alias as a second reference to its anchor's node, never a copy. The
safe constructor resolves scalars (ints, bools, nulls) exactly as ``yaml.safe_load`` does.

On that graph we add what a loader for untrusted files needs and ``safe_load`` lacks:

* **No re-expansion of aliases.** Each node is turned into a value once; every alias to it shares
  that value, as ``safe_load`` does. The *expanded* size of the document (every alias counted each
  time it is used: what anything walking the result will see) is computed the same way, once per
  node, and is limited, so a few hundred bytes of nested aliases ("billion laughs") are refused in
  microseconds instead of being walked a billion times by validation.
* **Budgets** with clear errors: bytes of text, nodes, nesting depth (also after expansion), and a
  value that contains itself through an alias is refused.
* **Merge keys** (``<<: *base``, ``<<: [*a, *b]``) with the YAML 1.1 rules: keys given in the
  mapping itself override merged ones, earlier merged mappings override later ones. A key given
  twice in the mapping itself is a duplicate (PyYAML would silently keep the last).
* **Locations** are found on demand by walking the graph along a value's path, so an aliased value
  is located at its anchor without the document ever being expanded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

# PyYAML is imported inside the functions, only when a file is read: `avatarkit --help` stays light.

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "DuplicateKeyError",
    "Location",
    "Path",
    "YAMLDocument",
    "YAMLProblem",
    "parse_yaml",
]

#: Where a value sits in the document: mapping keys and sequence indexes from the root.
Path = tuple[str | int, ...]

#: Largest session file read, in bytes of UTF-8 text.
MAX_BYTES = 256_000
#: Most values (scalars, lists, mappings) a document may hold, every alias counted at every use.
MAX_VALUES = 10_000
#: Deepest nesting of lists and mappings, also after aliases are expanded.
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class Location:
    """1-based line and column of a value in a file (``path`` None for an in-memory mapping)."""

    path: str | None
    line: int | None = None
    column: int | None = None


class YAMLProblem(ValueError):
    """A document that parses but that we refuse: says where, and (if known) which value."""

    def __init__(self, message: str, location: Location, path: Path = ()) -> None:
        self.message = message
        self.location = location
        self.path = path
        super().__init__(message)


class DuplicateKeyError(YAMLProblem):
    """A mapping has the same key twice (PyYAML would silently keep the last)."""

    def __init__(self, key: str, path: Path, first: Location, second: Location) -> None:
        self.key = key
        self.first = first
        self.second = second
        super().__init__(f"duplicate key {key!r} (first given at line {first.line})", second, path)


@dataclass
class YAMLDocument:
    """A parsed document: its value, and a way to find where any value in it came from."""

    value: Any
    file: str | None
    #: Duplicate keys found (not fatal: the first value is kept so validation can go on).
    problems: list[YAMLProblem] = field(default_factory=list)
    _root: Any = None
    _entries: dict[int, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    def _node(self, path: Path) -> tuple[Any, Any, int]:
        """The deepest node along ``path``, the key node that led to it, and how far it got."""
        import yaml

        node, key_node = self._root, None
        for depth, part in enumerate(path):
            if isinstance(node, yaml.MappingNode):
                entry = self._entries.get(id(node), {}).get(str(part))
                if entry is None:
                    return node, key_node, depth
                key_node, node = entry
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                key_node, node = None, node.value[part]
            else:
                return node, key_node, depth
        return node, key_node, len(path)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The location of ``path`` (its key's, with ``key``), or of its nearest ancestor."""
        if self._root is None:
            return Location(self.file)
        node, key_node, reached = self._node(path)
        if key and reached == len(path) and key_node is not None:
            node = key_node
        return _loc(self.file, node)

    def scalar_text(self, path: Path) -> str | None:
        """The text a scalar at ``path`` was written as (``0123`` for what YAML reads as 83)."""
        import yaml

        if self._root is None:
            return None
        node, _, reached = self._node(path)
        if reached == len(path) and isinstance(node, yaml.ScalarNode):
            return str(node.value)
        return None


def parse_yaml(
    text: str,
    file: str | None,
    *,
    max_values: int = MAX_VALUES,
    max_depth: int = MAX_DEPTH,
) -> YAMLDocument:
    """Parse one YAML document.

    Raises ``yaml.YAMLError`` (syntax) or :class:`YAMLProblem` (a budget exceeded, an alias that
    contains itself, a bad merge or key); duplicate keys are listed in ``problems``.
    """
    loader = _loader_class()(text, file, max_values, max_depth)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:  # a guard: the depth budget is meant to stop this first
            raise YAMLProblem("nested too deeply", Location(file)) from None
        doc = YAMLDocument(None, file, _root=root)
        if root is not None:
            builder = _Builder(loader, doc, max_values, max_depth)
            doc.value = builder.value(root, ())
            doc._entries = builder.entries
        return doc
    finally:
        loader.dispose()


def _loc(file: str | None, node: Any) -> Location:
    mark = node.start_mark
    return Location(file, mark.line + 1, mark.column + 1)


@functools.cache
def _loader_class() -> Any:
    """The loader class, defined on first use so PyYAML is imported only then."""
    import yaml

    class _Loader(yaml.SafeLoader):
        """The safe loader, counting nodes and nesting depth while it composes."""

        def __init__(self, text: str, file: str | None, max_values: int, max_depth: int) -> None:
            super().__init__(text)
            self._file = file
            self._max_values = max_values
            self._max_depth = max_depth
            self._count = 0
            self._depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._count += 1
            self._depth += 1
            try:
                if self._count > self._max_values or self._depth > self._max_depth:
                    mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                    where = Location(self._file, mark.line + 1, mark.column + 1)
                    if self._depth > self._max_depth:
                        raise YAMLProblem(f"nested more than {self._max_depth} levels deep", where)
                    raise YAMLProblem(f"more than {self._max_values} values in one file", where)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return _Loader


class _Builder:
    """Turns the node graph into values, once per node, measuring the expanded size."""

    def __init__(self, loader: Any, doc: YAMLDocument, max_values: int, max_depth: int) -> None:
        self.loader = loader
        self.doc = doc
        self.max_values = max_values
        self.max_depth = max_depth
        self.values: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}  # expanded count, capped at max_values + 1
        self.heights: dict[int, int] = {}  # expanded nesting depth
        self.entries: dict[int, dict[str, tuple[Any, Any]]] = {}
        self.active: set[int] = set()
        self.merging: set[int] = set()
        #: Values of duplicate keys: reported, not kept, but still checked like the rest.
        self.dropped: dict[int, list[tuple[str, Any]]] = {}

    def value(self, node: Any, path: Path) -> Any:
        key = id(node)
        if key in self.values:
            return self.values[key]
        if key in self.active:
            raise YAMLProblem(
                "an alias refers to a value that contains it (a recursive structure)",
                _loc(self.doc.file, node),
                path,
            )
        self.active.add(key)
        try:
            result, size, height = self._construct(node, path)
        finally:
            self.active.discard(key)
        if height > self.max_depth:
            raise YAMLProblem(
                f"nested more than {self.max_depth} levels deep once aliases are expanded",
                _loc(self.doc.file, node),
                path,
            )
        if size > self.max_values:
            raise YAMLProblem(
                f"more than {self.max_values} values once aliases are expanded (each use of an "
                "alias counts its whole value); this looks like an alias bomb",
                _loc(self.doc.file, node),
                path,
            )
        self.values[key] = result
        self.sizes[key] = size
        self.heights[key] = height
        return result

    def _construct(self, node: Any, path: Path) -> tuple[Any, int, int]:
        import yaml

        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            size, height = 1, 0
            for name, (key_node, value_node) in self.mapping(node, path).items():
                key = self.loader.construct_object(key_node, deep=True)
                result[key] = self.value(value_node, (*path, name))
                size = min(size + self.sizes[id(value_node)], self.max_values + 1)
                height = max(height, self.heights[id(value_node)])
            for name, value_node in self.dropped.get(id(node), ()):
                self.value(value_node, (*path, name))
            return result, size, height + 1
        if isinstance(node, yaml.SequenceNode):
            items = []
            size, height = 1, 0
            for i, item in enumerate(node.value):
                items.append(self.value(item, (*path, i)))
                size = min(size + self.sizes[id(item)], self.max_values + 1)
                height = max(height, self.heights[id(item)])
            return items, size, height + 1
        return self.loader.construct_object(node, deep=True), 1, 0

    def mapping(self, node: Any, path: Path) -> dict[str, tuple[Any, Any]]:
        """The mapping's entries by key, merge keys resolved (memoized per node)."""
        key = id(node)
        if key in self.entries:
            return self.entries[key]
        if key in self.merging:
            raise YAMLProblem(
                "a merge key (<<) merges a mapping into itself", _loc(self.doc.file, node), path
            )
        self.merging.add(key)
        try:
            own: dict[str, tuple[Any, Any]] = {}
            merged: dict[str, tuple[Any, Any]] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    for source in self._merge_sources(value_node, path):
                        for name, entry in self.mapping(source, path).items():
                            merged.setdefault(name, entry)  # earlier sources win
                    continue
                name = self._key(key_node, path)
                if name in own:
                    self.doc.problems.append(
                        DuplicateKeyError(
                            name,
                            (*path, name),
                            _loc(self.doc.file, own[name][0]),
                            _loc(self.doc.file, key_node),
                        )
                    )
                    self.dropped.setdefault(key, []).append((name, value_node))
                    continue
                own[name] = (key_node, value_node)
        finally:
            self.merging.discard(key)
        entries = {**merged, **own}
        self.entries[key] = entries
        return entries

    def _merge_sources(self, value_node: Any, path: Path) -> list[Any]:
        import yaml

        if isinstance(value_node, yaml.MappingNode):
            return [value_node]
        if isinstance(value_node, yaml.SequenceNode) and all(
            isinstance(item, yaml.MappingNode) for item in value_node.value
        ):
            return list(value_node.value)
        raise YAMLProblem(
            "a merge key (<<) takes a mapping or a list of mappings, e.g. `<<: *base`",
            _loc(self.doc.file, value_node),
            path,
        )

    def _key(self, key_node: Any, path: Path) -> str:
        import yaml

        if not isinstance(key_node, yaml.ScalarNode):
            raise YAMLProblem(
                "mapping keys must be plain scalars", _loc(self.doc.file, key_node), path
            )
        return str(self.loader.construct_object(key_node, deep=True))
