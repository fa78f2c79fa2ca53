"""The top-level packages form an acyclic graph with only the intended edges (issue 12).

Every ``.py`` file of ``agent/``, ``backoffice/``, ``drivers/``, ``protocol/`` and
``simulator/`` is parsed with :mod:`ast`; every import counts — at module level,
inside functions, under ``TYPE_CHECKING`` and string calls
``importlib.import_module("posedge.…")`` — relative imports included. The modules
collapse into a package-level graph, which must be acyclic and contain only the
edges of :data:`ALLOWED_EDGES`. Plug-ins go the other way through entry points
(``posedge.commands``, ``posedge.simulation``, ``posedge.transports`` in pyproject),
so a package that loads another's code by entry point does not depend on it.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "backoffice", "drivers", "protocol", "simulator")
"""The top-level folders, installed as ``posedge.<folder>``."""

ALLOWED_EDGES: dict[tuple[str, str], str] = {
    ("drivers", "protocol"): "unused today; the drivers may share wire-level definitions",
    ("agent", "drivers"): "the agent runs the printer and the card reader",
    ("agent", "protocol"): "the agent is the sync protocol's client",
    ("backoffice", "protocol"): "the back office is the sync protocol's server",
    ("backoffice", "agent"): "shared product logic: the card-data guard, the CLI helpers "
    "and the journal projection the reconciliation replays",
    ("simulator", "agent"): "the simulated world plugs into the agent (posedge.simulation)",
    ("simulator", "backoffice"): "fault injection wraps the product back office",
    ("simulator", "drivers"): "virtual devices speak the drivers' transports",
    ("simulator", "protocol"): "the fleet load simulator speaks the sync protocol",
}
"""Every package-level edge allowed, importer → imported, with why it exists. Anything
else — agent → backoffice/simulator, drivers → agent/backoffice/simulator, protocol →
anything, backoffice → simulator — fails the test."""

Graph = dict[str, set[str]]
Edges = dict[tuple[str, str], list[str]]
"""Package edge → the importing modules (``file: imported module``), for the messages."""


def module_name(path: Path, root: Path) -> str:
    """``root/agent/cli/run.py`` → ``posedge.agent.cli.run`` (packages: their ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["posedge", *parts])


def imported_modules(source: str, module: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of everything ``source`` (the code of ``module``) imports."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if package_of(target) is not None:
                yield node.lineno, target
            else:  # ``from posedge import simulator``, ``from .. import simulator``
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and _is_import_module_call(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _is_import_module_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):  # importlib.import_module(…)
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def package_of(module: str) -> str | None:
    """``posedge.agent.cli`` → ``agent``; None for anything not one of our packages."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "posedge" and parts[1] in PACKAGES:
        return parts[1]
    return None


def package_edges(sources: Mapping[str, tuple[str, bool]]) -> Edges:
    """The package-level edges of ``{module: (source, is_package)}``, self-loops dropped."""
    edges: Edges = {}
    for module, (source, is_package) in sorted(sources.items()):
        importer = package_of(module)
        if importer is None:
            continue
        for line, target in imported_modules(source, module, is_package=is_package):
            imported = package_of(target)
            if imported is not None and imported != importer:
                where = f"{module}:{line} imports {target}"
                found = edges.setdefault((importer, imported), [])
                if where not in found:
                    found.append(where)
    return edges


def graph_of(edges: Iterable[tuple[str, str]]) -> Graph:
    graph: Graph = {}
    for importer, imported in edges:
        graph.setdefault(importer, set()).add(imported)
        graph.setdefault(imported, set())
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as a path ``[a, b, …, a]``, or None when the graph is acyclic."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, WHITE) == GREY:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt, WHITE) == WHITE:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def check_graph(edges: Edges, allowed: Mapping[tuple[str, str], str]) -> list[str]:
    """Every problem of the graph, as messages naming the modules at fault; [] when fine."""
    problems: list[str] = []
    cycle = find_cycle(graph_of(edges))
    if cycle is not None:
        steps = []
        for importer, imported in itertools.pairwise(cycle):
            steps.append(f"  {importer} → {imported} ({edges[(importer, imported)][0]})")
        problems.append("import cycle " + " → ".join(cycle) + ":\n" + "\n".join(steps))
    for (importer, imported), where in sorted(edges.items()):
        if (importer, imported) not in allowed:
            problems.append(
                f"forbidden edge {importer} → {imported}:\n"
                + "\n".join(f"  {line}" for line in where)
            )
    return problems


def repository_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    sources: dict[str, tuple[str, bool]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            sources[module_name(path, root)] = (
                path.read_text(encoding="utf-8"),
                path.name == "__init__.py",
            )
    return sources


@pytest.fixture(scope="module")
def edges() -> Edges:
    return package_edges(repository_sources())


# ---- the repository -----------------------------------------------------------
def test_every_package_is_parsed() -> None:
    sources = repository_sources()
    for package in PACKAGES:
        assert f"posedge.{package}" in sources
    assert len(sources) > 50


def test_the_package_graph_is_acyclic(edges: Edges) -> None:
    cycle = find_cycle(graph_of(edges))
    assert cycle is None, check_graph(edges, ALLOWED_EDGES)[0]


def test_only_allowed_edges(edges: Edges) -> None:
    problems = check_graph(edges, ALLOWED_EDGES)
    assert not problems, "\n".join(problems)


def test_protocol_imports_nothing_of_ours(edges: Edges) -> None:
    assert not [edge for edge in edges if edge[0] == "protocol"], {
        edge: where for edge, where in edges.items() if edge[0] == "protocol"
    }


def test_the_allowed_edges_are_acyclic() -> None:
    assert find_cycle(graph_of(ALLOWED_EDGES)) is None


# ---- the checker itself -------------------------------------------------------
def _fake(**modules: str) -> dict[str, tuple[str, bool]]:
    return {name.replace("__", "."): (source, False) for name, source in modules.items()}


def test_checker_sees_every_kind_of_import() -> None:
    sources = {
        "posedge.agent.a": ("import posedge.drivers.x\n", False),
        "posedge.agent.b": ("def f():\n    from posedge.simulator import y\n", False),
        "posedge.agent.c": (
            "import importlib\nimportlib.import_module('posedge.backoffice.z')\n",
            False,
        ),
        "posedge.agent.sub": ("from ...protocol import models\n", True),
        "posedge.agent.d": ("from .. import simulator\n", False),
        "posedge.drivers.e": ("from posedge import agent\n", False),
    }
    edges = package_edges(sources)
    assert set(edges) == {
        ("agent", "drivers"),
        ("agent", "simulator"),
        ("agent", "backoffice"),
        ("agent", "protocol"),
        ("drivers", "agent"),
    }
    assert edges[("agent", "backoffice")] == ["posedge.agent.c:2 imports posedge.backoffice.z"]


def test_checker_reports_a_cycle_with_its_path() -> None:
    sources = _fake(
        posedge__agent__service="from posedge.drivers.printer import ReceiptPrinter\n",
        posedge__drivers__sim="import posedge.simulator.core\n",
        posedge__simulator__core="from posedge.agent.config import Config\n",
    )
    edges = package_edges(sources)
    cycle = find_cycle(graph_of(edges))
    assert cycle == ["agent", "drivers", "simulator", "agent"]
    problems = check_graph(edges, ALLOWED_EDGES)
    assert problems[0].startswith("import cycle agent → drivers → simulator → agent")
    assert "posedge.drivers.sim:1 imports posedge.simulator.core" in problems[0]
    assert any(p.startswith("forbidden edge drivers → simulator") for p in problems)


def test_checker_reports_a_forbidden_edge_without_a_cycle() -> None:
    edges = package_edges(_fake(posedge__protocol__models="from posedge.agent import x\n"))
    assert find_cycle(graph_of(edges)) is None
    (problem,) = check_graph(edges, ALLOWED_EDGES)
    assert problem.startswith("forbidden edge protocol → agent")


def test_checker_accepts_the_intended_layering() -> None:
    edges = package_edges(
        _fake(
            posedge__agent__service="from posedge.drivers import printer\n",
            posedge__simulator__world="from posedge.agent.service import Agent\n",
            posedge__backoffice__app="from ..protocol import models\n",
        )
    )
    assert check_graph(edges, ALLOWED_EDGES) == []
