#!/usr/bin/env bash
# Run the test suite. Sets up .venv with the test requirements first. When no Postgres is given
# in REVIEW_TEST_POSTGRES_URL and the Postgres server binaries are installed, a throwaway
# server is started on a free loopback port for the run. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${REVIEW_TEST_POSTGRES_URL:-}" ]; then
  export PG_STATE_DIR; PG_STATE_DIR="$(mktemp -d)"
  trap 'bash scripts/pg_throwaway.sh stop' EXIT
  rc=0; url="$(bash scripts/pg_throwaway.sh start)" || rc=$?
  if [ "$rc" = 0 ]; then
    export REVIEW_TEST_POSTGRES_URL="$url"
  elif [ "$rc" = 3 ]; then
    echo "note: no Postgres server binaries found; Postgres tests will be skipped (CI runs them)" >&2
  else
    echo "error: the throwaway Postgres server did not start; its log:" >&2
    cat "$PG_STATE_DIR"/*.log "$PG_STATE_DIR"/server.log >&2 2>/dev/null || true
    exit 1
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet . || { echo "ruff format: run .venv/bin/ruff format ." >&2; exit 1; }
.venv/bin/python -m mypy  # review/, db/, pages/ and dashboard.py, as configured in pyproject.toml
.venv/bin/python -m pytest "$@"
