"""The import graph of the desk (review/, db/, pages/, dashboard.py), read from the source (ast;
nothing is imported): imports run with the flow. The database layer imports nothing above it;
no stage imports a later stage; the rule modules every stage reads sit below the stages; the
scoring worker is imported only by the command that starts it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("review", "db", "pages")
SCRIPTS = ("dashboard.py", "app.py")
STARTS_THE_WORKER = {"review.cli.score"}  # may import review.scoring
# may import the webhook delivery worker, review.delivery (review.api: any module of that package)
STARTS_THE_DELIVERY = {"review.cli.deliver", "review.cli.api", "review.api"}
# modules that are no stage: the database layer and small leaves (settings, errors, the policy)
BELOW_THE_STAGES = {"review.errors", "review.config", "review.policy"}
RULES = {  # rule module → the desk's modules it may reach (directly or through them), besides db.*
    "review.verdicts": BELOW_THE_STAGES,
    "review.priority": BELOW_THE_STAGES | {"review.verdicts"},
    "review.status": BELOW_THE_STAGES,
    "review.outbox": BELOW_THE_STAGES,
    "review.events": BELOW_THE_STAGES | {"review.status", "review.outbox"},
    "review.labels": BELOW_THE_STAGES | {"review.verdicts"},
}
# The flow, in order: a module of a stage may import its own stage's modules and earlier ones.
# Modules not listed are no stage (the shells: CLI, pages; accounts, audit, media, browsing,
# erasure, backup, the demo) and are checked by the rules above and below only.
STAGES = (
    ("ingest", ("review.ingest",)),
    ("signals", ("review.signals",)),
    ("score", ("review.inference", "review.inputs", "review.prompts", "review.scoring", "review.worker")),
    ("queue", ("review.queue",)),
    ("decide", ("review.decisions", "review.workbench")),
    ("measure", ("review.metrics", "review.report")),
    ("export", ("review.export",)),
    ("fine-tune", ("review.finetune",)),
    ("compare", ("review.evaluate",)),
)


def _stage(module: str) -> int | None:
    for i, (_, prefixes) in enumerate(STAGES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    for script in SCRIPTS:
        found[_module_name(REPO / script)] = REPO / script
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
    assert "review.scoring" in graph["review.cli.score"]
    assert "review.labels" in graph["review.decisions"]  # from review import audit, labels
    assert "review.auth" in graph["dashboard"] and "review.decisions" in graph["pages.review"]
    assert _stage("review.metrics.accuracy") == _stage("review.report") > _stage("review.decisions")


def test_the_database_layer_imports_nothing_above_it() -> None:
    graph = _graph()
    above = {name: sorted(m for m in imported if not m.startswith("db")) for name, imported in graph.items()}
    offenders = {name: found for name, found in above.items() if name.startswith("db") and found}
    assert not offenders, f"db/ imports the core or the pages: {offenders}"


def test_no_stage_imports_a_later_stage() -> None:
    graph = _graph()
    stage = {name: i for name in graph if (i := _stage(name)) is not None}
    backwards = sorted(
        f"{name} ({STAGES[stage[name]][0]}) imports {other} ({STAGES[stage[other]][0]})"
        for name, imported in graph.items()
        for other in imported
        if name in stage and other in stage and stage[other] > stage[name]
    )
    assert not backwards, "\n".join(backwards)


def test_only_the_core_and_the_shells_are_imported_by_the_shells() -> None:
    """The core never imports a page, the entry point or the HTTP API (review/ never imports
    streamlit either)."""
    graph = _graph()
    shells = {
        name for name in graph if name.startswith(("pages", "review.api.")) or name in ("dashboard", "review.api")
    }
    upward = sorted(f"{n} imports {m}" for n, imported in graph.items() if n not in shells for m in imported & shells)
    assert not upward, upward


def test_only_the_starters_import_the_scoring_worker() -> None:
    graph = _graph()
    importers = {name for name, imported in graph.items() if "review.scoring" in imported}
    others = sorted(importers - STARTS_THE_WORKER)
    assert not others, f"these import the scoring worker; the rules are in review.verdicts / review.priority: {others}"


def test_only_the_starters_import_the_delivery_worker() -> None:
    graph = _graph()
    importers = {name for name, imported in graph.items() if "review.delivery" in imported}
    others = sorted(n for n in importers if n not in STARTS_THE_DELIVERY and not n.startswith("review.api."))
    assert not others, f"these import the delivery worker; endpoints and deliveries are review.webhooks': {others}"
    assert "review.delivery" in graph["review.cli.deliver"]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_modules_sit_below_the_stages(rule: str) -> None:
    graph = _graph()
    assert rule in graph, f"{rule} is missing"
    beyond = sorted(m for m in _reached(graph, rule) if m.startswith("review.") and m not in RULES[rule] | {"review"})
    assert not beyond, f"{rule} reaches stage modules: {beyond}"
