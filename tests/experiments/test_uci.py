"""The UCI protocol end to end on a small budget: data, normalisation, splits, metric units."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from dropkit.experiments import uci

REPO = Path(__file__).resolve().parents[2]


def _data_root() -> Path:
    """``../shared/data/uci`` beside the repository (or ``$DROPKIT_UCI_DATA``)."""
    candidates = [REPO / ".." / "shared" / "data" / "uci"]
    if os.environ.get("DROPKIT_UCI_DATA"):
        candidates.insert(0, Path(os.environ["DROPKIT_UCI_DATA"]))
    for root in candidates:
        if (root / "yacht" / "data.txt").is_file():
            return root
    pytest.skip(
        "UCI data not found at ../shared/data/uci beside the repository (set DROPKIT_UCI_DATA)"
    )


@pytest.fixture(scope="module")
def yacht() -> uci.UCIDataset:
    return uci.load_uci("yacht", _data_root())


def test_loader_reads_splits_and_grids(yacht):
    assert yacht.inputs.shape == (308, 6) and yacht.targets.shape == (308,)
    assert yacht.n_splits == 20 and yacht.n_hidden == 50 and yacht.n_epochs == 40
    assert yacht.dropout_rates == [0.005, 0.01, 0.05, 0.1]
    assert yacht.tau_values == [0.25, 0.5, 0.75]
    for train, test in zip(yacht.train_indices, yacht.test_indices, strict=True):
        assert set(train.tolist()).isdisjoint(test.tolist())
        assert len(train) + len(test) == 308


def test_missing_data_set_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no UCI data set 'yacht'"):
        uci.load_uci("yacht", tmp_path)


def test_task_normalises_on_its_training_rows_only(yacht):
    train, evaluate = yacht.train_indices[0][:200], yacht.train_indices[0][200:]
    task = uci._task(yacht, train, evaluate, 0.05, 0.5)
    torch.testing.assert_close(task.train_x.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(task.train_x.std(0, correction=0), torch.ones(6), atol=1e-5, rtol=0)
    assert abs(float(task.train_y.mean())) < 1e-5
    assert task.y_mean == pytest.approx(float(yacht.targets[train].mean()))
    # Evaluation rows use the training statistics and keep targets in original units.
    assert torch.equal(task.eval_y, yacht.targets[evaluate])
    expected = (yacht.inputs[evaluate] - yacht.inputs[train].mean(0)) / yacht.inputs[train].std(
        0, correction=0
    )
    torch.testing.assert_close(task.eval_x, expected.float())


def test_network_dropout_gives_each_network_its_rate_and_mask():
    layer = uci._NetworkDropout([0.1, 0.1, 0.5], seed=0)
    out = layer(torch.ones(4000, 3, 2))
    dropped = (out == 0).double().mean((0, 2))
    # Binomial 5 sigma on 8000 draws: < 0.017 for p = 0.1, < 0.028 for p = 0.5.
    assert abs(float(dropped[0]) - 0.1) < 0.017 and abs(float(dropped[1]) - 0.1) < 0.017
    assert abs(float(dropped[2]) - 0.5) < 0.028
    assert not torch.equal(out[:, 0], out[:, 1])  # same rate, different masks


@pytest.mark.parametrize("train_masks", ["dropkit", "torch"])
def test_protocol_end_to_end_on_two_splits(yacht, monkeypatch, train_masks):
    seen: list[tuple[int, int]] = []
    original = uci._task

    def spy(data, train, evaluate, rate, tau):  # type: ignore[no-untyped-def]
        seen.append((len(train), len(evaluate)))
        return original(data, train, evaluate, rate, tau)

    monkeypatch.setattr(uci, "_task", spy)
    result = uci.run_dataset(
        yacht, epochs=3, splits=2, mc_samples=30, validation_samples=10, train_masks=train_masks
    )
    n_train = len(yacht.train_indices[0])
    n_fit = int(n_train * 0.8)
    grid = len(yacht.dropout_rates) * len(yacht.tau_values)
    # The grid on the validation part of each split, then the chosen point on train/test.
    assert seen[: 2 * grid] == [(n_fit, n_train - n_fit)] * (2 * grid)
    assert seen[2 * grid :] == [(n_train, len(yacht.test_indices[k])) for k in range(2)]
    assert len(result.rmse) == len(result.log_likelihood) == len(result.chosen) == 2
    for rate, tau in result.chosen:
        assert rate in yacht.dropout_rates and tau in yacht.tau_values
    # Original units: yacht's residuary resistance has std ~15; 3 epochs leave an RMSE of
    # that order, far above a normalised-units RMSE (~1).
    target_std = float(yacht.targets.std())
    assert all(2.0 < r < 3 * target_std for r in result.rmse)
    # A Gaussian log-likelihood can never exceed log N(0; 0, 1/tau) at the chosen tau.
    for ll, (_, tau) in zip(result.log_likelihood, result.chosen, strict=True):
        assert ll <= 0.5 * math.log(tau / (2 * math.pi))
    _, se = result.rmse_mean_se
    assert se == pytest.approx(abs(result.rmse[0] - result.rmse[1]) / 2 / math.sqrt(2))
    table = uci.format_table([result])
    assert "yacht" in table and "1.11 ± 0.38" in table
