"""local_attention against its definition (full attention with the band masked out), for
every implementation that can run on this machine."""

from __future__ import annotations

import platform

import mlx.core as mx
import numpy as np
import pytest

import asr.kernels.portable as portable
from asr.kernels import available_backends, exact_matmul, local_attention, reference_local_attention

TOLERANCE = {mx.float32: 1e-4, mx.float16: 4e-3, mx.bfloat16: 3e-2}


def _machine() -> str:
    system = {"Darwin": "macOS", "Linux": "Linux", "Windows": "Windows"}.get(
        platform.system(), platform.system()
    )
    accel = "CUDA" if hasattr(mx, "cuda") and mx.cuda.is_available() else "CPU"
    return f"{system} {accel}"


def _backend_param(name: str, label: str):
    reason = f"{label} is not available on this machine ({_machine()})"
    return pytest.param(
        name, marks=pytest.mark.skipif(name not in available_backends(), reason=reason)
    )


BACKENDS = [
    _backend_param("portable", "portable MLX"),
    _backend_param("cuda", "CUDA"),
    _backend_param("metal", "Metal"),
]


def _inputs(b, h, t, d, left, right, *, bias=False, bias_batch=1, dtype=mx.float32, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (mx.array(rng.standard_normal((b, h, t, d)), dtype) for _ in range(3))
    band = None
    if bias:
        band = mx.array(rng.standard_normal((bias_batch, h, t, left + right + 1)), dtype)
    return q, k, v, band


def _check(out: mx.array, ref: mx.array, dtype) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    out32, ref32 = np.array(out.astype(mx.float32)), np.array(ref.astype(mx.float32))
    assert np.isfinite(out32).all()
    np.testing.assert_allclose(out32, ref32, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


CASES = [
    # (B, H, T, D, left, right)
    pytest.param(2, 3, 150, 64, 37, 11, id="asymmetric"),
    pytest.param(1, 2, 150, 64, 11, 37, id="asymmetric-right-heavy"),
    pytest.param(2, 2, 133, 64, 40, 0, id="causal"),
    pytest.param(1, 2, 200, 64, 16, 16, id="symmetric"),
    pytest.param(1, 1, 77, 64, 16, 16, id="T-not-multiple-of-window"),
    pytest.param(2, 2, 5, 64, 16, 16, id="T-smaller-than-window"),
    pytest.param(1, 1, 1, 64, 3, 3, id="T-is-1"),
    pytest.param(1, 2, 90, 64, 0, 0, id="no-context"),
    pytest.param(1, 2, 300, 128, 64, 64, id="head-128"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("b,h,t,d,left,right", CASES)
def test_matches_reference(backend, with_bias, b, h, t, d, left, right):
    q, k, v, bias = _inputs(b, h, t, d, left, right, bias=with_bias)
    out = local_attention(q, k, v, left=left, right=right, bias=bias, backend=backend)
    ref = reference_local_attention(q, k, v, left=left, right=right, bias=bias)
    _check(out, ref, mx.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16, mx.float16], ids=str)
def test_dtypes(backend, dtype):
    q, k, v, bias = _inputs(2, 2, 170, 64, 30, 20, bias=True, bias_batch=2, dtype=dtype)
    out = local_attention(q, k, v, left=30, right=20, bias=bias, backend=backend)
    ref = reference_local_attention(q, k, v, left=30, right=20, bias=bias)
    _check(out, ref, dtype)


def _cuda_16_bit_kernel(kernel: str):
    """One of the CUDA kernels that take 16-bit inputs, by name, with one signature."""
    from asr.kernels import cuda_simt, cuda_tensor_core, cuda_wgmma

    if kernel == "wgmma":
        probe = mx.zeros((1, 1, 1, 64), mx.bfloat16)
        if "cuda" not in available_backends() or not cuda_wgmma.supports(probe):
            pytest.skip(f"the warpgroup kernel needs a Hopper GPU ({_machine()})")
        return cuda_wgmma.wgmma_local_attention
    if "cuda" not in available_backends():
        pytest.skip(f"CUDA is not available on this machine ({_machine()})")
    if kernel == "mma":
        return cuda_tensor_core.tensor_core_local_attention
    return cuda_simt.simt_local_attention


@pytest.mark.parametrize("kernel", ["wgmma", "mma", "cuda-cores"])
@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=str)
@pytest.mark.parametrize("b,h,t,d,left,right", CASES)
def test_cuda_kernels_in_16_bits(kernel, dtype, b, h, t, d, left, right):
    attend = _cuda_16_bit_kernel(kernel)
    q, k, v, bias = _inputs(b, h, t, d, left, right, bias=True, bias_batch=b, dtype=dtype)
    key_mask = mx.array(np.random.default_rng(6).random((b, t)) < 0.8)
    out = attend(q, k, v, left, right, bias, key_mask, d**-0.5)
    ref = reference_local_attention(q, k, v, left=left, right=right, bias=bias, key_mask=key_mask)
    _check(out, ref, dtype)


@pytest.mark.parametrize(
    "kernel,blocks", [("mma", 4), ("mma", 8), ("wgmma", 1), ("wgmma", 2)], ids=str
)
@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=str)
@pytest.mark.parametrize(
    "b,h,t,d,left,right,masked,bias_batch",
    [
        pytest.param(1, 2, 1100, 128, 256, 256, False, 1, id="parakeet-band"),
        pytest.param(2, 1, 700, 64, 200, 9, True, 2, id="long-asymmetric-masked"),
        pytest.param(2, 2, 650, 64, 130, 0, False, 1, id="long-causal"),
        pytest.param(1, 1, 500, 256, 70, 70, False, 1, id="head-256"),
    ],
)
def test_tensor_core_kernels_long_bands(
    kernel, blocks, dtype, b, h, t, d, left, right, masked, bias_batch
):
    # Long enough for tiles wholly inside every row's band (no masking there), and a band
    # term that starts at an odd element, so its 16-byte copies are not aligned with rows.
    attend = _cuda_16_bit_kernel(kernel)
    if d > 128 and (kernel, blocks) != ("mma", 4):
        pytest.skip("heads over 128 run on the mma.sync kernel with 4 warps only")
    q, k, v, _ = _inputs(b, h, t, d, left, right, dtype=dtype, seed=7)
    width = left + right + 1
    flat = mx.array(np.random.default_rng(8).standard_normal(bias_batch * h * t * width + 1), dtype)
    bias = flat[1:].reshape(bias_batch, h, t, width)
    key_mask = mx.array(np.random.default_rng(9).random((b, t)) < 0.9) if masked else None
    out = attend(q, k, v, left, right, bias, key_mask, d**-0.5, blocks)
    ref = reference_local_attention(q, k, v, left=left, right=right, bias=bias, key_mask=key_mask)
    _check(out, ref, dtype)


@pytest.mark.parametrize("warpgroups", [1, 2])
@pytest.mark.parametrize("per_block", [2, 3, 1000])
@pytest.mark.parametrize(
    "b,t,left,right,masked",
    [
        pytest.param(1, 1300, 256, 256, False, id="parakeet-band"),
        pytest.param(2, 900, 200, 9, True, id="asymmetric-masked"),
        pytest.param(1, 700, 100, 0, False, id="causal"),
        pytest.param(1, 333, 7, 40, False, id="narrow-band"),
    ],
)
def test_warpgroup_kernel_blocks_of_several_chunks(
    warpgroups, per_block, b, t, left, right, masked
):
    # A block that goes on to further chunks of 64 or 128 queries (every G-th of its head)
    # must give each chunk's rows exactly what a block of their own would, through to the
    # last, partial one, with the pipeline of copies running across chunks.
    attend = _cuda_16_bit_kernel("wgmma")
    h, d = 2, 128
    q, k, v, bias = _inputs(
        b, h, t, d, left, right, bias=True, bias_batch=b, dtype=mx.bfloat16, seed=11
    )
    key_mask = mx.array(np.random.default_rng(12).random((b, t)) < 0.85) if masked else None
    out = attend(q, k, v, left, right, bias, key_mask, d**-0.5, warpgroups, per_block=per_block)
    ref = reference_local_attention(q, k, v, left=left, right=right, bias=bias, key_mask=key_mask)
    _check(out, ref, mx.bfloat16)
    one = attend(q, k, v, left, right, bias, key_mask, d**-0.5, warpgroups, per_block=1)
    assert np.array_equal(np.array(out.astype(mx.float32)), np.array(one.astype(mx.float32)))


@pytest.mark.parametrize(
    "chunks,heads,multiprocessors",
    [(1055, 8, 132), (176, 8, 132), (59, 8, 132), (352, 16, 114), (700, 1, 132), (2110, 8, 78)],
)
def test_warpgroup_blocks_fill_their_waves(chunks, heads, multiprocessors):
    # One block runs per multiprocessor, so the chunks a block takes decide how many waves of
    # blocks run and how full the last one is: 3 hours on an H200 (1055 chunks of 8 heads on
    # 132 multiprocessors) must not leave a last wave 15% full, as 7 chunks per block did.
    from asr.kernels.cuda_wgmma import chunks_per_block

    per_block = chunks_per_block(chunks, heads, multiprocessors)
    blocks = -(-chunks // per_block) * heads
    full_waves, last_wave = divmod(blocks, multiprocessors)
    assert full_waves >= 1
    assert last_wave == 0 or last_wave >= multiprocessors * 3 // 4
    if (chunks, heads, multiprocessors) == (1055, 8, 132):
        assert (per_block, blocks) == (32, 2 * 132)


def test_warpgroup_blocks_of_few_chunks_take_one_each():
    from asr.kernels.cuda_wgmma import chunks_per_block

    # Fewer chunks than multiprocessors: every chunk gets a block of its own.
    assert chunks_per_block(3, 1, 132) == 1
    assert chunks_per_block(11, 2, 132) == 1


@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("warpgroups", [1, 2])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_warpgroup_kernel_fits_a_multiprocessor(head_dim, warpgroups, with_bias):
    # The producer warpgroup hands registers to the consumers (setmaxnreg): were the
    # consumers to ask for more than it gives back, they would wait for them forever. At
    # launch a thread has at most 64K / threads registers (168 for 3 warpgroups, as ptxas
    # reports). And 4 stages, their barriers and the output buffers fit a block's memory.
    from asr.kernels import cuda_wgmma

    for regs in (cuda_wgmma.PRODUCER_REGS, cuda_wgmma.CONSUMER_REGS):
        assert regs % 8 == 0 and 24 <= regs <= 256
    threads = 128 * (warpgroups + 1)
    at_launch = min(255, 65536 // threads) // 8 * 8
    given_back = 128 * (at_launch - cuda_wgmma.PRODUCER_REGS)
    asked_for = 128 * warpgroups * max(0, cuda_wgmma.CONSUMER_REGS - at_launch)
    assert asked_for <= given_back
    assert cuda_wgmma.pipeline_stages(head_dim, warpgroups, with_bias) == 4
    assert cuda_wgmma.shared_bytes(head_dim, warpgroups, with_bias) <= cuda_wgmma.MAX_SHARED_BYTES


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_padded_batch(backend, with_bias):
    b, h, t, d, left, right = 3, 2, 160, 64, 24, 24
    q, k, v, bias = _inputs(b, h, t, d, left, right, bias=with_bias, bias_batch=b)
    lengths = np.array([t, 97, 3])
    key_mask = mx.array(np.arange(t)[None, :] < lengths[:, None])
    out = local_attention(
        q, k, v, left=left, right=right, bias=bias, key_mask=key_mask, backend=backend
    )
    ref = reference_local_attention(q, k, v, left=left, right=right, bias=bias, key_mask=key_mask)
    _check(out, ref, mx.float32)
    # Queries of the third sequence beyond its band of 3 real keys see no key at all.
    assert np.all(np.array(out[2, :, 3 + left :]) == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_mask_rows_without_keys_are_zero(backend):
    b, h, t, d, left, right = 2, 2, 120, 64, 4, 2
    q, k, v, bias = _inputs(b, h, t, d, left, right, bias=True)
    rng = np.random.default_rng(1)
    key_mask = mx.array(rng.random((b, t)) < 0.25)
    out = local_attention(
        q, k, v, left=left, right=right, bias=bias, key_mask=key_mask, backend=backend
    )
    ref = reference_local_attention(q, k, v, left=left, right=right, bias=bias, key_mask=key_mask)
    _check(out, ref, mx.float32)
    km = np.array(key_mask)
    empty = [
        (bi, i)
        for bi in range(b)
        for i in range(t)
        if not km[bi, max(0, i - left) : i + right + 1].any()
    ]
    assert empty, "the mask should leave some queries without keys"
    for bi, i in empty:
        assert np.all(np.array(out[bi, :, i]) == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_inputs_and_explicit_scale(backend):
    # Callers usually hand over (B, T, H, D) projections transposed to (B, H, T, D).
    rng = np.random.default_rng(2)
    b, t, h, d = 2, 140, 4, 64
    q, k, v = (
        mx.array(rng.standard_normal((b, t, h, d)), mx.float32).transpose(0, 2, 1, 3)
        for _ in range(3)
    )
    out = local_attention(q, k, v, left=20, right=9, scale=0.3, backend=backend)
    ref = reference_local_attention(q, k, v, left=20, right=9, scale=0.3)
    _check(out, ref, mx.float32)


def test_portable_groups_and_block_sizes(monkeypatch):
    # Tiny groups force many groups (spread over the CPU streams) and a concatenation.
    monkeypatch.setattr(portable, "GROUP_ELEMENTS", 4096)
    q, k, v, bias = _inputs(2, 2, 301, 64, 25, 13, bias=True, bias_batch=2)
    key_mask = mx.array(np.random.default_rng(3).random((2, 301)) < 0.7)
    ref = reference_local_attention(q, k, v, left=25, right=13, bias=bias, key_mask=key_mask)
    for block in (1, 7, 32, 512):
        out = portable.portable_local_attention(q, k, v, 25, 13, bias, key_mask, 64**-0.5, block)
        _check(out, ref, mx.float32)


def test_portable_split_products():
    # The path taken where the device rounds float32 products to TF32 (NVIDIA GPUs).
    q, k, v, bias = _inputs(2, 2, 150, 64, 30, 7, bias=True, bias_batch=2)
    key_mask = mx.array(np.random.default_rng(4).random((2, 150)) < 0.5)
    out = portable.portable_local_attention(
        q, k, v, 30, 7, bias, key_mask, 64**-0.5, split_products=True
    )
    ref = reference_local_attention(q, k, v, left=30, right=7, bias=bias, key_mask=key_mask)
    _check(out, ref, mx.float32)


def test_split_parts_are_tf32_exact():
    x = mx.array(np.random.default_rng(5).standard_normal(1000), mx.float32)
    hi, lo = exact_matmul.split(x)
    assert np.all(np.array(mx.view(hi, mx.uint32)) & 0x1FFF == 0)
    assert np.array_equal(np.array(hi + lo), np.array(x))


def test_auto_backend_matches_reference():
    q, k, v, bias = _inputs(1, 2, 100, 64, 10, 5, bias=True)
    out = local_attention(q, k, v, left=10, right=5, bias=bias)
    ref = reference_local_attention(q, k, v, left=10, right=5, bias=bias)
    _check(out, ref, mx.float32)


def test_portable_memory_is_linear():
    # Full attention here would need a 40000 x 40000 float32 score matrix (6.4 GB).
    t, d = 40000, 32
    q, k, v, _ = _inputs(1, 1, t, d, 32, 32)
    mx.eval(q, k, v)
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    mx.eval(local_attention(q, k, v, left=32, right=32, backend="portable"))
    assert mx.get_peak_memory() - before < 200e6


def test_rejects_bad_arguments():
    q, k, v, bias = _inputs(1, 2, 10, 64, 2, 2, bias=True)
    with pytest.raises(ValueError, match="left and right"):
        local_attention(q, k, v, left=-1, right=2)
    with pytest.raises(ValueError, match="bias"):
        local_attention(q, k, v, left=3, right=2, bias=bias)
    with pytest.raises(ValueError, match="key_mask"):
        local_attention(q, k, v, left=2, right=2, key_mask=mx.ones((1, 10)))
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        local_attention(q, k[:, :, :5], v, left=2, right=2)
    with pytest.raises(ValueError, match="not available"):
        local_attention(q, k, v, left=2, right=2, backend="no-such-backend")  # type: ignore[arg-type]
