"""examples/scaling_model.py and its model (examples/alpha_beta_model.py): the alpha-beta fit
recovers known latency and bandwidth, the cost formulas (zero at 1 rank, hierarchical vs flat),
the overlap and pipeline terms, and a --quick run end to end."""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
import alpha_beta_model as sm  # noqa: E402
import scaling_model  # noqa: E402

SIZES = [1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 26]


@pytest.mark.parametrize("kind", sm.KINDS)
def test_fit_recovers_known_alpha_beta(kind):
    alpha, beta = 7e-6, 1 / 3e9
    rows = [(p, n, sm.cost(kind, p, n, alpha, beta)) for p in (2, 3, 4, 8) for n in SIZES]
    a, b = sm.fit_alpha_beta(kind, rows)
    assert a == pytest.approx(alpha, rel=1e-9) and b == pytest.approx(beta, rel=1e-9)


def test_fit_drops_descheduled_outliers():
    alpha, beta = 2e-6, 1 / 2e9
    rows = [(2, n, sm.cost("ring", 2, n, alpha, beta)) for n in SIZES]
    rows[1] = (2, SIZES[1], 12e-3)  # NOTE: a 12 ms scheduler quantum on a ~10 us call
    a, b = sm.fit_alpha_beta("ring", rows)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(beta, rel=1e-6)


def test_regimes_fit_small_and_large_messages_apart():
    small, large = (1e-6, 1 / 8e9), (1e-6, 1 / 1e9)
    sizes = [1 << k for k in range(10, 27, 2)]
    rows = [(p, n, sm.cost("allgather", p, n, *(small if n < sm.SPLIT_BYTES else large)))
            for p in (2, 4) for n in sizes]
    fit = sm.fit_regimes("allgather", rows)
    assert fit == pytest.approx((*small, *large), rel=1e-6)
    assert sm.ab(fit, 1 << 10) == pytest.approx(small) and sm.ab(fit, 1 << 24) == \
        pytest.approx(large)
    assert sm.ab((3.0, 4.0), 1 << 30) == (3.0, 4.0)
    only_small = sm.fit_regimes("allgather", [r for r in rows if r[1] < sm.SPLIT_BYTES])
    assert only_small[:2] == only_small[2:]
    with pytest.raises(ValueError, match=r"fit_regimes\(allgather\): need >= 2 rows with p > 1 "
                                         r"below 2097152 bytes, got 0"):
        sm.fit_regimes("allgather", [r for r in rows if r[1] >= sm.SPLIT_BYTES])


def test_fit_clamps_to_non_negative():
    # NOTE: times that fall with size would need a negative beta: the fit keeps alpha only
    rows = [(2, n, 1e-3 / (1 + i)) for i, n in enumerate(SIZES)]
    a, b = sm.fit_alpha_beta("ring", rows)
    assert a > 0 and b == 0.0


def test_fit_needs_two_multi_rank_rows():
    with pytest.raises(ValueError, match=r"fit_alpha_beta\(ring\): need >= 2 rows with p > 1, "
                                         r"got 1"):
        sm.fit_alpha_beta("ring", [(1, 1024, 1e-3), (2, 1024, 1e-3)])


@pytest.mark.parametrize("kind", sm.KINDS)
def test_one_rank_costs_nothing(kind):
    assert sm.coefficients(kind, 1, 1 << 20) == (0.0, 0.0)
    assert sm.cost(kind, 1, 1 << 20, 1.0, 1.0) == 0.0


def test_formulas():
    n = 1 << 20
    assert sm.coefficients("ring", 4, n) == (6.0, 1.5 * n)
    assert sm.coefficients("reduce_scatter", 4, n) == (3.0, 0.75 * n)
    assert sm.coefficients("allgather", 4, n) == sm.coefficients("reduce_scatter", 4, n)
    assert [sm.rd_steps(p) for p in (1, 2, 3, 4, 6, 8, 1024)] == [0, 1, 3, 2, 4, 3, 10]
    assert sm.coefficients("recursive_doubling", 8, n) == (3.0, 3.0 * n)
    with pytest.raises(ValueError, match="kind must be one of .* got 'tree'"):
        sm.coefficients("tree", 4, n)


def _fits(alpha=1e-6, beta=1e-10):
    return {k: (alpha, beta) for k in sm.KINDS}


def _workload(compute_s=0.1, buckets=(8 << 20, 8 << 20, 1 << 20)):
    return {"compute_s": compute_s, "backward_share": 0.6, "buckets": list(buckets),
            "batch": 256, "act_bytes_per_sample": 8192, "imbalance": {1: 1.0, 2: 1.2}}


def test_one_rank_step_is_the_compute():
    w, net = _workload(), sm.network(_fits(), "25GbE")
    assert sm.allreduce(1 << 20, 1, net) == 0.0
    assert sm.dp_step(w, 1, net, phi=0.5) == pytest.approx(w["compute_s"])
    assert sm.dp_step(w, 1, net, phi=0.5, zero=True) == pytest.approx(w["compute_s"])
    assert sm.dp_step(dict(w, overhead_s=0.01), 1, net, 0.5) == pytest.approx(0.11)


def test_single_node_uses_the_faster_intra_algorithm():
    fits = {"ring": (1e-6, 1e-10), "recursive_doubling": (1e-7, 1e-9),
            "reduce_scatter": (1e-6, 1e-10), "allgather": (1e-6, 1e-10)}
    net = sm.network(fits, "25GbE")  # NOTE: 8 ranks fit one node: no inter-node term
    small, big = 1 << 10, 1 << 26
    assert sm.allreduce(small, 8, net) == pytest.approx(sm.cost("recursive_doubling", 8, small,
                                                                *fits["recursive_doubling"]))
    assert sm.allreduce(big, 8, net) == pytest.approx(sm.cost("ring", 8, big, *fits["ring"]))


def test_hierarchical_pays_fewer_inter_node_latencies():
    net = sm.network(_fits(alpha=1e-6, beta=1e-11), "25GbE")
    p, n = 1024, 1 << 20
    flat_ring = 2 * (p - 1) * 30e-6 + 2 * (p - 1) / p * n * 8 / 25e9
    flat = sm.allreduce(n, p, net)
    assert flat <= flat_ring + 1e-12
    hier = sm.allreduce(n, p, net, hierarchical=True)
    assert hier < 0.5 * flat_ring
    # NOTE: bytes through each node's link are the same: a huge message costs about the same
    huge = 1 << 32
    assert sm.allreduce(huge, p, net, hierarchical=True) == pytest.approx(
        2 * (128 - 1) * 30e-6 + 2 * 127 / 128 * huge * 8 / 25e9
        + sm.cost("reduce_scatter", 8, huge, 1e-6, 1e-11)
        + sm.cost("allgather", 8, huge, 1e-6, 1e-11),
        rel=1e-9)


def test_exposed_and_overlap():
    assert sm.exposed(10.0, 2.0, backward_s=4.0, phi=1.0) == 6.0
    assert sm.exposed(10.0, 2.0, backward_s=100.0, phi=1.0) == 2.0  # NOTE: the last bucket
    assert sm.exposed(10.0, 2.0, backward_s=4.0, phi=0.0) == 10.0
    assert sm.exposed(0.0, 0.0, backward_s=4.0, phi=0.0) == 0.0
    measured = {1: {"comm_s": 0.0, "wait_s": 0.0}, 2: {"comm_s": 0.1, "wait_s": 0.025},
                4: {"comm_s": 0.2, "wait_s": 0.05}}
    assert scaling_model.measured_phi(measured) == pytest.approx(0.75)
    assert scaling_model.measured_phi({1: {"comm_s": 0.0, "wait_s": 0.0}}) is None


def test_pipeline_bubble_and_balance():
    w, net = _workload(buckets=()), sm.network(_fits(alpha=0.0, beta=0.0), "shm")
    for stages, micro in ((2, 4), (2, 16)):
        t = sm.pp_step(w, 8, net, phi=1.0, stages=stages, micro=micro)
        assert t == pytest.approx(w["compute_s"] * 1.2 * (micro + stages - 1) / micro)
    with pytest.raises(ValueError, match=r"ranks \(6\) must be a multiple of stages \(4\)"):
        sm.pp_step(w, 6, net, 1.0, stages=4, micro=8)
    assert sm.best_partition([1, 1, 1, 1], 2) == 1.0
    assert sm.best_partition([3, 1], 2) == 1.5
    assert sm.best_partition([1, 5, 1, 1], 2) == pytest.approx(6 * 2 / 8)
    assert sm.best_partition([1, 2], 1) == 1.0


def test_bucket_bytes_cover_every_parameter():
    sizes = [4 * 784 * 2048, 4 * 2048, 4 * 2048 * 2048, 4 * 2048, 4 * 2048 * 10, 4 * 10]
    buckets = sm.bucket_bytes(sizes)
    assert sum(buckets) == sum(sizes) and len(buckets) >= 2


def test_quick_run(tmp_path):
    if shutil.which("mpirun", path=str(pathlib.Path(sys.executable).parent)) is None \
            and shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    png = tmp_path / "model.png"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "scaling_model.py"),
                           "--quick", "--out", str(tmp_path), "--png", str(png)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Fitted alpha" in proc.stdout and "predicted vs measured" in proc.stdout
    assert "Projected weak-scaling efficiency, char_lm" in proc.stdout
    res = json.loads((tmp_path / "scaling_model.json").read_text())["result"]
    assert [c["ranks"] for c in res["check"]] == [1, 2]
    assert all(math.isfinite(c["error"]) for c in res["check"])
    rows = res["projection"]["mlp"]
    assert {(r["network"], r["ranks"]) for r in rows} == {
        (net, p) for net in sm.NETWORKS for p in sm.PROJECT_RANKS}
    assert all(0 < r[k] <= 1.0 for r in rows for k in r if k not in ("network", "ranks"))
    assert png.stat().st_size > 10_000
