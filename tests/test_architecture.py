"""ARCHITECTURE.md kept true: the direction of imports between the packages of
`retention`, and no import cycles between its modules.

Every import statement counts, wherever it is: at the top of a module or inside a
function (a lazy import is still a dependency, and still a cycle when it runs). An
import under `if TYPE_CHECKING:` counts for the direction between packages (the
annotation still names the other package) but not for cycles: it never runs.

The rules are written per package, not per module, so that moving a module inside
its package needs no change here. Two short lists record what is known to break
them today; each must shrink, never grow: a new entry fails, and so does an entry
that no longer holds (delete it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "retention"

# Each package (a sub-package, or a top-level module) and its layer: a module may
# import its own package and any package of a lower layer, never a higher or an equal
# one. A top-level module not listed is a shared leaf (as `durable` is): layer 1.
LAYERS: dict[str, int] = {
    "retention": 0,  # the package itself: __version__
    "errors": 0,  # exit codes and the errors a user sees
    "defaults": 0,  # the run options' defaults
    "timestamps": 0,  # RFC 3339 text, naive-to-UTC
    "log": 1,
    "settings": 1,
    "durable": 1,
    "api": 2,  # the Cartesia API: models, client, limiter
    "policy": 3,  # the rules and the engine: a pure function of policies and a call
    "sandbox": 3,  # a fake Cartesia API for tests and the demo
    "audit": 4,  # the audit log: writing, reading, verifying, evidence
    "plan": 5,  # reviewed plans: plan, apply, proof
    "run": 6,  # one run: pipeline, journal, recovery, control, reports
    "demo": 8,
    "cli": 9,
    "__main__": 10,
}
LEAF_LAYER = 1
# A command module (`command.py`, `commands.py`, `*_command.py`) is the CLI's glue for
# its package: it sits above every package, below the CLI, and may use another command.
COMMAND_LAYER = 7
# Only the top may reach the sandbox: nothing that runs against the real API imports it.
SANDBOX_USERS = frozenset({"cli", "demo"})

# Imports against the layers today, (importer, imported): audit reaching up into
# run's helpers. Moving those helpers down (for example into audit or a shared
# module) removes the entries.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()
# Import cycles between modules today, each closed by a lazy import.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    runs: bool  # False under `if TYPE_CHECKING:`
    line: int


def module_name(path: Path) -> str:
    parts = ["retention", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules of ours an import statement loads (`from a import b`: a.b if it is a
    module, else a)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.split(".")[0] == "retention")
        return
    if node.level or node.module is None or node.module.split(".")[0] != "retention":
        assert not node.level, "relative imports are not used"
        return
    for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        yield sub if sub in MODULES else node.module


def imports() -> list[Import]:
    found: list[Import] = []
    for name, path in MODULES.items():

        def visit(node: ast.AST, runs: bool, name: str = name) -> None:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.extend(Import(name, t, runs, node.lineno) for t in _targets(node))
            for child in ast.iter_child_nodes(node):
                inside = isinstance(node, ast.If) and _type_checking(node) and child in node.body
                visit(child, runs and not inside)

        visit(ast.parse(path.read_text(), str(path)), True)
    return found


IMPORTS = imports()


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "retention"


def is_command(module: str) -> bool:
    stem = module.rsplit(".", 1)[-1]
    return stem in ("command", "commands") or stem.endswith("_command")


def layer(module: str) -> int:
    if is_command(module):
        return COMMAND_LAYER
    name = package(module)
    if name in LAYERS:
        return LAYERS[name]
    assert (ROOT / f"{name}.py").exists(), f"new package retention.{name}: give it a layer"
    return LEAF_LAYER


def test_imports_go_down_the_layers() -> None:
    upward = {
        (i.importer, i.imported)
        for i in IMPORTS
        if package(i.importer) != package(i.imported)
        and layer(i.imported) >= layer(i.importer)
        and not (is_command(i.importer) and is_command(i.imported))
    }
    assert upward - KNOWN_UPWARD == set(), "imports against ARCHITECTURE.md's layers"
    assert KNOWN_UPWARD - upward == set(), "fixed: delete these from KNOWN_UPWARD"


def test_only_the_top_imports_the_sandbox() -> None:
    users = {
        i.importer
        for i in IMPORTS
        if package(i.imported) == "sandbox" and package(i.importer) != "sandbox"
    }
    assert {package(m) for m in users} <= SANDBOX_USERS, sorted(users)


def cycles(edges: set[tuple[str, str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b in edges:
        if a != b:
            graph[a].add(b)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def connect(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        for w in graph[v]:
            if w not in order:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = {stack.pop()}
            while v not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.add(frozenset(component))

    for v in graph:
        if v not in order:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_it() -> None:
    a, b, c = sorted(MODULES)[:3]
    assert cycles({(a, b), (b, a), (b, c)}) == {frozenset({a, b})}
    assert cycles({(a, b), (b, c)}) == set()


def test_no_import_cycles_between_modules() -> None:
    found = cycles({(i.importer, i.imported) for i in IMPORTS if i.runs})
    assert found - KNOWN_CYCLES == set(), "new import cycles"
    assert KNOWN_CYCLES - found == set(), "fixed: delete these from KNOWN_CYCLES"


def test_every_import_of_ours_names_a_module_that_exists() -> None:
    """A check on the parsing itself: a typo here would hide an edge."""
    assert IMPORTS and {i.imported for i in IMPORTS} <= set(MODULES)
