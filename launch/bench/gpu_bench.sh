#!/usr/bin/env bash
# The GPU table in one run on one accelerator machine: about 7 minutes of device time in full
# (each full-size step compiles in ~40 s), about 3 with --quick.
#
# Usage (from the repository root):
#   bash launch/bench/gpu_bench.sh [--quick] [--small] [--dry_run] [--out DIR]
#
# Steps:
#   1. installs what the machine lacks (ml_collections) from the wheels in .whl/ with
#      pip --no-index (the machine has no network; download them beforehand, see below);
#   2. launch/bench/bench.py at full size, batch 256: Case 1 (filter) and Case 2 (shared_feature) x
#      bfloat16 and float32 x uncached and cached; every uncached bfloat16 step is also traced
#      with jax.profiler and summarised (where the device time goes, how long it idles);
#   3. the largest batch that fits, estimated from step 2's memory figures, for the bfloat16
#      Case-1 uncached and cached steps (a row marked OOM if the estimate was too high);
#   4. the host-side input benchmark (bench.py --input) on this machine's cores;
#   5. ONE table of every row, titled with the card's name (nvidia-smi), and the profiles.
# --quick: bfloat16 only, fewer timed steps, no largest-batch runs, a shorter input benchmark.
# --small: tiny models at batch 16 (a CPU check of the script itself). --dry_run: print the
# commands only.
#
# Files (at most 8, under --out, default $OUT or runs/gpu_bench): log.txt, table.md,
# rows_b256.json, rows_max_c0.json, rows_max_c1.json, input.json and the Perfetto traces
# trace_<case>.json.gz of the profiled steps (open them in ui.perfetto.dev).
#
# Wheels, once, on a machine with PyPI, in the repository root (.whl/ is git-ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp -d .whl ml_collections==1.1.0
#
# Environment:
#   PYTHON                          interpreter (default: python3).
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of the GPU memory JAX takes (default here 0.92).
#   JAX_COMPILATION_CACHE_DIR       persistent compilation cache (default /tmp/jax_cache): a
#                                   rerun on the same machine skips the compiles.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
QUICK=0
SMALL=()
DRY=0
OUT_DIR=${OUT:-$ROOT/runs/gpu_bench}
MAX_BATCH_CAP=8192
BATCH=256

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --small) SMALL=(--small); BATCH=16 ;;
    --dry_run) DRY=1 ;;
    --out) OUT_DIR=$2; shift ;;
    --out=*) OUT_DIR=${1#--out=} ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1'; use --quick, --small, --dry_run or --out DIR" >&2
       exit 2 ;;
  esac
  shift
done

run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

mkdir -p "$OUT_DIR"
if [ "$DRY" = 0 ]; then
  exec > >(tee "$OUT_DIR/log.txt") 2>&1
fi
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
export PYTHONUNBUFFERED=1
START=$(date +%s)
PROFILE_DIR=/tmp/gpu_bench_profile
stamp() { echo "== $1 ($(( $(date +%s) - START )) s)"; }

# 1. Missing packages, from the carried wheels.
if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  if ! ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
    echo "error: ml_collections is not installed and .whl/ has no wheels; download them on a" \
         "machine with PyPI (see the top of launch/bench/gpu_bench.sh) and carry .whl" >&2
    exit 1
  fi
  run "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$ROOT"/.whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if [ "$DRY" = 1 ]; then
  CARD="(dry run)"
elif command -v nvidia-smi >/dev/null; then
  CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
else
  CARD=$("$PYTHON" -c "import jax; print(jax.devices()[0].device_kind)")
fi
stamp "card: $CARD"
if [ "$DRY" = 0 ]; then
  rm -rf "$PROFILE_DIR"
  "$PYTHON" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, jax.devices())"
fi

# 2. Every combination at batch 256 (bfloat16 first: it carries the targets).
if [ "$QUICK" = 1 ]; then
  PRECISIONS=bfloat16; STEPS=5; WARMUP=1
else
  PRECISIONS=bfloat16,float32; STEPS=10; WARMUP=2
fi
run "$PYTHON" launch/bench/bench.py "${SMALL[@]}" --case=filter,shared_feature \
    --precision="$PRECISIONS" --cache=0,1 --batch_size=$BATCH --steps=$STEPS --warmup=$WARMUP \
    --profile="$PROFILE_DIR" --profile_steps=3 --json="$OUT_DIR/rows_b256.json"
stamp "batch $BATCH done"
ROWS=("$OUT_DIR/rows_b256.json")

# 3. The largest batch that fits, for the bfloat16 Case-1 steps.
if [ "$QUICK" = 0 ] && [ "$DRY" = 0 ]; then
  for CACHE in 0 1; do
    B=$("$PYTHON" launch/bench/bench_report.py --max_batch "$OUT_DIR/rows_b256.json" --case=filter \
        --precision=bfloat16 --cache=$CACHE || echo 0)
    B=$(( B > MAX_BATCH_CAP ? MAX_BATCH_CAP : B ))
    if [ "$B" -gt "$BATCH" ]; then
      run "$PYTHON" launch/bench/bench.py "${SMALL[@]}" --case=filter --precision=bfloat16 \
          --cache=$CACHE --batch_size="$B" --steps=5 --warmup=1 \
          --json="$OUT_DIR/rows_max_c$CACHE.json" || echo "batch $B failed; see above"
      [ -f "$OUT_DIR/rows_max_c$CACHE.json" ] && ROWS+=("$OUT_DIR/rows_max_c$CACHE.json")
    else
      echo "no larger batch estimated for cache=$CACHE (got '$B')"
    fi
    stamp "largest batch, cache=$CACHE"
  done
elif [ "$DRY" = 1 ] && [ "$QUICK" = 0 ]; then
  echo "+ (largest batch per cache 0/1 from launch/bench/bench_report.py --max_batch, then bench.py)"
fi

# 4. The host-side input pipeline on this machine's cores.
if [ "$QUICK" = 1 ]; then
  INPUT=(--input_images=256 --input_batch=128 --input_threads=1,8,16 --input_repeats=2)
elif [ ${#SMALL[@]} -gt 0 ]; then
  INPUT=(--input_images=32 --input_batch=16 --input_threads=1,2 --input_repeats=1)
else
  INPUT=(--input_images=512 --input_batch=256 --input_threads=1,4,8,16 --input_repeats=3)
fi
run "$PYTHON" launch/bench/bench.py --input "${SMALL[@]}" "${INPUT[@]}" --json="$OUT_DIR/input.json" \
    || echo "input benchmark failed; see above"
stamp "input benchmark done"

# 5. One table; the traces next to it.
if [ "$DRY" = 0 ]; then
  for TRACE in "$PROFILE_DIR"/*; do
    FILE=$(find "$TRACE" -name 'perfetto_trace.json.gz' 2>/dev/null | sort | tail -1)
    NAME=$(basename "$TRACE"); NAME=${NAME%_b*}
    [ -n "$FILE" ] && cp "$FILE" "$OUT_DIR/trace_$NAME.json.gz"
  done
fi
run "$PYTHON" launch/bench/bench_report.py "${ROWS[@]}" --card="$CARD" --output="$OUT_DIR/table.md"
stamp "done"
