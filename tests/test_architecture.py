"""The import graph: acyclic, and every import allowed by the "May import" line of its package.

Every import counts, the ones under ``TYPE_CHECKING`` and inside functions included: a lazy
import is still a dependency.  The declared lines live in each package's ``__init__`` docstring,
so the documentation of the layers and the layers themselves cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hostinfo", "proxy")
_MAY = re.compile(r"^May import: (.*?)(?:\n\n|\Z)", re.MULTILINE | re.DOTALL)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts as a.b.c when that is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]  # fmt: skip
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


def _component(module: str, modules: dict[str, Path]) -> str:
    """What a "May import" line speaks for: a sub-package (``proxy.storage``, ``proxy.storage.s3``)
    with all its modules, a module directly in ``proxy`` (``proxy.errors``), or ``hostinfo``."""
    if module.split(".")[0] == "hostinfo":
        return "hostinfo"
    if modules[module].name == "__init__.py" or module.count(".") == 1:
        return module
    return module.rpartition(".")[0]


def _declared(component: str, modules: dict[str, Path]) -> list[str]:
    doc = ast.get_docstring(ast.parse(modules[component].read_text())) or ""
    m = _MAY.search(doc)
    assert m, f"{component} says in a 'May import:' line of its docstring what it may import"
    text = m.group(1).strip().rstrip(".")
    return [] if text.startswith("nothing") else [p.strip() for p in text.replace("\n", " ").split(",")]


def _allowed(importer: str, imported: str, modules: dict[str, Path]) -> bool:
    component = _component(importer, modules)
    if component == "proxy":
        return True  # the top package's docstring describes the layers; it imports nothing itself
    if imported == component or imported.startswith(component + "."):
        return True
    return any(imported == a or imported.startswith(a + ".") for a in _declared(component, modules))


def test_every_import_is_declared_by_its_package() -> None:
    modules = _modules()
    known = set(modules)
    wrong = [
        f"{m} imports {i}"
        for m, path in modules.items()
        for i in sorted(_imports(path, known))
        if i in known and not _allowed(m, i, modules)
    ]
    assert not wrong, "imports outside the declared layers:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    modules = _modules()
    known = set(modules)
    graph = {m: {i for i in _imports(p, known) if i in known and i != m} for m, p in modules.items()}
    # a package's __init__ re-exporting from its own modules is not a cycle through them
    for m in graph:
        if modules[m].name == "__init__.py":
            graph[m] = {i for i in graph[m] if not i.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(n) :], n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The rule can fail: an upward import (storage importing the HTTP edge) is refused."""
    modules = _modules()
    assert not _allowed("proxy.storage.files", "proxy.http.handlers", modules)
    assert not _allowed("proxy.oci.resolve", "proxy.config", modules)
    assert not _allowed("proxy.errors", "proxy.oci.names", modules)
    assert not _allowed("proxy.storage.files", "proxy.registry.client", modules)
    assert not _allowed("hostinfo.platform", "proxy.errors", modules)
    assert _allowed("proxy.pull.blobs", "proxy.storage.base", modules)
