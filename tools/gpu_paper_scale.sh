#!/usr/bin/env bash
# The report's paper-scale rows on a lent GPU, in one call of at most ~10 minutes:
# both recipes x training seeds 0 and 1 at 256², 20,000 steps through
# `python -m keras_dkg.fit --backend jax` (all four at once on the one GPU), then
# `python -m keras_dkg.diagnose` on each, then reports/paper-scale/summary.json, which
# `tools/reproduce_paper.py` shows as its "At the paper's scale" section (docs/gpu.md).
#
#   bash tools/gpu_paper_scale.sh                      # the real thing (GPU)
#   SIZE=32 STEPS=4 OUT=/tmp/ps RUNS=/tmp/ps-runs bash tools/gpu_paper_scale.sh   # a smoke test (CPU)
#
# Resumable: a finished run (generator.keras) is not trained again, a started one resumes
# from its newest checkpoint. NIST=1 adds diagnose --nist (minutes per run at 256² on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SIZE=${SIZE:-256}
STEPS=${STEPS:-20000}
RECIPES=${RECIPES:-"paper recommended"}
SEEDS=${SEEDS:-"0 1"}
RUNS=${RUNS:-runs/paper-scale}
OUT=${OUT:-reports/paper-scale}
NIST=${NIST:-0}
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2

if ! "$PY" -c "import keras_dkg, keras, jax" 2>/dev/null; then
    "$PY" -m pip install --quiet -e ".[jax,analysis]"
fi
"$PY" -c "import jax; print('jax', jax.__version__, 'devices:', jax.devices())"
mkdir -p "$RUNS" "$OUT"
every=$(( STEPS / 8 > 0 ? STEPS / 8 : 1 ))
started=$(date +%s)
pids=()
for recipe in $RECIPES; do
    for seed in $SEEDS; do
        run="$RUNS/$recipe-seed$seed"
        [ -f "$run/generator.keras" ] && continue
        resume=()
        [ -d "$run/checkpoints" ] && resume=(--resume)
        "$PY" -m keras_dkg.fit --backend jax --recipe "$recipe" --seed "$seed" --image-size "$SIZE" \
            --steps "$STEPS" --checkpoint-every "$every" --out "$run" --no-progress "${resume[@]}" \
            > "$RUNS/$recipe-seed$seed.log" 2>&1 &
        pids+=($!)
    done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "trainings done in $(( $(date +%s) - started )) s (exit $status)"
for recipe in $RECIPES; do
    for seed in $SEEDS; do
        run="$RUNS/$recipe-seed$seed"
        [ -f "$run/generator.keras" ] || { echo "no generator in $run: see $RUNS/$recipe-seed$seed.log"; tail -5 "$RUNS/$recipe-seed$seed.log"; continue; }
        nist=()
        [ "$NIST" = 1 ] && nist=(--nist)
        "$PY" -m keras_dkg.diagnose "$run" --nonces 8 "${nist[@]}" --json "$OUT/$recipe-seed$seed.json" \
            --overwrite > "$OUT/$recipe-seed$seed.txt"
    done
done
"$PY" -m keras_dkg.reproduce.paper_scale "$OUT"
echo "all done in $(( $(date +%s) - started )) s"
exit $status
