"""A renderer's capabilities read from its source, without importing it.

``avatarkit providers`` lists every renderer's capabilities; importing each renderer class would
import its SDK (PyAV, LiveKit, httpx-ws...) just to print a table. For a factory registered as
``"module:Class"`` whose class defines its methods in its own body, the answer is in the source:
the ``async def speak_text`` / ``async def speak`` there (the same rule as
:func:`avatarkit.providers.renderer_capabilities`). Anything less certain returns None and the
caller imports the class as before.
"""

from __future__ import annotations

import ast
import importlib.util

from avatarkit.providers import RendererCapabilities

__all__ = ["capabilities_from_source"]

_PLAIN_BASES = {"object"}


def capabilities_from_source(factory: str) -> RendererCapabilities | None:
    """Capabilities of the class ``factory`` (``"module:Class"``) found in its module's source,
    or None when the source cannot tell for sure (a base class might add a method, the module
    is not plain Python source, the attribute is not a class defined there)."""
    module, _, attr = factory.partition(":")
    if not attr or "." in attr:
        return None
    try:
        spec = importlib.util.find_spec(module)  # imports parent packages, not the module
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    try:
        with open(spec.origin, encoding="utf-8") as source:
            tree = ast.parse(source.read(), spec.origin)
    except (OSError, SyntaxError, ValueError):
        return None
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == attr]
    if len(classes) != 1 or any(_rebinds(n, attr) for n in tree.body if n is not classes[0]):
        return None
    cls = classes[0]
    if cls.decorator_list:
        return None  # a decorator may replace the class
    async_defs = {n.name for n in cls.body if isinstance(n, ast.AsyncFunctionDef)}
    other_defs = {
        target.id
        for n in cls.body
        if isinstance(n, ast.Assign | ast.AnnAssign | ast.FunctionDef)
        for target in ([ast.Name(n.name)] if isinstance(n, ast.FunctionDef) else _assigned_names(n))
    }
    if other_defs & {"speak", "speak_text"}:
        return None  # bound some other way than `async def`: let the import decide
    text, audio = "speak_text" in async_defs, "speak" in async_defs
    plain = all(isinstance(b, ast.Name) and b.id in _PLAIN_BASES for b in cls.bases)
    if not (text and audio) and (not plain or cls.keywords):
        return None  # a base class (or metaclass) could add the missing one
    return RendererCapabilities(text=text, audio=audio)


def _assigned_names(node: ast.Assign | ast.AnnAssign) -> list[ast.Name]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t for t in targets if isinstance(t, ast.Name)]


def _rebinds(node: ast.stmt, name: str) -> bool:
    """Whether a top-level statement other than the class rebinds its name."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Store):
            return True
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
            sub.name == name
        ):
            return True
        if isinstance(sub, ast.alias) and (sub.asname or sub.name) == name:
            return True
    return False
