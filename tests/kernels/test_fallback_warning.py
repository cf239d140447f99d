"""Backend-fallback warnings point at the caller's line and name the extra to install."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import torch

import dropkit
from dropkit import kernels

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_unsupported_dtype_warning_points_at_the_callers_line(monkeypatch) -> None:
    monkeypatch.setattr(kernels._dispatch, "_warned", set())
    layer = dropkit.nn.Dropout(0.5)
    with warnings.catch_warnings(record=True) as caught, kernels.use_backend("triton"):
        warnings.simplefilter("always")
        layer(torch.randn(4, 4, dtype=torch.float64))
        line = sys._getframe().f_lineno - 1
    (warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert warning.filename == __file__
    assert warning.lineno == line


def test_missing_numba_names_the_cpu_extra(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(
        "import sys\n"
        "sys.modules['numba'] = None\n"
        "import torch, dropkit\n"
        "y = dropkit.functional.dropout(torch.randn(8), 0.5, seed=0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "always", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert f"{script}:4: RuntimeWarning" in result.stderr
    assert "pip install 'dropkit[cpu]'" in result.stderr
