"""Huge pages for the CPU fast path's fresh outputs: same bits on and off, aligned advice inside
the tensor only, nothing for small tensors."""

from __future__ import annotations

import pytest
import torch

import dropkit.functional as F
from dropkit import kernels

pytest.importorskip("numba")

from dropkit.kernels.cpu import _memory

# 8 MiB of float32 plus a ragged tail: above HUGE_PAGES_MIN_BYTES and the threading threshold.
NUMEL = (2 << 20) + 13


@pytest.fixture
def recorded_advice(monkeypatch):
    """Replaces libc's madvise by a recorder of ``(address, length, advice)``."""
    calls: list[tuple[int, int, int]] = []

    def madvise(address: int, length: int, advice: int) -> int:
        calls.append((address, length, advice))
        return 0

    monkeypatch.setattr(_memory, "_madvise", madvise)
    monkeypatch.setattr(_memory, "enabled", True)  # whatever DROPKIT_CPU_HUGE_PAGES says
    return calls


@pytest.fixture
def recorded_calls_to_real(monkeypatch):
    """Records the ranges passed to libc's madvise, and passes them on."""
    calls: list[int] = []
    real = _memory._madvise
    if real is None:
        pytest.skip("no madvise on this system")

    def madvise(address: int, length: int, advice: int) -> int:
        calls.append(length)
        return int(real(address, length, advice))

    monkeypatch.setattr(_memory, "_madvise", madvise)
    return calls


def _ops(x: torch.Tensor) -> dict[str, torch.Tensor]:
    kw = {"seed": 2**63 + 7, "step": 2**33 + 1, "offset": 5}
    leaf = x.detach().requires_grad_(True)
    forward = F.dropout(leaf, 0.3, **kw)
    forward.backward(torch.full_like(x, 1.5))
    # Strided input: the layout pass (one pass, its mask drawn chunk by chunk).
    strided = x[: 2048 * 1024].view(2048, 1024).repeat(2, 1).t()
    return {
        "dropout": forward.detach(),
        "dropout backward": leaf.grad,  # type: ignore[dict-item]
        "alpha_dropout": F.alpha_dropout(x, 0.2, **kw),
        "strided dropout": F.dropout(strided, 0.4, **kw),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_huge_pages_on_and_off_give_the_same_bits(dtype, recorded_calls_to_real, monkeypatch):
    x = torch.randn(NUMEL).to(dtype)
    with kernels.use_backend("cpu"):
        monkeypatch.setattr(_memory, "enabled", True)
        advised = _ops(x)
        monkeypatch.setattr(_memory, "enabled", False)
        plain = _ops(x)
    with kernels.use_backend("reference"):
        reference = _ops(x)
    # forward, backward, alpha, strided output (the layout pass draws the strided input's mask
    # chunk by chunk: no keep mask of the input's size)
    assert len(recorded_calls_to_real) == 4
    for name in advised:
        assert torch.equal(advised[name], plain[name]), name
        assert torch.equal(advised[name], reference[name]), name


def test_advice_covers_only_the_aligned_interior(recorded_advice):
    out = torch.empty(NUMEL, dtype=torch.float32)
    assert _memory.fresh(out) is out
    ((address, length, advice),) = recorded_advice
    start = out.data_ptr()
    assert advice == 14  # MADV_HUGEPAGE
    assert address % _memory.HUGE_PAGE_BYTES == 0 and length % _memory.HUGE_PAGE_BYTES == 0
    assert start <= address and address + length <= start + out.numel() * 4
    assert length >= out.numel() * 4 - 2 * _memory.HUGE_PAGE_BYTES


def test_small_tensors_and_the_off_switch_get_no_advice(recorded_advice, monkeypatch):
    small = torch.empty(_memory.HUGE_PAGES_MIN_BYTES // 4 - 1, dtype=torch.float32)
    assert not _memory.advise_huge_pages(small)
    assert _memory.fresh(small) is small
    with kernels.use_backend("cpu"):
        F.dropout(torch.randn(1000), 0.5, seed=0)
    assert recorded_advice == []
    monkeypatch.setattr(_memory, "enabled", False)
    _memory.fresh(torch.empty(NUMEL))
    assert recorded_advice == []


def test_dropout_advises_its_fresh_output(recorded_advice):
    x = torch.randn(NUMEL)
    with kernels.use_backend("cpu"):
        y = F.dropout(x, 0.5, seed=3)
    assert len(recorded_advice) == 1 and recorded_advice[0][0] >= y.data_ptr()


def test_real_advice_is_accepted_where_the_kernel_has_huge_pages():
    enabled = "/sys/kernel/mm/transparent_hugepage/enabled"
    try:
        with open(enabled) as modes:
            mode = modes.read()
    except OSError:
        pytest.skip("no transparent huge pages on this system")
    if "[never]" in mode or _memory._madvise is None:
        pytest.skip("transparent huge pages are off")
    out = _memory.fresh(torch.empty(NUMEL))
    assert _memory.advise_huge_pages(out)
    out.fill_(2.0)  # pages (huge or not) behave as memory
    assert bool((out == 2.0).all())
