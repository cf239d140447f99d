"""The public surface is pinned: a change here is a deliberate API change."""

from __future__ import annotations

import importlib
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


# The exact public surface, one literal list per package: adding, renaming or removing a public
# name shows in review here. Update the list in the same change as the ``__all__`` it mirrors.
PUBLIC_API = {
    "dropkit": [
        "__version__", "audit", "checkpoint", "checkpoint_context", "functional", "integrations",
        "kernels", "mc_mode", "nn", "p_eff", "rng", "schedules", "summary", "surgery", "testing",
        "uncertainty",
        # learned rates (issue 12)
        "LearnedRate", "MetaRateTuner", "export_pruned", "learned_rates", "regularization",
        "sparsity",
    ],
    "dropkit.nn": [
        "ADL", "AlphaDropout", "AttentionDropout", "BiasActDropout", "BiasActDropoutAdd",
        "BiasDropoutAdd", "DropBlock2d", "DropBlock3d", "DropConnectConv1d", "DropConnectConv2d",
        "DropConnectConv3d", "DropConnectLinear", "DropHead", "DropKey", "DropPath", "Dropout",
        "DropoutModule", "EmbeddingDropout", "FeatureAlphaDropout", "GaussianDropout",
        "LockedDropout", "PatchDropout", "SpatialDropout1d", "SpatialDropout2d",
        "SpatialDropout3d", "VariationalGRU", "VariationalLSTM", "WeightDrop", "ZoneoutGRUCell",
        "ZoneoutLSTMCell",
        # learned rates (issue 12)
        "ConcreteDropout", "Conv2dSVDO", "LearnedDropoutModule", "LinearSVDO", "SparseLinear",
        "SparsityReport", "SpatialConcreteDropout", "Standout", "VariationalDropoutConv2d",
        "VariationalDropoutLinear", "export_pruned", "sparsity",
    ],
    "dropkit.functional": [
        "adl", "alpha_dropout", "attention", "bias_act_dropout", "bias_act_dropout_add",
        "bias_dropout_add", "depth_rates", "drop_block", "drop_block2d", "drop_block3d",
        "drop_connect_conv", "drop_connect_linear", "drop_head", "drop_key", "drop_path",
        "drop_path_add", "dropout", "embedding_dropout", "feature_alpha_dropout",
        "gaussian_dropout", "locked_dropout", "patch_dropout", "spatial_dropout",
        "variational_rnn", "weight_dropout_call", "zoneout", "zoneout_cell",
        # learned rates (issue 12)
        "concrete_dropout", "concrete_regularizer", "kl_kingma", "kl_molchanov",
        "local_reparam_conv2d", "local_reparam_linear", "standout",
    ],
    "dropkit.surgery": [
        "AuditReport", "ConversionError", "ConversionReport", "DropoutSite", "DropoutSummary",
        "Finding", "FunctionalDropoutRouter", "PRESETS", "audit", "convert", "insert",
        "is_dropout_like", "preset_rates", "register_conversion", "register_unsupported", "remove",
        "route_functional", "set_rates", "site_seed", "summary", "to_torch", "unroute_functional",
        # drop-in fidelity (issue 15)
        "torch_state_dict",
    ],
    "dropkit.schedules": [
        "DropoutScheduler", "LinearRamp", "Schedule", "constant", "cosine", "curriculum", "early",
        "exponential", "join", "late", "linear", "linear_by_depth", "piecewise", "rate_modules",
        "stagewise", "step", "warmup",
    ],
    "dropkit.uncertainty": [
        "ClassificationReducer", "ClassificationSummary", "IntervalCalibration", "MCCapable",
        "MeanReducer", "Moments", "MomentsReducer", "Reducer", "ReliabilityDiagram", "brier_score",
        "check_probabilities", "entropy", "epistemic_variance", "expected_calibration_error",
        "expected_entropy", "gaussian_log_likelihood", "interval_calibration", "is_mc_capable",
        "mc_mode", "mutual_information", "negative_log_likelihood", "ood_aupr", "ood_auroc",
        "plot_reliability_diagram", "predictive_entropy", "predictive_mean", "reliability_diagram",
        "rmse", "sample", "total_variance", "variation_ratio",
        # HF outputs (issue 15)
        "select_output",
    ],
    "dropkit.integrations": [
        "scheduled",
    ],
    "dropkit.integrations.huggingface": [
        "DROPOUT_FILE", "apply_dropout_state", "dropout_state", "from_pretrained",
        "save_pretrained",
    ],
    "dropkit.experiments": [
        "UsageError", "compare",
    ],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_public_api_snapshot(package):
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{package}.__all__ lists a name twice"
    assert sorted(exported) == sorted(PUBLIC_API[package])
    for name in exported:
        assert hasattr(module, name), f"{package}.{name}"
