#!/usr/bin/env bash
# Check by hand that `--provider openai` works against llama.cpp's llama-server (issue 18). Not
# part of CI: building llama-server takes about 15 minutes on 2 cores.
#
# What it does:
#   1. takes llama.cpp's source from the llama-cpp-python sdist on PyPI, which vendors it
#      (tools/server, tools/mtmd, convert_hf_to_gguf.py, gguf-py), and builds llama-server from
#      it, unless LLAMA_SERVER names a built one;
#   2. builds the tiny random Qwen3-VL of the tests (tests/tiny_model.py, real Qwen tokenizer)
#      and converts it with llama.cpp's own converter to a GGUF (f16) and its mmproj (vision);
#   3. starts `llama-server --alias qwen3-vl-tiny` on a free loopback port and, as soon as the
#      port is open (the server still answers 503 "Loading model"), scores the first demo posts
#      with `python -m review score --provider openai` into a scratch SQLite desk: the provider
#      waits on GET /health before the batch;
#   4. checks the stored verdicts: one per post, from provider openai and model qwen3-vl-tiny,
#      each with the server's answer and token counts, and at least one parsed ("ok" or
#      "repaired": the random weights write schema-shaped JSON, but llama.cpp's grammar does not
#      enforce number ranges, so a confidence of -408 comes back and the parser clamps it).
# Prints PASS or FAIL and exits 0 or 1; stops its server on exit.
#
# Usage: bash scripts/llama_cpp_check.sh
# Environment:
#   LLAMA_SERVER       a built llama-server binary (default: build one in the scratch folder)
#   LLAMA_CHECK_WORK   scratch folder (default: a new one under ${TMPDIR:-/tmp}); kept, so a
#                      second run reuses its build, sdist and GGUFs
#   LLAMA_CHECK_POSTS  demo posts to score (default 4; about 30 s each on 2 cores)
# Needs: the desk's .venv with the test requirements (scripts/setup.sh), PyPI, and to build:
# cmake, g++ and ninja.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"

# llama-cpp-python 0.3.36 vendors llama.cpp at commit 0c1e570 (Qwen3-VL and its mmproj supported).
LLAMA_CPP_PYTHON_VERSION=0.3.36
SENTENCEPIECE_VERSION=0.2.3  # the converter imports it even for Qwen's BPE tokenizer
MODEL_ALIAS=qwen3-vl-tiny
POSTS="${LLAMA_CHECK_POSTS:-4}"
WORK="${LLAMA_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/llama-cpp-check.XXXXXX")}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
echo "scratch folder: $WORK"

step() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }

step "llama.cpp source (llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist)"
SDIST="$WORK/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [ ! -d "$SDIST" ]; then
  "$PY" -m pip download -q --no-deps --no-binary=:all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$WORK"
  tar xzf "$SDIST.tar.gz" -C "$WORK"
fi
SRC="$SDIST/vendor/llama.cpp"

if [ -n "${LLAMA_SERVER:-}" ]; then
  SERVER_BIN="$LLAMA_SERVER"
else
  SERVER_BIN="$WORK/build/bin/llama-server"
  if [ ! -x "$SERVER_BIN" ]; then
    step "building llama-server (about 15 minutes on 2 cores; log: $WORK/build.log)"
    # no prebuilt web UI (it would be downloaded), no tests or examples, no TLS
    { cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF &&
      cmake --build "$WORK/build" --target llama-server -j"$(nproc)"; } > "$WORK/build.log" 2>&1 ||
      { tail -30 "$WORK/build.log"; fail "llama-server did not build"; }
  fi
fi
[ -x "$SERVER_BIN" ] || fail "no llama-server at $SERVER_BIN"
"$SERVER_BIN" --version 2>&1 | grep -E "^version" || true

step "the tiny Qwen3-VL as GGUF + mmproj"
[ -d "$WORK/tiny" ] || PYTHONPATH="$ROOT" "$PY" tests/tiny_model.py "$WORK/tiny" > /dev/null
[ -d "$WORK/sentencepiece" ] ||
  "$PY" -m pip install -q --target "$WORK/sentencepiece" "sentencepiece==$SENTENCEPIECE_VERSION"
for kind in model mmproj; do
  out="$WORK/tiny-f16.gguf"; flags=()
  if [ "$kind" = mmproj ]; then out="$WORK/mmproj-tiny-f16.gguf"; flags=(--mmproj); fi
  [ -f "$out" ] && continue
  PYTHONPATH="$SRC/gguf-py:$WORK/sentencepiece" "$PY" "$SRC/convert_hf_to_gguf.py" "$WORK/tiny" "${flags[@]}" \
    --outtype f16 --outfile "$out" > "$WORK/convert-$kind.log" 2>&1 ||
    { tail -20 "$WORK/convert-$kind.log"; fail "the $kind did not convert"; }
done
ls -l "$WORK"/*.gguf

step "llama-server on 127.0.0.1 (log: $WORK/server.log)"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# -np 2 slots share -c: each gets 4096 tokens, enough for a demo post (about 2,200 prompt tokens
# with its image) plus the 768-token answer limit
"$SERVER_BIN" -m "$WORK/tiny-f16.gguf" --mmproj "$WORK/mmproj-tiny-f16.gguf" --alias "$MODEL_ALIAS" \
  --host 127.0.0.1 --port "$PORT" -c 8192 -np 2 -t "$(nproc)" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log"; fail "llama-server exited"; }
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
echo "port $PORT open; GET /health now: $(curl -s "http://127.0.0.1:$PORT/health")"

step "scoring $POSTS demo posts with python -m review score --provider openai"
export DATABASE_URL="sqlite:///$WORK/desk.db" MEDIA_DIR="$WORK/media" PYTHONPATH="$ROOT"
rm -rf "$WORK/desk.db" "$WORK/media"
"$PY" -m review db upgrade
"$PY" -m review demo --no-score
started=$(date +%s)
"$PY" -m review score --provider openai --base-url "http://127.0.0.1:$PORT" --model "$MODEL_ALIAS" \
  --limit "$POSTS" --batch-size 2 --skip-signals --quiet || fail "python -m review score exited $?"
echo "scored in $(($(date +%s) - started)) s (server load included)"

step "the stored verdicts"
"$PY" - "$POSTS" "$MODEL_ALIAS" <<'EOF' || fail "the verdicts are not as expected"
import sys

from sqlalchemy import select

from db.models import Verdict
from review.desk import open_desk

posts, alias = int(sys.argv[1]), sys.argv[2]
with open_desk().sessions() as session:
    verdicts = list(session.scalars(select(Verdict).order_by(Verdict.post_id)))
problems = []
for v in verdicts:
    print(f"post {v.post_id}: {v.provider} {v.model_id} parse={v.parse_status} tokens={v.prompt_tokens}+"
          f"{v.completion_tokens} {v.latency_ms / 1000:.1f} s notes={v.parse_notes} error={v.error}")
    if v.provider != "openai" or v.model_id != alias:
        problems.append(f"post {v.post_id}: verdict from {v.provider} {v.model_id}")
    if not (v.raw_output and v.prompt_tokens and v.completion_tokens):
        problems.append(f"post {v.post_id}: no answer from the server ({v.error})")
if len(verdicts) != posts:
    problems.append(f"{len(verdicts)} verdicts for {posts} posts")
parsed = sum(v.parse_status in ("ok", "repaired") for v in verdicts)
if not parsed:
    problems.append("no verdict parsed")
print(f"{parsed} of {len(verdicts)} verdicts parsed")
for problem in problems:
    print(f"problem: {problem}")
sys.exit(1 if problems else 0)
EOF
echo "PASS: llama-server served $POSTS verdicts through --provider openai"
