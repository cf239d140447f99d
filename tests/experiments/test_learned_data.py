"""The learned-rate paper checks on real data, at a CI budget: sparse VD on a Fashion-MNIST
subset, concrete dropout on the UCI protocol (two splits of yacht).

Numbers in the comments were measured on the 2-core CPU box with
``PYTHONPATH=src python -m pytest tests/experiments/test_learned_data.py -q -s``; the full runs
and their commands are in docs/techniques/variational_dropout.md and docs/uci.md.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from dropkit.experiments import learned, uci
from dropkit.experiments.data import DataUnavailableError, load_dataset
from dropkit.functional import _learned as learned_functional

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fashion_mnist():
    try:
        return load_dataset("fashion-mnist")
    except DataUnavailableError as error:
        pytest.skip(f"Fashion-MNIST is not installed ({error})")


def test_sparse_vd_on_a_fashion_mnist_subset_prunes_90_percent(fashion_mnist):
    # 5,000 training images, 6 epochs, KL warm-up over all 6 (the default third would let
    # the KL of so small an N prune before the data term has fitted). Measured: dense 84.5%,
    # sparse VD 78.5% test accuracy on the first 2,000 test images, 98.1% of weights pruned,
    # ~7 s of CPU.
    result = learned.run_sparse_vd(
        fashion_mnist, epochs=6, warmup_epochs=6, lr=3e-3, train_size=5000, test_size=2000
    )
    print(learned.format_sparse_vd(result))
    assert result.train_size == 5000 and result.test_size == 2000
    assert set(result.layers) == {"1", "3", "5"}  # the three LinearSVDO layers
    assert sum(t for _, t in result.layers.values()) == 784 * 300 + 300 * 100 + 100 * 10
    assert result.dense_accuracy >= 0.80
    assert result.pruned >= 0.90
    assert result.sparse_accuracy >= 0.70
    assert result.sparse_accuracy >= result.dense_accuracy - 0.12
    assert result.compression >= 10


def test_sparse_vd_needs_a_classification_data_set():
    from dropkit.experiments.data import from_arrays

    data = from_arrays("r", torch.randn(8, 3), torch.randn(8), torch.randn(4, 3), torch.randn(4),
                       task="regression")  # fmt: skip
    with pytest.raises(ValueError, match="classification"):
        learned.run_sparse_vd(data, epochs=1)


def _uci_root() -> Path:
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


def test_concrete_uci_learns_the_rates_and_searches_only_tau(monkeypatch):
    data = uci.load_uci("yacht", _uci_root())
    rates_seen: list[float] = []
    original = uci._task

    def spy(data, train, evaluate, rate, tau):  # type: ignore[no-untyped-def]
        rates_seen.append(rate)
        return original(data, train, evaluate, rate, tau)

    monkeypatch.setattr(uci, "_task", spy)
    result = learned.run_concrete_dataset(
        data, epochs=30, splits=2, mc_samples=50, validation_samples=20
    )
    # 2 splits x 3 taus on validation, then 2 retrained networks: no grid over p.
    assert len(rates_seen) == 2 * len(data.tau_values) + 2
    assert set(rates_seen) == {0.0}
    assert len(result.rmse) == len(result.log_likelihood) == 2
    assert all(math.isfinite(v) and v > 0 for v in result.rmse)
    assert all(math.isfinite(v) for v in result.log_likelihood)
    assert set(result.taus) <= set(data.tau_values)
    for p_in, p_hidden in result.chosen:  # learned: moved away from the initial 0.1
        for rate in (p_in, p_hidden):
            assert 0.0 < rate < 1.0 and abs(rate - 0.1) > 1e-4
    assert result.cpu_seconds > 0
    table = learned.format_concrete_table([result])
    assert "yacht" in table and "p in/hid" in table


def test_stacked_concrete_penalty_is_the_regularizer_of_each_network():
    layer = learned._NetworkConcrete(3, init_p=0.2, temperature=0.1, seed=0)
    with torch.no_grad():
        layer.p_logit.copy_(torch.tensor([[-2.0], [0.0], [1.0]]))
    weights = torch.randn(3, 5, 4)
    scale = torch.tensor([1.0, 2.0, 4.0])
    got = layer.penalty(weights, scale, input_dim=5, n=100)
    for g in range(3):
        expected = scale[g] * learned_functional.concrete_regularizer(
            layer.p_logit[g, 0], [weights[g]], [], weight_regularizer=uci.LENGTH_SCALE**2 / 100,
            dropout_regularizer=2.0 / 100, input_dim=5,
        )  # fmt: skip
        torch.testing.assert_close(got[g], expected)
    # Each network's rate drops its own slice, at its own rate.
    out = learned._NetworkConcrete(2, init_p=0.5, temperature=0.01, seed=1)
    with torch.no_grad():
        out.p_logit.copy_(torch.tensor([[-2.1972], [0.0]]))  # p = 0.1 and 0.5
    y = out(torch.ones(4000, 2, 2))
    dropped = (y < 0.5).double().mean((0, 2))
    # Binomial 5 sigma on 8,000 near-binary draws: < 0.017 at p = 0.1, < 0.028 at p = 0.5.
    assert abs(float(dropped[0]) - 0.1) < 0.017 and abs(float(dropped[1]) - 0.5) < 0.028


def test_reproduce_commands_wire_the_experiments(monkeypatch, capsys, tmp_path):
    from dropkit.cli import main
    from dropkit.experiments import compare, search, training  # noqa: F401
    from dropkit.experiments import data as data_module

    # compare/search/training bind load_dataset at import: imported above, before the patch,
    # so that the fake loader cannot leak into later tests of this worker

    seen: dict[str, object] = {}

    def fake_sparse_vd(dataset, **options):  # type: ignore[no-untyped-def]
        seen["svd"] = (dataset, options["epochs"])
        return learned.SparseVDResult(
            "fashion-mnist", 10, 5, 2, 2, 0.9, 0.88, 0.95, {"1": (95, 100)}, 1.0, 2.0
        )

    monkeypatch.setattr(data_module, "load_dataset", lambda name, data_dir: name)
    monkeypatch.setattr(learned, "run_sparse_vd", fake_sparse_vd)
    assert main(["reproduce", "svd-fashion", "--epochs", "2"]) == 0
    assert seen["svd"] == ("fashion-mnist", 2)
    assert "95.00% of weights pruned" in capsys.readouterr().out

    def fake_result(name, cls, **extra):  # type: ignore[no-untyped-def]
        return cls(name, [1.0, 2.0], [-1.0, -2.0], [(0.1, 0.2)] * 2, 3, 10, 1.0, **extra)

    folder = tmp_path / "yacht"
    folder.mkdir()
    monkeypatch.setattr(learned.uci, "load_uci", lambda name, root: name)
    monkeypatch.setattr(
        learned, "run_concrete_dataset",
        lambda data, **o: fake_result(data, learned.ConcreteUCIResult, cpu_seconds=1.0),
    )  # fmt: skip
    monkeypatch.setattr(
        learned.uci, "run_dataset", lambda data, **o: fake_result(data, uci.UCIResult)
    )
    assert main(["reproduce", "uci-concrete", "--data-dir", str(tmp_path), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "grid yacht" in out and "concrete yacht" in out and "saved" in out
