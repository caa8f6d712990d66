#!/usr/bin/env bash
# Check that the training commands an export's TRAINING.md prints run as written, with the
# trainer versions they name (issue 13).
#
# What it does:
#   1. installs LLaMA-Factory and ms-swift, pinned, each into its own throwaway virtualenv
#      outside the repository (their pins conflict: LLaMA-Factory 0.9.5 wants datasets<=4.0,
#      ms-swift 4.6.0 needs a newer one);
#   2. builds the tiny random Qwen3-VL of the tests (tests/tiny_model.py, real Qwen tokenizer)
#      with the real Qwen3-VL-2B image processor settings, so the examples are as long in tokens
#      as with the real model (1,700-3,200 on the demo desk);
#   3. loads the demo desk into a scratch database (demo posts, signals, baseline verdicts,
#      simulated moderators) and exports it for LLaMA-Factory and for ms-swift;
#   4. for each export, takes the command block from its TRAINING.md and
#      a. runs it with the trainer's executable swapped for a measuring helper that tokenizes
#         every example with the trainer's own code: fails if the trainer reads a different
#         number of examples than the manifest, or if an example is longer than the printed
#         --cutoff_len / --max_length (it would be cut, or silently dropped);
#      b. runs it as printed, with only the model name replaced by the tiny model, ADAPTER_DIR by
#         a scratch folder and flags for a short CPU run appended (--max_steps 2, one example a
#         step, evaluation at the last step, --use_cpu true): fails unless it exits 0, writes an
#         adapter, evaluates the validation split, and trains answers without a <think> block.
#      TRAINING.md must also name the version installed here.
# Exits non-zero when any check fails, after a summary.
#
# Usage: bash scripts/check_trainers.sh
# Environment:
#   CHECK_TRAINERS_WORK   scratch folder (default: a new one under ${TMPDIR:-/tmp}; removed at
#                         the end unless CHECK_TRAINERS_KEEP=1 or a check failed)
#   CHECK_TRAINERS_VENVS  where the trainer virtualenvs live (default: inside the scratch folder,
#                         so they are thrown away); point it at a cache folder to reuse them:
#                         a virtualenv is rebuilt only when its pins below change
#   CHECK_TRAINERS_STEPS  training steps per trainer (default 2)
#   PYTHON                the Python 3.11 for the virtualenvs (default python3.11)
# Needs: the desk's .venv with the test requirements (made here by scripts/setup.sh), about
# 14 GB of disk for the two virtualenvs (each holds PyTorch), PyPI. On 2 cores it took about
# 8.5 minutes with fresh virtualenvs (4 of them installing) and 5 with the virtualenvs cached.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

# The versions checked. TRAINING.md names the trainer versions; change both together.
LLAMAFACTORY_VERSION=0.9.5
SWIFT_VERSION=4.6.0
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)  # the desk's (requirements.txt)
LLAMAFACTORY_PINS=("llamafactory==$LLAMAFACTORY_VERSION" transformers==5.6.0 datasets==4.0.0 peft==0.18.1
                   trl==0.24.0 accelerate==1.11.0 torchaudio==2.11.1)
SWIFT_PINS=("ms-swift==$SWIFT_VERSION" qwen-vl-utils==0.0.14 transformers==5.19.0 datasets==4.8.4
            peft==0.20.0 trl==0.29.1 accelerate==1.16.0)

STEPS="${CHECK_TRAINERS_STEPS:-2}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
WORK="${CHECK_TRAINERS_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/check-trainers.XXXXXX")}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
VENVS="${CHECK_TRAINERS_VENVS:-$WORK/venvs}"
case "$(mkdir -p "$VENVS" && cd "$VENVS" && pwd)/" in
  "$ROOT"/*) echo "error: CHECK_TRAINERS_VENVS must be outside the repository" >&2; exit 2 ;;
esac
echo "scratch folder: $WORK"

started=$SECONDS
declare -a summary=()
failed=0
note() { summary+=("$(printf '%-6s %-34s %5ss' "$1" "$2" "$3")"); }

# A virtualenv with the given pins, rebuilt only when the pins change (stamp file).
make_venv() {
  local dir="$1"; shift
  local want; want="$(printf '%s\n' "$@" | sha256sum | cut -d' ' -f1)"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$want" ]; then
    echo "reusing $dir"
    return 0
  fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  echo "$want" > "$dir/.pins"
}

# 1. The trainers, each in its own virtualenv.
for trainer in llamafactory swift; do
  t0=$SECONDS
  echo "== installing $trainer into $VENVS/$trainer"
  if [ "$trainer" = llamafactory ]; then pins=("${TORCH_PINS[@]}" "${LLAMAFACTORY_PINS[@]}")
  else pins=("${TORCH_PINS[@]}" "${SWIFT_PINS[@]}"); fi
  if make_venv "$VENVS/$trainer" "${pins[@]}" > "$WORK/install-$trainer.log" 2>&1; then
    note ok "install $trainer" $((SECONDS - t0))
  else
    tail -20 "$WORK/install-$trainer.log" >&2
    note FAIL "install $trainer" $((SECONDS - t0)); failed=1
  fi
done

# 2. The desk's own environment (tiny model builder, demo desk, exports) and the tiny model.
t0=$SECONDS
bash scripts/setup.sh requirements-dev.txt
DESK_PY="$ROOT/.venv/bin/python"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Named like the real model's folder: ms-swift recognises a local model by its folder's name, as it
# recognises the hub id the printed commands use.
TINY="$WORK/tiny-model/Qwen3-VL-2B-Instruct"
"$DESK_PY" scripts/check_trainers.py tiny "$TINY" > "$WORK/tiny.log" 2>&1 \
  || { cat "$WORK/tiny.log" >&2; echo "error: could not build the tiny model" >&2; exit 1; }
note ok "tiny Qwen3-VL" $((SECONDS - t0))

# 3. The demo desk in a scratch database, exported for both trainers. The demo is scored by the
#    baseline rules (MODEL names no model: the tiny one would only write garbage, slowly); the
#    exports count tokens with the tiny model's tokenizer and image processor, which are the real
#    Qwen3-VL's, so manifest.json's max_tokens can be compared with what the trainers measure.
t0=$SECONDS
export DATABASE_URL="sqlite:///$WORK/desk/review.db" MEDIA_DIR="$WORK/desk/media" EXPORT_DIR="$WORK/desk/exports"
export MODEL="$WORK/no-model" HF_HUB_OFFLINE=1
mkdir -p "$WORK/desk"
(
  cd "$WORK/desk"  # away from any ./review.toml of the checkout
  set -x
  "$DESK_PY" -m review db upgrade
  "$DESK_PY" -m review demo
  echo "check-trainers-$$" | "$DESK_PY" -m review user add admin --role admin --password-stdin
  "$DESK_PY" -m review demo --history
  for fmt in llamafactory swift; do
    MODEL="$TINY" "$DESK_PY" -m review export --format "$fmt" --all --out "$WORK/exports/$fmt"
  done
) > "$WORK/desk.log" 2>&1 || { tail -30 "$WORK/desk.log" >&2; echo "error: the demo export failed" >&2; exit 1; }
grep '^export ' "$WORK/desk.log" || true
note ok "demo desk + exports" $((SECONDS - t0))

# 4. Each trainer runs its export's printed command (measure, then train).
for trainer in llamafactory swift; do
  if [ "$trainer" = llamafactory ]; then version=$LLAMAFACTORY_VERSION; else version=$SWIFT_VERSION; fi
  t0=$SECONDS
  echo "== $trainer $version: the command in $WORK/exports/$trainer/TRAINING.md"
  if [ ! -x "$VENVS/$trainer/bin/python" ]; then
    note FAIL "$trainer $version (not installed)" 0; failed=1; continue
  fi
  if "$DESK_PY" scripts/check_trainers.py run "$trainer" "$WORK/exports/$trainer" --venv "$VENVS/$trainer" \
      --model "$TINY" --work "$WORK/runs" --version "$version" --steps "$STEPS"; then
    note ok "$trainer $version: $STEPS steps" $((SECONDS - t0))
  else
    note FAIL "$trainer $version: $STEPS steps" $((SECONDS - t0)); failed=1
  fi
done

echo
echo "== summary (logs in $WORK)"
printf '%s\n' "${summary[@]}"
echo "total $((SECONDS - started)) s"
if [ "$failed" != 0 ]; then
  echo "FAILED: the printed training commands do not run as written (see above)"
  exit 1
fi
if [ "${CHECK_TRAINERS_KEEP:-0}" != 1 ] && [ -z "${CHECK_TRAINERS_WORK:-}" ]; then
  rm -rf "$WORK"
fi
echo "OK: the printed training commands run with LLaMA-Factory $LLAMAFACTORY_VERSION and ms-swift $SWIFT_VERSION"
