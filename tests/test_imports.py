"""The import graph of the library: no cycle, layers only downward, no private names across modules.

Every module of ``dsi/``, ``docid/`` and ``trie/`` is read as source (nothing is imported), and
every import in it counts, wherever it stands: at the top, inside a function, or as a string
handed to ``importlib.import_module`` / ``__import__``.

Layers, lowest first: ``docid`` (identifiers, and the atomic file writes every layer uses),
``trie`` (decoding constraints over identifier tokens), ``dsi`` (models, indexes, retrieval,
serving, the command line). A module may import its own layer and those below it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("docid", "trie", "dsi")
DYNAMIC_IMPORTS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    how: str  # "import", "function-level import" or "string import"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for layer in LAYERS
        for path in sorted((REPO / layer).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _ours(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is one of our modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _absolute(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _function_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes that stand inside a function body."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(child) for child in ast.walk(node) if child is not node)
    return inside


def imports_of(source: str, path: Path, modules: dict[str, Path]) -> Iterator[Edge]:
    """Every import edge from ``source`` to another of our modules, with its line and kind."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    in_function = _function_nodes(tree)
    dynamic_with_variable = False
    for node in ast.walk(tree):
        how = "function-level import" if id(node) in in_function else "import"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if target := _ours(alias.name, modules):
                    yield Edge(source, target, node.lineno, how)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, source, is_package)
            for alias in node.names:
                target = _ours(f"{base}.{alias.name}", modules) or _ours(base, modules)
                if target:
                    yield Edge(source, target, node.lineno, how)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC_IMPORTS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    if target := _ours(first.value, modules):
                        yield Edge(source, target, node.lineno, "string import")
                else:
                    dynamic_with_variable = True
    if dynamic_with_variable:
        # The module imports a name it computes: any of our module names it spells may be it.
        # Dotted names only: a bare "docid" is as often a JSON field as the package.
        for node in ast.walk(tree):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and "." in value and value in modules and value != source:
                yield Edge(source, value, node.lineno, "string import")


def private_uses(source: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Imports of another module's _private names, and ``module._private`` through an import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.asname:
                    module_aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, source, is_package)
            if not _ours(base, modules):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    module_aliases[alias.asname or alias.name] = full
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"{source}:{node.lineno} imports {base}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            owner = module_aliases[node.value.id]
            if owner != source:
                yield f"{source}:{node.lineno} uses {owner}.{node.attr}"


def import_graph() -> tuple[dict[str, Path], list[Edge]]:
    modules = library_modules()
    edges = {
        edge
        for name, path in modules.items()
        for edge in imports_of(name, path, modules)
        if edge.target != name
    }
    return modules, sorted(edges, key=lambda e: (e.source, e.target, e.line))


def cycles(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    succ: dict[str, set[str]] = {n: set() for n in nodes}
    for edge in edges:
        succ[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The walker itself: top-level, function-level, relative and string imports all count."""
    (tmp_path / "a.py").write_text(
        "import importlib\nfrom b import x\n"
        "def f():\n    import c\n    importlib.import_module('d')\n"
        "NAMES = {'e': 'x.e', 'f': 'f'}\n"
        "def g(n):\n    return importlib.import_module(NAMES[n])\n"
    )
    modules = {name: tmp_path / f"{name}.py" for name in ("a", "b", "c", "d", "x.e", "f")}
    edges = {(e.target, e.how) for e in imports_of("a", modules["a"], modules)}
    assert edges == {
        ("b", "import"),
        ("c", "function-level import"),
        ("d", "string import"),
        ("x.e", "string import"),
    }
    found = cycles(["a", "b", "c"], [Edge("a", "b", 1, ""), Edge("b", "a", 1, "")])
    assert found == [["a", "b"]]
    (tmp_path / "p.py").write_text("from a import _hidden\nimport a as m\nm._other()\n")
    uses = list(private_uses("p", tmp_path / "p.py", modules))
    assert uses == ["p:1 imports a._hidden", "p:3 uses a._other"]


def test_no_import_cycle():
    modules, edges = import_graph()
    found = cycles(list(modules), edges)
    detail = [
        f"{e.source} -> {e.target} (line {e.line}, {e.how})"
        for component in found
        for e in edges
        if e.source in component and e.target in component
    ]
    assert not found, "import cycles among " + str(found) + ":\n" + "\n".join(detail)


def test_lower_layers_never_import_upward():
    _, edges = import_graph()
    upward = [
        f"{e.source} -> {e.target} (line {e.line}, {e.how})"
        for e in edges
        if _layer(e.target) > _layer(e.source)
    ]
    assert not upward, "imports into a higher layer:\n" + "\n".join(upward)


def test_no_module_uses_another_modules_private_names():
    modules = library_modules()
    found = [use for name, path in modules.items() for use in private_uses(name, path, modules)]
    assert not found, "private names used across modules:\n" + "\n".join(found)
