#!/usr/bin/env bash
# The GPU check: run once on a machine with an NVIDIA GPU, CuPy, Open MPI and mpi4py installed
# (e.g. the device machine), from the repository root. Everything it learns goes under $OUT
# (default ./gpu_check_out), one file per step, so a run that stops early still reports:
#   env.txt          GPU, CUDA, CuPy, Open MPI (CUDA-aware or not), versions
#   install.txt      disttrain installed without touching the preinstalled CuPy/torch/mpi4py
#   pytest_cupy.txt  the cupy half of tests/unit, tests/grad, tests/parity (-k cupy)
#   mpi_cupy.txt     tests/mpi's cupy cases on 2 ranks sharing the GPU
#   bench_core.txt   examples/benchmark_core.py (CPU figures of this machine, for scale)
# Each step has its own time limit; the script never stops at a failed step.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=${PYTHON:-python3}

{
    nvidia-smi || echo "nvidia-smi: not found"
    "$PY" -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" || true
    "$PY" -c "import cupy; print('devices', cupy.cuda.runtime.getDeviceCount())" || true
    "$PY" -c "import cupy; print('cuda runtime', cupy.cuda.runtime.runtimeGetVersion())" || true
    ompi_info --parsable --all 2>/dev/null | grep -i "cuda_support" || echo "ompi_info: no CUDA line"
    "$PY" -c "import mpi4py; print('mpi4py', mpi4py.__version__)" || true
} > "$OUT/env.txt" 2>&1

# NOTE: --no-deps keeps the machine's CuPy/torch/mpi4py; the small pure-Python needs are then
# installed if missing (this fails quietly where nothing outside the machine can be reached).
{
    "$PY" -m pip install --no-deps -e . &&
        "$PY" -m pip install "safetensors>=0.4" "tqdm>=4.60" "threadpoolctl>=3.5" pytest pytest-mpi
} > "$OUT/install.txt" 2>&1

timeout 420 "$PY" -m pytest -q -k cupy -p no:cacheprovider tests/unit tests/grad tests/parity \
    > "$OUT/pytest_cupy.txt" 2>&1
echo "exit $?" >> "$OUT/pytest_cupy.txt"

timeout 240 mpirun --allow-run-as-root --oversubscribe -n 2 -x OMP_NUM_THREADS=1 \
    "$PY" -m mpi4py -m pytest --with-mpi -q -k cupy -p no:cacheprovider tests/mpi \
    > "$OUT/mpi_cupy.txt" 2>&1
echo "exit $?" >> "$OUT/mpi_cupy.txt"

timeout 240 "$PY" examples/benchmark_core.py --rounds 3 --steps 10 > "$OUT/bench_core.txt" 2>&1
echo "exit $?" >> "$OUT/bench_core.txt"
