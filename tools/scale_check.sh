#!/usr/bin/env bash
# The many-core scaling check: run once on a machine with 16+ cores, Open MPI, mpi4py and (for
# the PyTorch DDP comparison) torch installed, from the repository root. It measures what a
# 2-core machine cannot: DataParallel and ZeRO weak scaling to 16 ranks beside PyTorch DDP
# (gloo), the pipeline's throughput at 4 stages x 16 micro-batches against 1 rank, a 4 x 4
# DP x PP grid, and the scaling model fitted and checked on 1-16 ranks. Everything goes under
# $OUT (default ./scale_check_out), one file per step, so a run that stops early still reports:
#   env.txt        cores, Open MPI, Python packages
#   scale.txt      examples/scale_benchmark.py --ranks 1,2,4,8,16 (DataParallel vs DDP; JSON+PNG
#                  in scale/)
#   zero.txt       the same for ZeRO-1 over Adam against DataParallel + Adam (in zero/)
#   pipeline.txt   examples/train_pipeline.py: 1 rank against 4 stages x 16 micro-batches at
#                  global batches 1024 and 4096, and the 4 x 4 grid (JSON per run)
#   model.txt      examples/scaling_model.py fitted on 2-16 ranks, checked on 1-16 (in model/)
#   reduce_scatter.txt  examples/reduce_scatter_benchmark.py at 4, 8 and 16 ranks: the ring
#                  against MPI_Reduce_scatter with a core per rank (ZeRO's exchange)
# Each step has its own time limit (about 10 minutes in all) and the script never stops at a
# failed step. RANKS=1,2,4 (and PP_RANKS=4, GRID=0) make a short rehearsal on a small machine.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$PWD/scale_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=${PYTHON:-python3}
RANKS=${RANKS:-1,2,4,8,16}
PP_RANKS=${PP_RANKS:-4}
GRID=${GRID:-1}
MPI=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1)

{
    nproc; lscpu | grep -E "Model name|Socket|Core|Thread|NUMA" || true
    mpirun --version | head -1
    "$PY" -c "import numpy, mpi4py; print('numpy', numpy.__version__, 'mpi4py', mpi4py.__version__)"
    "$PY" -c "import torch; print('torch', torch.__version__)" || echo "torch: not installed"
    cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
} > "$OUT/env.txt" 2>&1

# NOTE: --no-deps keeps the machine's numpy/torch/mpi4py; the small pure-Python needs are then
# installed if missing (this fails quietly where nothing outside the machine can be reached).
{
    "$PY" -m pip install --no-deps -e . &&
        "$PY" -m pip install "safetensors>=0.4" "tqdm>=4.60" "threadpoolctl>=3.5" matplotlib
} > "$OUT/install.txt" 2>&1

timeout 200 "$PY" examples/scale_benchmark.py --ranks "$RANKS" --rounds 1 --steps 12 \
    --warmup 3 --wait-idle 0 --out "$OUT/scale" > "$OUT/scale.txt" 2>&1
echo "exit $?" >> "$OUT/scale.txt"

timeout 100 "$PY" examples/scale_benchmark.py --ranks "$RANKS" --rounds 1 --steps 8 \
    --warmup 2 --no-torch --optimizer adam --zero-stage 1 \
    --configs deep784-2048x3-10_b256 --wait-idle 0 --out "$OUT/zero" > "$OUT/zero.txt" 2>&1
echo "exit $?" >> "$OUT/zero.txt"

# NOTE: an MLP of 8 Linear layers of 2048. One rank with 1 micro-batch is plain training of the
# global batch; the pipeline's speed-up is its throughput against that. Micro-batches of 16
# samples re-read every 16 MB weight per micro-batch (1 rank, batch 256: 16 micro-batches took
# 3.2x the time of 1 on a 2-core EPYC), so the global batch is 1024 and 4096 (64 and 256 per
# micro-batch); 1 rank x 16 micro-batches shows what the micro-batching alone costs.
pipe=(examples/train_pipeline.py --depth 8 --width 2048 --steps 8 --schedule 1f1b
      --balance params)
run_pipe() {  # ranks micro-batches batch name [extra args]
    echo "== $1 ranks, $2 micro-batches, global batch $3 ${*:5}"
    timeout 90 "${MPI[@]}" -n "$1" "$PY" -m mpi4py "${pipe[@]}" --microbatches "$2" \
        --batch-size "$3" --json "$OUT/pipeline_$4.json" "${@:5}"
}
{
    run_pipe 1 1 1024 1x1_b1024
    run_pipe 1 16 1024 1x16_b1024
    run_pipe "$PP_RANKS" 16 1024 "${PP_RANKS}x16_b1024"
    run_pipe 1 1 4096 1x1_b4096
    run_pipe "$PP_RANKS" 16 4096 "${PP_RANKS}x16_b4096"
    if [[ $GRID == 1 ]]; then
        run_pipe 16 16 4096 grid4x4_b4096 --dp 4
    fi
} > "$OUT/pipeline.txt" 2>&1
echo "exit $?" >> "$OUT/pipeline.txt"

fit_ranks=${RANKS#1,}
# NOTE: checked against the scale step's runs (no second scale_benchmark), when it wrote them
scale_json=()
[[ -f $OUT/scale/scale_benchmark.json ]] && scale_json=(--scale-json "$OUT/scale/scale_benchmark.json")
timeout 120 "$PY" examples/scaling_model.py --ranks "$fit_ranks" --check-ranks "$RANKS" \
    "${scale_json[@]}" --rounds 1 --steps 10 --warmup 3 --out "$OUT/model" \
    > "$OUT/model.txt" 2>&1
echo "exit $?" >> "$OUT/model.txt"

{
    for n in ${RANKS//,/ }; do
        [[ $n -gt 2 ]] || continue
        echo "== $n ranks"
        timeout 30 "${MPI[@]}" -n "$n" "$PY" examples/reduce_scatter_benchmark.py \
            --sizes-mb 0.25,1,4,16 --blocks 2 --iters 10
    done
} > "$OUT/reduce_scatter.txt" 2>&1
echo "exit $?" >> "$OUT/reduce_scatter.txt"
