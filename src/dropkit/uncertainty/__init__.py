"""Bayesian (MC) dropout: MC mode, a reproducible sampling engine and uncertainty metrics.

Samples always have one leading sample axis: ``(S, B, ...)``. scikit-learn (OOD metrics) and
matplotlib (plots) are imported only by the functions that need them.
"""

from dropkit.uncertainty._mc_mode import MCCapable, is_mc_capable, mc_mode
from dropkit.uncertainty._metrics import (
    IntervalCalibration,
    ReliabilityDiagram,
    brier_score,
    check_probabilities,
    entropy,
    epistemic_variance,
    expected_calibration_error,
    expected_entropy,
    gaussian_log_likelihood,
    interval_calibration,
    mutual_information,
    negative_log_likelihood,
    ood_aupr,
    ood_auroc,
    plot_reliability_diagram,
    predictive_entropy,
    predictive_mean,
    reliability_diagram,
    rmse,
    total_variance,
    variation_ratio,
)
from dropkit.uncertainty._sampling import (
    ClassificationReducer,
    ClassificationSummary,
    MeanReducer,
    Moments,
    MomentsReducer,
    Reducer,
    sample,
)

__all__ = [
    "ClassificationReducer",
    "ClassificationSummary",
    "IntervalCalibration",
    "MCCapable",
    "MeanReducer",
    "Moments",
    "MomentsReducer",
    "Reducer",
    "ReliabilityDiagram",
    "brier_score",
    "check_probabilities",
    "entropy",
    "epistemic_variance",
    "expected_calibration_error",
    "expected_entropy",
    "gaussian_log_likelihood",
    "interval_calibration",
    "is_mc_capable",
    "mc_mode",
    "mutual_information",
    "negative_log_likelihood",
    "ood_aupr",
    "ood_auroc",
    "plot_reliability_diagram",
    "predictive_entropy",
    "predictive_mean",
    "reliability_diagram",
    "rmse",
    "sample",
    "total_variance",
    "variation_ratio",
]
