#!/usr/bin/env bash
# The main job: set up, migrate, load the demo posts into an empty database, start the app.
# Settings come from the environment (DATABASE_URL, MEDIA_DIR, …) or review.toml; by default
# everything lives in ./data/ (SQLite). Extra arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
.venv/bin/python -m review db upgrade
.venv/bin/python -m review demo
exec .venv/bin/streamlit run app.py --server.address "${HOST:-127.0.0.1}" --server.port "${PORT:-8501}" \
  --browser.gatherUsageStats false "$@"
