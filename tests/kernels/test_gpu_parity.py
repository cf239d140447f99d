"""Every backend equals the reference bit for bit on every op of the op table
(:data:`dropkit.kernels.SPECS`), through the table of ``tests/kernels/parity.py``.

* Default suite (no GPU): the CPU backend and the Triton backend through its interpreter
  (``TRITON_INTERPRET=1``, set by ``tests/conftest.py``) at the quick level (the per-backend
  test files cover more layouts).
* ``gpu`` marker (a CUDA device): the Triton backend at GPU sizes, with the allocator poisoned
  before each call, plus int64 indexing, CUDA graphs and torch.compile. ``benchmarks/gpu_check.py``
  runs the same table without pytest.

A new op of an existing kind is covered by its entry in ``SPECS``; a new kind of op fails
:func:`test_every_spec_has_a_parity_case` until ``parity.CASES`` has a builder for it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dropkit.kernels import SPECS
from tests.kernels import parity

CUDA = torch.cuda.is_available()
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _backend(name: str):
    if name == "triton":
        pytest.importorskip("triton", reason="triton is not installed")
    backend = parity.backend_named(name)
    if backend is None:
        pytest.skip(f"backend {name!r} is unavailable")
    return backend


def test_every_spec_has_a_parity_case():
    missing = [name for name, spec in SPECS.items() if parity.kind_of(spec) not in parity.CASES]
    assert not missing, f"add a case builder to tests/kernels/parity.py CASES for {missing}"


@pytest.mark.parametrize("dtype", list(parity.DTYPES))
@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_backend_equals_reference(backend, spec, dtype):
    if backend == "triton" and CUDA:
        pytest.skip("the GPU test below runs Triton at full sizes")
    results = parity.check_spec(
        SPECS[spec], _backend(backend), torch.device("cpu"), parity.DTYPES[dtype], "quick"
    )
    assert results and not parity.failures(results), parity.failures(results)[:10]


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_grouped_step_and_mc_sampling_equal_the_reference(backend):
    if backend == "triton" and CUDA:
        pytest.skip("the GPU test below runs it on CUDA")
    results = parity.special_checks(torch.device("cpu"), _backend(backend))
    assert results and not parity.failures(results), parity.failures(results)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("dtype", list(parity.DTYPES))
@pytest.mark.parametrize("spec", list(SPECS))
def test_triton_equals_reference_on_gpu(spec, dtype):
    results = parity.check_spec(
        SPECS[spec], _backend("triton"), torch.device("cuda"), parity.DTYPES[dtype], "full"
    )
    assert results and not parity.failures(results), parity.failures(results)[:10]


@pytest.mark.gpu
@pytest.mark.slow
def test_int64_index_cuda_graph_and_compile_on_gpu():
    results = parity.special_checks(torch.device("cuda"), _backend("triton"))
    assert len(results) > 5 and not parity.failures(results), parity.failures(results)


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_runs_the_whole_script_on_cpu(tmp_path, capsys):
    """The GPU check's every phase at tiny sizes (interpreter): it cannot rot unnoticed."""
    pytest.importorskip("triton")
    if CUDA:
        pytest.skip("on a GPU machine run benchmarks/gpu_check.sh itself")
    gpu_check = _load_gpu_check()
    status = gpu_check.main(["--dry-run", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert status == 0, printed[-3000:]
    assert (tmp_path / "gpu_check.json").exists()
    assert "parity: " in printed and " 0 failed, 0 skipped" in printed, printed[-3000:]
    # The short table comes last, one row per op and pass.
    table = printed[printed.rindex("\nop ") :].strip().splitlines()
    assert printed.strip().endswith(table[-1])
    ops = {row.split()[0] for row in table[2:]}
    assert {"dropout", "drop_path_add", "bias_gelu_dropout_add"} <= ops, table


def test_gpu_check_refuses_a_cpu_run_without_dry_run(capsys):
    if CUDA:
        pytest.skip("needs a machine without CUDA")
    assert _load_gpu_check().main([]) == 2
    assert "--dry-run" in capsys.readouterr().out


def test_gpu_overhead_dry_run_runs_every_row_on_cpu(capsys):
    if CUDA:
        pytest.skip("on a GPU machine run benchmarks/gpu_overhead.py itself")
    path = SCRIPT.with_name("gpu_overhead.py")
    spec = importlib.util.spec_from_file_location("gpu_overhead", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "failed" not in printed and "drop_path_add fwd+bwd" in printed, printed
