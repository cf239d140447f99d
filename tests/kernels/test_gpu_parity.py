"""The GPU parity phase of benchmarks/gpu_check.py, as a test (needs a CUDA device)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.gpu
@pytest.mark.slow
def test_triton_equals_reference_on_gpu():
    gpu_check = _load_gpu_check()
    results = gpu_check.run_parity(torch.device("cuda"), gpu_check.Clock(600.0))
    failures = [f"{r.case}: {r.detail}" for r in results if not r.passed]
    assert not failures, failures[:20]


def test_script_runs_its_smoke_mode_on_cpu(tmp_path):
    """The parity phase of the script itself works (interpreter, tiny sizes)."""
    pytest.importorskip("triton")
    gpu_check = _load_gpu_check()
    if torch.cuda.is_available():
        pytest.skip("covered by the GPU test")
    results = gpu_check._fused_parity(
        torch.device("cpu"), torch.Generator().manual_seed(0), 5, gpu_check.Clock(600.0), True
    )
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]
