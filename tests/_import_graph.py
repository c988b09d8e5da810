"""Which modules of its own package a module imports, read from its source: every
``from .module import name``, at the top, in a function or under TYPE_CHECKING alike."""

from __future__ import annotations

import ast
from pathlib import Path


def sibling_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each name the module at `path` imports from its own package."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                if node.module is None:  # from . import module
                    found.append((alias.name, ""))
                else:
                    found.append((node.module.split(".")[0], alias.name))
    return found


def upward_or_private(package: Path, order: list[str]) -> list[str]:
    """What breaks `order` (top first) among `package`'s modules: an import of a module
    above, or of the module itself, or of a name starting with an underscore."""
    problems: list[str] = []
    for rank, module in enumerate(order):
        for target, name in sibling_imports(package / f"{module}.py"):
            if target in order and order.index(target) <= rank:
                problems.append(f"{module} imports {name or target} from {target}, above it")
            if name.startswith("_"):
                problems.append(f"{module} imports the private {name} from {target}")
    return problems
