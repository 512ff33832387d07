"""YAML to plain Python values, remembering where in the file every value came from.

We use PyYAML's composer (already a dependency) rather than a round-trip library: ``compose``
gives each node a start mark (line, column), which is all error messages need, and the safe
constructor resolves scalars (ints, bools, nulls) exactly as ``yaml.safe_load`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Location", "Path", "YAMLDocument", "parse_yaml"]

#: Where a value sits in the document: mapping keys and sequence indexes from the root.
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Location:
    """1-based line and column of a value in a file (``path`` None for an in-memory mapping)."""

    path: str | None
    line: int | None = None
    column: int | None = None


@dataclass
class YAMLDocument:
    """A parsed document: its value, and the location of every value and key in it."""

    value: Any
    file: str | None
    values: dict[Path, Location]
    keys: dict[Path, Location]

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The location of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            found = table.get(path[:end]) or self.values.get(path[:end])
            if found is not None:
                return found
        return Location(self.file)


class DuplicateKeyError(ValueError):
    """A mapping has the same key twice (PyYAML would silently keep the last)."""

    def __init__(self, key: str, path: Path, first: Location, second: Location) -> None:
        self.key = key
        self.path = path
        self.first = first
        self.second = second
        super().__init__(f"duplicate key {key!r} (first at line {first.line})")


def parse_yaml(text: str, file: str | None) -> YAMLDocument:
    """Parse one YAML document; raises ``yaml.YAMLError`` or :class:`DuplicateKeyError`."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = YAMLDocument(None, file, {}, {})
        if node is not None:
            doc.value = _build(loader, node, (), doc)
        return doc
    finally:
        loader.dispose()


def _loc(doc: YAMLDocument, node: Any) -> Location:
    mark = node.start_mark
    return Location(doc.file, mark.line + 1, mark.column + 1)


def _build(loader: Any, node: Any, path: Path, doc: YAMLDocument) -> Any:
    import yaml

    doc.values[path] = _loc(doc, node)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain scalars", key_node.start_mark
                )
            child = (*path, str(key))
            if key in result:
                raise DuplicateKeyError(str(key), child, doc.keys[child], _loc(doc, key_node))
            doc.keys[child] = _loc(doc, key_node)
            result[key] = _build(loader, value_node, child, doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
