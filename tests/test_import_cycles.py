"""ga4sync has no import cycles: a module never needs, however indirectly, what needs it.

A cycle hides itself behind a function-level import and then breaks at the first import
reorder (issue 11 found two: ga4/rules <-> checker <-> event_checks, pipeline/delivery <->
delivery_policy). import-linter's layer contracts only see cycles *between* layers; this test
sees all of them. grimp (import-linter's graph) reads every import statement, including those
inside functions and under TYPE_CHECKING, of `ga4sync` laid out as the wheel installs it
(.ci/static-checks' `build_tree`), in a separate interpreter so the editable install's finder
does not hand it the repository's folders instead.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent

KNOWN_CYCLES: set[frozenset[str]] = set()
"""None left (delivery/delivery_policy was the last); any cycle fails the test."""

GRAPH_DUMP = """
import json, grimp
graph = grimp.build_graph("ga4sync", include_external_packages=False)
print(json.dumps({m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}))
"""


def _static_checks() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(
        "static_checks", str(ROOT / ".ci" / "static-checks")
    )
    spec = importlib.util.spec_from_loader("static_checks", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def import_graph(tree: Path) -> dict[str, list[str]]:
    _static_checks().build_tree(tree)
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, "-c", GRAPH_DUMP], env=env, capture_output=True, text=True, check=True
    )
    graph: dict[str, list[str]] = json.loads(out.stdout)
    return graph


def cycles(graph: dict[str, list[str]]) -> list[frozenset[str]]:
    """Strongly connected groups of more than one module (Tarjan), or a module importing
    itself: each is one import cycle, however long."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep import chain cannot hit the recursion limit.
        work = [(start, iter(graph.get(start, [])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph.get(target, []))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, []):
                    found.append(frozenset(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_cycle_finder_sees_a_cycle_through_three_modules() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": ["e"]}
    assert set(cycles(graph)) == {frozenset({"a", "b", "c"}), frozenset({"e"})}
    assert cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_ga4sync_has_no_import_cycles(tmp_path: Path) -> None:
    graph = import_graph(tmp_path / "ga4sync-tree")
    assert "ga4sync.ga4.rules" in graph and "ga4sync.cli.app" in graph  # the whole package
    unexpected = [sorted(group) for group in cycles(graph) if group not in KNOWN_CYCLES]
    assert unexpected == [], f"import cycles: {unexpected}"
