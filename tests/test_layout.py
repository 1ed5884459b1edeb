"""core's layout: imports between its subpackages point one way only (no circles), and each sits in its layer; what
trains on the GPU machine (which has no PyAV) imports without PyAV."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"

# Bottom to top. A unit may import its own layer or lower ones. The single modules directly under core/ are
# commands (`python -m core.eval`, …) and sit on top.
LAYERS = (
    {"io", "clips"},
    {"model"},
    {"weights"},
    {"inference", "effects", "annotate"},
    {"pipeline"},
    {"evaluation", "batch"},
    {"train", "demo", "eval", "bench", "export"},
)


def unit_of(path: Path) -> str:
    """The subpackage (or top-level module) of core that a file belongs to."""
    parts = path.relative_to(CORE).with_suffix("").parts
    return parts[0]


def imported_units(path: Path) -> set[str]:
    """The core units a file imports, at module level or inside functions."""
    units: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "core" else [f"core.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        units |= {name.split(".")[1] for name in names if name.startswith("core.")}
    return units


def import_graph() -> dict[str, set[str]]:
    """unit → the other units it imports."""
    graph: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        if path == CORE / "__init__.py":
            continue
        unit = unit_of(path)
        graph.setdefault(unit, set()).update(imported_units(path) - {unit})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of units (first = last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        path.append(unit)
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (cycle := visit(unit)):
            return cycle
    return None


def layer(unit: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def test_find_cycle_reports_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_subpackages_import_without_circles() -> None:
    assert find_cycle(import_graph()) is None


def test_every_import_points_down_the_layers() -> None:
    graph = import_graph()
    assert set(graph) <= set().union(*LAYERS), f"unit without a layer: {set(graph) - set().union(*LAYERS)}"
    upward = [(unit, other) for unit, others in graph.items() for other in others if layer(other) > layer(unit)]
    assert upward == []


def test_what_runs_on_the_gpu_machine_imports_without_pyav() -> None:
    """scripts/gpu_session.sh runs these there; the machine has no PyAV (stop 22 found the annotator's trainer
    pulling it in through the evaluation's folder-of-clips mode)."""
    modules = ["core.train.__main__", "core.train.annotator", "core.train.pack", "core.bench", "core.eval"]
    code = f"import importlib, sys\nsys.modules['av'] = None\nfor name in {modules!r}: importlib.import_module(name)"
    result = subprocess.run([sys.executable, "-c", code], cwd=CORE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
