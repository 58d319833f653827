"""The house: src/xpnet's parts import only what their docstring allows, nothing is imported
inside a function, there is no import circle, and no file grows past ~400 lines.

Each subpackage's ``__init__`` docstring ends with a paragraph ``Imports: ...`` naming the
parts it may import; this test reads those paragraphs, so the docstrings and the code cannot
drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "xpnet"
ROOT = SRC.parents[1]
#: At most this many entries at src/xpnet's top level (files and folders, __init__ included).
TOP_LEVEL = 12
#: No Python file of the library or the suite longer than this (lines).
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the library."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path, name: str) -> list[tuple[str, int, bool]]:
    """``(imported xpnet module, line, inside a function)`` of each import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name.split(".")[0] == "xpnet")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([base] if base else []))
                if base.split(".")[0] == "xpnet":
                    found.extend((f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base,
                                  child.lineno, in_function) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def _part(module: str) -> str:
    """The part of the house a module belongs to: ``xpnet.<part>``."""
    return ".".join(module.split(".")[:2])


def _allowed() -> dict[str, set[str]]:
    """Each subpackage's ``Imports:`` paragraph, as the parts it may import."""
    out = {}
    for name, path in MODULES.items():
        if path.name != "__init__.py" or name == "xpnet":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        match = re.search(r"^Imports:(.*?)(?:\n\n|\Z)", doc, re.M | re.S)
        assert match, f"{path}: its docstring has no 'Imports:' paragraph"
        out[name] = set(re.findall(r":mod:`(xpnet\.[a-z_.]+)`", match.group(1)))
    return out


def test_the_top_level_is_small():
    entries = [p.name for p in SRC.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= TOP_LEVEL, sorted(entries)


def test_nothing_is_imported_inside_a_function():
    hidden = [f"{path.relative_to(ROOT)}:{line} imports {target}"
              for name, path in MODULES.items()
              for target, line, inside in _imports(path, name) if inside]
    assert not hidden, "\n".join(hidden)


def test_parts_import_only_what_their_docstring_allows():
    allowed = _allowed()
    wrong = []
    for name, path in MODULES.items():
        part = _part(name)
        if part not in allowed:
            continue  # xpnet/__init__.py and xpnet.errors: the top and the bottom
        for target, line, _ in _imports(path, name):
            other = _part(target)
            if other not in (part, "xpnet", "xpnet.errors") and other not in allowed[part]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {part} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = {name: {t for t, _, _ in _imports(path, name) if t in MODULES and t not in
                    (name, "xpnet")}
             for name, path in MODULES.items() if name != "xpnet"}
    done, stack, circles = set(), [], []

    def walk(node):
        if node in stack:
            circles.append(" -> ".join([*stack[stack.index(node):], node]))
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            walk(nxt)
        stack.pop()
        done.add(node)

    for name in sorted(graph):
        walk(name)
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("folder", ["src", "experiments"])
def test_no_file_is_over_the_limit(folder):
    long = [f"{p.relative_to(ROOT)}: {n}" for p in sorted((ROOT / folder).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)
