"""MKL's products and vector math as the CPU encoder uses them, against numpy in float64."""

from __future__ import annotations

import os

import numpy as np
import pytest

import asr  # noqa: F401  (loads MKL)
from asr import core_pool, mkl_gemm, mkl_vector

pytestmark = pytest.mark.skipif(
    not (mkl_gemm.available() and mkl_vector.available()), reason="MKL is not loaded here"
)


def test_gemm_reads_and_writes_slices_and_accumulates():
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((50, 96), np.float32)
    weight = rng.standard_normal((40, 32), np.float32)  # (out, in), used transposed
    out = rng.standard_normal((50, 80), np.float32)
    before = out.copy()
    a = wide[:, 32:64]  # a column slice: rows 96 apart
    mkl_gemm.gemm(a, weight.T, out[:, 20:60], alpha=0.5, beta=1.0)
    expected = before.astype(np.float64)
    expected[:, 20:60] += 0.5 * a.astype(np.float64) @ weight.T.astype(np.float64)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    assert np.array_equal(out[:, :20], before[:, :20])  # nothing written outside the slice


def test_gemm_refuses_arrays_it_cannot_read():
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError):
        mkl_gemm.gemm(a[:, ::2], np.zeros((3, 2), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError):
        mkl_gemm.gemm(a.astype(np.float64), np.zeros((6, 2)), np.zeros((4, 2)))


def exact_gate(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """a * sigmoid(x) in float64 (exp(-x) may overflow to inf there: the gate is 0)."""
    with np.errstate(over="ignore"):
        return a.astype(np.float64) / (1 + np.exp(-x.astype(np.float64)))


def test_gates_stay_finite_where_exp_overflows():
    x = np.array(
        [-3e38, -1e4, -200, -89, -88, -87, -20, -1, -1e-30, 0, 1e-30, 1, 20, 87, 88, 89, 200, 1e4],
        np.float32,
    )
    silu = mkl_vector.silu_of_negated(-x, np.empty_like(x))
    exact = exact_gate(x, x)
    assert np.isfinite(silu).all()
    np.testing.assert_allclose(silu, exact, rtol=1e-6, atol=1e-30)
    a = np.linspace(-3, 3, len(x)).astype(np.float32)
    glu = mkl_vector.gate_of_negated(a, -x, np.empty_like(x))
    np.testing.assert_allclose(glu, exact_gate(a, x), rtol=1e-6, atol=1e-30)


def test_exp_flushes_only_what_float32_cannot_hold():
    x = np.linspace(-110, 80, 2001).astype(np.float32).reshape(3, 667)
    out = mkl_vector.exp(x, np.empty_like(x))
    exact = np.exp(x.astype(np.float64))
    normal = exact >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(out[normal], exact[normal], rtol=1e-6)
    assert (out[~normal] < np.finfo(np.float32).tiny).all()


def test_each_share_runs_once_and_errors_reach_the_caller():
    done = []
    core_pool.run_shares(done.append, 4)
    assert sorted(done) == [0, 1, 2, 3]

    def fail(share: int) -> None:
        if share == 1:
            raise RuntimeError("share 1 failed")

    with pytest.raises(RuntimeError, match="share 1"):
        core_pool.run_shares(fail, 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
def test_a_forked_child_gets_workers_of_its_own():
    core_pool.run_shares(lambda share: None, 2)  # the parent's pool exists
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        done = []
        core_pool.run_shares(done.append, 2)
        os.write(write, bytes(sorted(done)))
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert os.read(read, 8) == bytes([0, 1]) and status == 0
