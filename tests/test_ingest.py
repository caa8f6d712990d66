"""The review/ingest package as a whole: each part imports only the parts before it."""

from __future__ import annotations

import ast

from tests.conftest import REPO

# Each part of review/ingest/ and the parts it may import: a record flows readers → records →
# store (changes: a record for a post stored before) → run → uploads, and the rules about a
# record (records) depend on no other part.
LAYERS = {
    "records": set(),
    "readers": {"records"},
    "changes": {"records"},
    "store": {"records", "changes"},
    "run": {"records", "readers", "store"},
    "uploads": {"records", "readers", "run", "store"},
}


def test_each_part_imports_only_the_parts_before_it() -> None:
    folder = REPO / "review" / "ingest"
    assert {p.stem for p in folder.glob("*.py")} == set(LAYERS) | {"__init__"}
    for part, allowed in LAYERS.items():
        tree = ast.parse((folder / f"{part}.py").read_text(encoding="utf-8"))
        used = {
            node.module.removeprefix("review.ingest.")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("review.ingest")
        }
        assert used <= allowed, (part, used - allowed)
