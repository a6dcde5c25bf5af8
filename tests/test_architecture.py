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


STORE_CLASSES = {"Store", "FileStore", "MemoryStore", "S3Store", "TagIndex", "TagRecords", "SharedTags", "Bucket"}
"""What only storage and the wiring (``http.app``, the factory) construct or reach into."""
EDGE_WORDS = re.compile(r"thread|transport|socket|sendfile", re.IGNORECASE)
"""What the pull services must not name: how bytes move is the registry's and the edge's."""


def edge_violations(source: str) -> list[str]:
    """A handler module that imports a store class or reads a service's ``store`` attribute."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("proxy.storage"):
            found += [f"imports {a.name}" for a in node.names if a.name in STORE_CLASSES]
        elif isinstance(node, ast.Attribute) and node.attr == "store":
            found.append("reads .store")
    return found


def pull_violations(source: str) -> list[str]:
    """Names in a pull module that speak of threads, transports or sockets (docstrings may)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                                                    else [])  # fmt: skip
        found += [n for n in names if EDGE_WORDS.search(n)]
    return found


def test_handlers_only_speak_http_and_pull_knows_nothing_of_threads() -> None:
    wrong = []
    for path in sorted((ROOT / "proxy" / "http").glob("*.py")):
        if path.name not in ("app.py", "__init__.py"):  # app.py wires the stores into the services
            wrong += [f"{path.name}: {v}" for v in edge_violations(path.read_text())]
    for path in sorted((ROOT / "proxy" / "pull").glob("*.py")):
        wrong += [f"pull/{path.name}: {v}" for v in pull_violations(path.read_text())]
    assert not wrong, "\n".join(wrong)


def test_the_edge_checkers_see_a_violation() -> None:
    assert edge_violations("from proxy.storage.files import FileStore\n") == ["imports FileStore"]
    assert edge_violations("def f(s):\n    return s.blobs.store.locate(1)\n") == ["reads .store"]
    assert pull_violations("import threading\n") == ["threading"]
    assert pull_violations("def f(transport):\n    pass\n") == ["transport"]
    assert pull_violations('"""threads are fine in prose"""\n') == []


def test_no_module_over_400_lines_in_proxy() -> None:
    long = [f"{p.relative_to(ROOT)}: {n}" for p in sorted((ROOT / "proxy").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400]  # fmt: skip
    assert not long, long


def test_no_import_cycle_in_bench() -> None:
    """bench/'s sections import the shared parts (``bench.servers``), never each other's module back."""
    modules = {f"bench.{p.stem}": p for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not cycles, f"import cycles through {cycles}: {graph}"


def test_the_client_credential_is_set_in_its_two_documented_places_only() -> None:
    """``CLIENT_CREDENTIAL`` is action at a distance: who sets it is fixed (see
    ``proxy/registry/credentials.py``), and who reads it too."""
    setters, readers = set(), set()
    for path in sorted((ROOT / "proxy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            if named and node.value.id == "CLIENT_CREDENTIAL":  # type: ignore[attr-defined]
                (setters if node.attr in ("set", "reset") else readers).add(  # type: ignore[attr-defined]
                    str(path.relative_to(ROOT))
                )
    assert setters == {"proxy/http/handlers.py", "proxy/pull/access.py"}, setters
    assert readers == {"proxy/registry/auth.py"}, readers
