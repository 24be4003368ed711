#!/usr/bin/env bash
# Runs a disttrain script on N ranks spread over the hosts of an Open MPI hostfile.
#
#   launch/cluster.sh HOSTFILE N script.py [script args...]
#   launch/cluster.sh launch/hostfile.example 16 examples/scale_benchmark.py --worker ...
#
# Requirements on every host: the same paths (a shared filesystem, or the repository and its
# virtual environment copied to the same place), the same Open MPI and mpi4py, and password-less
# ssh from this host to the others (Open MPI starts its daemons over ssh). See
# launch/hostfile.example for the hostfile format.
#
# What it does: mpirun --hostfile HOSTFILE -n N --map-by $MAP_BY --bind-to $BIND_TO
#   -x PYTHONPATH (repository root prepended) -x PATH -x LD_LIBRARY_PATH [-x VIRTUAL_ENV]
#   [-x OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/MKL_NUM_THREADS when set here]
#   -x GLIBC_TUNABLES (+ glibc.malloc.hugetlb=1) -x DISTTRAIN_TUNE_MALLOC=1 (DISTTRAIN_HUGE_PAGES=0: neither)
#   python -m mpi4py script.py args
# When the BLAS thread variables are not set, disttrain.distributed.init() gives each rank
# cores-per-node / ranks-per-node threads on its own node, which is usually what you want.
#
# Environment knobs:
#   PYTHON       interpreter, the same path on every host (default: $VIRTUAL_ENV/bin/python,
#                else <repo>/.venv/bin/python if present, else python3)
#   MPIRUN       launcher (default: mpirun next to PYTHON, else mpirun on PATH)
#   MAP_BY       rank placement (default "slot": fill each host's slots in hostfile order, so
#                neighbouring ranks share a node; "node" deals ranks round-robin over hosts;
#                "ppr:8:node" puts 8 ranks per node)
#   BIND_TO      "core" (default), "socket", "none"
#   TRANSPORT    "auto" (default: Open MPI picks, e.g. UCX or libfabric on InfiniBand/EFA) or
#                "tcp" (force TCP between nodes and shared memory inside one: --mca pml ob1
#                --mca btl tcp,self,sm; use it on plain Ethernet clusters, or when auto-selection
#                picks a device that does not work)
#   NET_IF       interface or CIDR to use for TCP, e.g. "eth0" or "10.0.0.0/24" (sets
#                btl_tcp_if_include and oob_tcp_if_include). Set it when hosts have several
#                interfaces (docker0, virbr0, ...): Open MPI may otherwise try an unroutable one
#                and hang at start-up.
#   MPI_PREFIX   Open MPI install prefix on the remote hosts (--prefix), when their
#                non-interactive ssh shell does not have mpirun's directory on PATH
#   MPIRUN_ARGS  extra mpirun options, split on spaces
set -euo pipefail

usage() {
    echo "usage: $0 HOSTFILE N script.py [args...]" >&2
    exit 2
}

[[ $# -ge 3 ]] || usage
hostfile=$1
nranks=$2
shift 2
[[ -r $hostfile ]] || { echo "$0: cannot read hostfile '$hostfile'" >&2; exit 2; }
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
command -v "$mpirun" >/dev/null || { echo "$0: '$mpirun' not found" >&2; exit 127; }

args=(--hostfile "$hostfile" -n "$nranks" --map-by "${MAP_BY:-slot}" --bind-to "${BIND_TO:-core}")
if [[ $(id -u) -eq 0 ]]; then
    echo "cluster.sh: running as root, adding --allow-run-as-root" >&2
    args+=(--allow-run-as-root)
fi
if [[ -n ${MPI_PREFIX:-} ]]; then
    args+=(--prefix "$MPI_PREFIX")
fi

case ${TRANSPORT:-auto} in
    auto) ;;
    tcp) args+=(--mca pml ob1 --mca btl "tcp,self,sm") ;;
    *) echo "$0: TRANSPORT must be 'auto' or 'tcp', got '$TRANSPORT'" >&2; exit 2 ;;
esac
if [[ -n ${NET_IF:-} ]]; then
    args+=(--mca btl_tcp_if_include "$NET_IF" --mca oob_tcp_if_include "$NET_IF")
fi

export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
args+=(-x PYTHONPATH -x PATH)
[[ -z ${LD_LIBRARY_PATH:-} ]] || args+=(-x LD_LIBRARY_PATH)
[[ -z ${VIRTUAL_ENV:-} ]] || args+=(-x VIRTUAL_ENV)
for var in OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS; do
    [[ -z ${!var:-} ]] || args+=(-x "$var")
done

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

echo "cluster.sh: $nranks ranks over $hostfile (map-by ${MAP_BY:-slot}," \
     "transport ${TRANSPORT:-auto}), $mpirun" >&2
exec "$mpirun" "${args[@]}" "${extra[@]}" "$python" -m mpi4py "$@"
