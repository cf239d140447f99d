"""dropkit.rng equals Triton's tl.philox / tl.rand4x / tl.randn4x (interpreter on CPU)."""

from __future__ import annotations

import pytest
import torch

from dropkit import rng

triton = pytest.importorskip("triton", reason="triton is not installed")
tl = pytest.importorskip("triton.language")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _philox_kernel(out_ptr, seed, c2, c3, first_block, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < n
    block = (first_block + idx).to(tl.uint64)
    c0 = (block & 0xFFFFFFFF).to(tl.uint32)
    c1 = (block >> 32).to(tl.uint32)
    zero = tl.zeros_like(c0)
    r0, r1, r2, r3 = tl.philox(seed, c0, c1, zero + c2, zero + c3)
    tl.store(out_ptr + idx * 4 + 0, r0.to(tl.int32, bitcast=True), mask=valid)
    tl.store(out_ptr + idx * 4 + 1, r1.to(tl.int32, bitcast=True), mask=valid)
    tl.store(out_ptr + idx * 4 + 2, r2.to(tl.int32, bitcast=True), mask=valid)
    tl.store(out_ptr + idx * 4 + 3, r3.to(tl.int32, bitcast=True), mask=valid)


@triton.jit
def _rand_kernel(uniform_ptr, normal_ptr, seed, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = idx < n
    u0, u1, u2, u3 = tl.rand4x(seed, idx)
    z0, z1, z2, z3 = tl.randn4x(seed, idx)
    tl.store(uniform_ptr + idx * 4 + 0, u0, mask=valid)
    tl.store(uniform_ptr + idx * 4 + 1, u1, mask=valid)
    tl.store(uniform_ptr + idx * 4 + 2, u2, mask=valid)
    tl.store(uniform_ptr + idx * 4 + 3, u3, mask=valid)
    tl.store(normal_ptr + idx * 4 + 0, z0, mask=valid)
    tl.store(normal_ptr + idx * 4 + 1, z1, mask=valid)
    tl.store(normal_ptr + idx * 4 + 2, z2, mask=valid)
    tl.store(normal_ptr + idx * 4 + 3, z3, mask=valid)


@pytest.mark.parametrize(
    ("seed", "step", "first_block"),
    [(0, 0, 0), (0x299F31D0A4093822, 9 * 2**32 + 3, 5), (12345, 7, 2**32 - 3), (2**63 + 5, 1, 0)],
)
def test_philox_matches_triton(seed, step, first_block):
    n = 300
    out = torch.empty(n * 4, dtype=torch.int32, device=DEVICE)
    _philox_kernel[(triton.cdiv(n, 64),)](
        out, seed, step & 0xFFFFFFFF, step >> 32, first_block, n, BLOCK=64
    )
    expected = rng.random_words(seed, step, first_block, n)
    assert torch.equal(out.cpu().to(torch.int64).view(n, 4) & 0xFFFFFFFF, expected)


@pytest.mark.parametrize("seed", [0, 987654321, 0x299F31D0A4093822])
def test_uniform_and_normal_match_triton(seed):
    n_blocks = 257
    uniform = torch.empty(n_blocks * 4, dtype=torch.float32, device=DEVICE)
    normal = torch.empty(n_blocks * 4, dtype=torch.float32, device=DEVICE)
    _rand_kernel[(triton.cdiv(n_blocks, 64),)](uniform, normal, seed, n_blocks, BLOCK=64)
    # tl.rand4x(seed, offset) is counter (offset, 0, 0, 0): our step 0, block = offset.
    assert torch.equal(uniform.cpu(), rng.uniform((n_blocks * 4,), seed=seed, step=0))
    torch.testing.assert_close(
        normal.cpu(), rng.normal((n_blocks * 4,), seed=seed, step=0), rtol=4e-6, atol=4e-6
    )
