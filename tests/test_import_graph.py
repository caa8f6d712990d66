"""The import graph of review/ and db/, read from the source (ast; nothing is imported): the
scoring worker is imported only by what starts it, and the rules every stage reads
(review/verdicts.py, review/priority.py) sit below the stages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("review", "db")
STARTS_THE_WORKER = {"review.cli", "review.operations"}  # may import review.scoring
# modules that are no stage: the database layer and small leaves (settings, errors, the policy)
BELOW_THE_STAGES = {"review.errors", "review.config", "review.policy"}
RULES = {  # rule module → the desk's modules it may reach (directly or through them), besides db.*
    "review.verdicts": BELOW_THE_STAGES,
    "review.priority": BELOW_THE_STAGES | {"review.verdicts"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The desk's modules that ``name`` imports anywhere in its file (in functions too):
    ``import a.b``, ``from a.b import c`` (``a.b.c`` when that is a module), relative imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in known)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    return {name: _imports(name, path, set(sources)) for name, path in sources.items()}


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for module in graph.get(todo.pop(), set()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


def test_the_reader_sees_imports() -> None:
    """The check below is not vacuous: the CLI's function-level imports of the worker are seen,
    and ``from review import x`` counts as importing ``review.x``."""
    graph = _graph()
    assert "review.scoring" in graph["review.cli"]
    assert "review.labels" in graph["review.decisions"]  # from review import audit, labels


def test_only_the_starters_import_the_scoring_worker() -> None:
    graph = _graph()
    importers = {name for name, imported in graph.items() if "review.scoring" in imported}
    others = sorted(importers - STARTS_THE_WORKER)
    assert not others, f"these import the scoring worker; the rules are in review.verdicts / review.priority: {others}"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_modules_sit_below_the_stages(rule: str) -> None:
    graph = _graph()
    assert rule in graph, f"{rule} is missing"
    beyond = sorted(m for m in _reached(graph, rule) if m.startswith("review.") and m not in RULES[rule] | {"review"})
    assert not beyond, f"{rule} reaches stage modules: {beyond}"
