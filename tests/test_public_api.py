"""The public surface is pinned: a change here is a deliberate API change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dropkit

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_api():
    assert {"functional", "nn", "rng", "kernels", "p_eff", "__version__"} <= set(dropkit.__all__)
    assert {"mc_mode", "uncertainty"} <= set(dropkit.__all__)
    for name in dropkit.__all__:
        assert hasattr(dropkit, name), name


def test_functional_and_nn_api():
    assert {
        "dropout",
        "spatial_dropout",
        "locked_dropout",
        "gaussian_dropout",
        "alpha_dropout",
        "feature_alpha_dropout",
    } <= set(dropkit.functional.__all__)
    assert {
        "Dropout",
        "SpatialDropout1d",
        "SpatialDropout2d",
        "SpatialDropout3d",
        "LockedDropout",
        "GaussianDropout",
        "AlphaDropout",
        "FeatureAlphaDropout",
    } <= set(dropkit.nn.__all__)
    for module in (
        dropkit.functional,
        dropkit.nn,
        dropkit.rng,
        dropkit.kernels,
        dropkit.uncertainty,
    ):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_core_import_pulls_no_optional_dependency():
    code = (
        "import sys, dropkit, dropkit.nn, dropkit.functional; "
        "heavy = {'matplotlib', 'sklearn', 'scipy', 'optuna', 'rich', 'triton', 'pandas', "
        "'numba', 'llvmlite'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ruff_clean():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment")
    result = subprocess.run([str(ruff), "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
