"""Metrics against hand-computed values and scikit-learn on fixed inputs."""

from __future__ import annotations

import math

import pytest
import torch

import dropkit
from dropkit import uncertainty as U

# Two MC samples, three inputs, two classes.
PROBS = torch.tensor(
    [
        [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]],
        [[0.8, 0.2], [0.1, 0.9], [0.3, 0.7]],
    ],
    dtype=torch.float64,
)
LABELS = torch.tensor([0, 0, 1])


def _h(*p: float) -> float:
    return -sum(q * math.log(q) for q in p if q > 0)


def test_classification_summaries_by_hand():
    mean = torch.tensor([[0.85, 0.15], [0.35, 0.65], [0.25, 0.75]], dtype=torch.float64)
    torch.testing.assert_close(U.predictive_mean(PROBS), mean)
    predictive = torch.tensor([_h(0.85, 0.15), _h(0.35, 0.65), _h(0.25, 0.75)]).double()
    expected = torch.tensor(
        [
            (_h(0.9, 0.1) + _h(0.8, 0.2)) / 2,
            (_h(0.6, 0.4) + _h(0.1, 0.9)) / 2,
            (_h(0.2, 0.8) + _h(0.3, 0.7)) / 2,
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(U.predictive_entropy(PROBS), predictive)
    torch.testing.assert_close(U.expected_entropy(PROBS), expected)
    torch.testing.assert_close(U.mutual_information(PROBS), predictive - expected)
    # Input 1: the samples vote class 0 and class 1 -> half disagree with the mode.
    torch.testing.assert_close(
        U.variation_ratio(PROBS), torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    )


def test_nll_and_brier_by_hand():
    nll = -(math.log(0.85) + math.log(0.35) + math.log(0.75)) / 3
    assert float(U.negative_log_likelihood(PROBS, LABELS)) == pytest.approx(nll, abs=1e-12)
    brier = (2 * 0.15**2 + 2 * 0.65**2 + 2 * 0.25**2) / 3
    assert float(U.brier_score(PROBS, LABELS)) == pytest.approx(brier, abs=1e-12)


def test_nll_and_brier_match_sklearn():
    from sklearn.metrics import brier_score_loss, log_loss

    probs = torch.rand(5, 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    probs = probs / probs.sum(-1, keepdim=True)
    labels = torch.randint(0, 2, (40,), generator=torch.Generator().manual_seed(1))
    mean = probs.mean(0)
    assert float(U.negative_log_likelihood(probs, labels)) == pytest.approx(
        log_loss(labels.numpy(), mean.numpy()), abs=1e-12
    )
    # scikit-learn's binary Brier score is half of the multi-class sum over two classes.
    assert float(U.brier_score(probs, labels)) == pytest.approx(
        2 * brier_score_loss(labels.numpy(), mean[:, 1].numpy()), abs=1e-12
    )


def test_ece_equal_width_and_adaptive_by_hand():
    # Confidences 0.85 (correct), 0.65 (wrong: predicts 1, label 0), 0.75 (correct).
    ece = U.expected_calibration_error(PROBS, LABELS, n_bins=2)
    # Bin (0.5, 1]: conf mean 0.75, accuracy 2/3.
    assert float(ece) == pytest.approx(abs(2 / 3 - 0.75), abs=1e-12)
    ece10 = U.expected_calibration_error(PROBS, LABELS, n_bins=10)
    # One point per bin: |0 - 0.65|, |1 - 0.75|, |1 - 0.85|.
    assert float(ece10) == pytest.approx((0.65 + 0.25 + 0.15) / 3, abs=1e-12)
    adaptive = U.expected_calibration_error(PROBS, LABELS, n_bins=3, binning="adaptive")
    assert float(adaptive) == pytest.approx((0.65 + 0.25 + 0.15) / 3, abs=1e-12)
    diagram = U.reliability_diagram(PROBS, LABELS, n_bins=3, binning="adaptive")
    assert diagram.counts.tolist() == [1, 1, 1]
    torch.testing.assert_close(diagram.confidence, torch.tensor([0.65, 0.75, 0.85]).double())
    torch.testing.assert_close(diagram.accuracy, torch.tensor([0.0, 1.0, 1.0]).double())
    assert U.reliability_diagram(PROBS, LABELS, n_bins=10).counts.sum() == 3


def test_reliability_plot_draws_bars():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    diagram = U.reliability_diagram(PROBS, LABELS, n_bins=10)
    ax = U.plot_reliability_diagram(diagram, title="t")
    assert len(ax.patches) == int((diagram.counts > 0).sum()) == 3 and ax.get_title() == "t"


def test_ood_matches_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores_in = torch.tensor([0.1, 0.4, 0.35, 0.8])
    scores_out = torch.tensor([0.9, 0.5, 0.7])
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.9, 0.5, 0.7]
    assert U.ood_auroc(scores_in, scores_out) == pytest.approx(roc_auc_score(labels, scores))
    assert U.ood_aupr(scores_in, scores_out) == pytest.approx(
        average_precision_score(labels, scores)
    )
    assert U.ood_auroc(scores_in, scores_out) == pytest.approx(10 / 12)


def test_regression_by_hand():
    samples = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]], dtype=torch.float64)  # (S=3, B=2)
    targets = torch.tensor([2.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(U.predictive_mean(samples), torch.tensor([2.0, 3.0]).double())
    var = torch.tensor([2 / 3, 2.0], dtype=torch.float64)
    torch.testing.assert_close(U.epistemic_variance(samples), var)
    torch.testing.assert_close(U.total_variance(samples, tau=4.0), var + 0.25)
    assert float(U.rmse(samples, targets)) == pytest.approx(math.sqrt(0.25 / 2), abs=1e-12)
    tau = 2.0
    expected = []
    for b in range(2):
        dens = [
            math.sqrt(tau / (2 * math.pi)) * math.exp(-0.5 * tau * (float(targets[b]) - s) ** 2)
            for s in samples[:, b].tolist()
        ]
        expected.append(math.log(sum(dens) / 3))
    ll = U.gaussian_log_likelihood(samples, targets, tau)
    assert float(ll) == pytest.approx(sum(expected) / 2, abs=1e-12)
    per_point = U.gaussian_log_likelihood(samples, targets, tau, reduction="none")
    torch.testing.assert_close(per_point, torch.tensor(expected, dtype=torch.float64))


def test_interval_calibration_is_calibrated_for_gaussian_data():
    generator = torch.Generator().manual_seed(0)
    samples = torch.zeros(2, 20000, dtype=torch.float64)  # no epistemic spread
    targets = torch.randn(20000, generator=generator, dtype=torch.float64)  # noise N(0, 1/tau)
    result = U.interval_calibration(samples, targets, tau=1.0, levels=(0.5, 0.9))
    # Binomial 5 sigma on 20000 draws: 5 * sqrt(0.25 / 20000) < 0.018.
    assert torch.allclose(result.observed, result.levels, atol=0.018)
    assert float(result.error) < 0.018
    overconfident = U.interval_calibration(samples, targets, tau=100.0, levels=(0.5, 0.9))
    assert float(overconfident.error) > 0.3


def test_bad_inputs():
    with pytest.raises(ValueError, match="probs must be probabilities"):
        U.predictive_entropy(PROBS * 2)
    with pytest.raises(ValueError, match="probs must be probabilities"):
        U.negative_log_likelihood(torch.randn(2, 3, 2, dtype=torch.float64), LABELS)
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        U.brier_score(PROBS, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        U.brier_score(PROBS, LABELS.double())
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 1\]"):
        U.brier_score(PROBS, torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        U.rmse(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"tau .* must be a float > 0"):
        U.total_variance(torch.zeros(3, 2), tau=0.0)
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        U.expected_calibration_error(PROBS, LABELS, n_bins=0)
    with pytest.raises(ValueError, match="binning must be one of"):
        U.expected_calibration_error(PROBS, LABELS, binning="quantile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores_out must be a non-empty 1-D tensor"):
        U.ood_auroc(torch.ones(3), torch.ones(0))
    with pytest.raises(ValueError, match="probs must have at least 3 dims"):
        U.mutual_information(torch.ones(2, 2, dtype=torch.float64) / 2)


def test_logits_given_as_probabilities_get_a_hint():
    """Logits where probabilities are expected: the message says what it found and how to pass
    logits (softmax for the metrics, from_logits=True for the sampling reducer)."""
    logits = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0)) * 3
    with pytest.raises(ValueError, match=r"probs must be probabilities.*got values in \[") as e:
        U.predictive_entropy(logits)
    assert "these look like logits" in str(e.value) and "softmax(-1)" in str(e.value)
    unnormalised = torch.full((4, 3, 5), 0.5)  # in [0, 1] but rows sum to 2.5
    with pytest.raises(ValueError, match=r"rows that do not sum to 1: logits or unnormalised"):
        U.mutual_information(unnormalised)
    model = torch.nn.Sequential(torch.nn.Linear(2, 5), dropkit.nn.Dropout(0.2, seed=0))
    with pytest.raises(ValueError, match=r"samples must be probabilities") as e:
        U.sample(model, torch.randn(3, 2), 4, reduce="classification", seed=0)
    assert "ClassificationReducer(from_logits=True)" in str(e.value)
    # The hint is right: with from_logits=True the same model reduces fine.
    summary = U.sample(
        model, torch.randn(3, 2), 4, reduce=U.ClassificationReducer(from_logits=True), seed=0
    )
    assert summary.mean.shape == (3, 5)
    assert torch.allclose(summary.mean.sum(-1), torch.ones(3, dtype=summary.mean.dtype))
