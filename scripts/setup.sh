#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the pinned requirements when they changed.
# Usage: scripts/setup.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 is required (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
# A half-made .venv (interrupted, or venv/ensurepip missing) is rebuilt rather than trusted.
if [ -d .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "rebuilding the incomplete .venv"
  rm -rf .venv
fi
if [ ! -d .venv ]; then
  echo "creating .venv"
  if ! "$python" -m venv .venv; then
    rm -rf .venv
    echo "error: could not create .venv (on Debian/Ubuntu: apt-get install python3.11-venv)" >&2
    exit 2
  fi
fi
stamp=".venv/.installed-$(basename "$req")"
want="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing $req into .venv (the first time takes a few minutes: PyTorch is large)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
