"""``dropkit compare`` with the learned-rate techniques (issue 12): they run beside fixed-rate
dropout, and their regulariser is part of the differentiated training objective."""

from __future__ import annotations

import sqlite3

import pytest
import torch

import dropkit
from dropkit.cli import main
from dropkit.experiments import training
from dropkit.experiments.training import RunConfig, train_run

LEARNED = ("concrete", "vd", "svd", "standout")


@pytest.fixture
def regularizer_spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, int]]:
    """Counts, per learned technique in the model, the regulariser's calls and the terms whose
    gradient was taken (a tensor hook fires only when the term is in the objective that is
    backpropagated)."""
    counts: dict[str, dict[str, int]] = {"called": {}, "backpropagated": {}}
    real = training.regularization

    def spy(model: torch.nn.Module, *, dataset_size: int) -> torch.Tensor:
        term = real(model, dataset_size=dataset_size)
        key = ",".join(sorted({rate.technique for rate in dropkit.learned_rates(model)}))
        counts["called"][key] = counts["called"].get(key, 0) + 1

        def seen(grad: torch.Tensor) -> None:
            counts["backpropagated"][key] = counts["backpropagated"].get(key, 0) + 1

        if term.requires_grad:
            term.register_hook(seen)
        return term

    monkeypatch.setattr(training, "regularization", spy)
    return counts


def test_compare_runs_learned_techniques_beside_dropout(tmp_path, regularizer_spy):
    out = tmp_path / "run"
    argv = ["compare", "--dataset", "digits", "--models", "mlp", "--techniques",
            "dropout,concrete,vd,svd,standout", "--rates", "0.2", "--seeds", "1", "--epochs",
            "1", "--jobs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    with sqlite3.connect(out / "runs.sqlite") as connection:
        rows = connection.execute("SELECT technique, test_score FROM runs").fetchall()
    assert sorted(r[0] for r in rows) == sorted(("dropout", *LEARNED))
    assert all(0.0 <= score <= 1.0 for _, score in rows)
    # One regulariser term per training batch of each learned technique, none for dropout.
    # (digits: 1437 training examples, 10% held out -> 1293, batches of 100 -> 13 per epoch).
    assert regularizer_spy["called"] == {name: 13 for name in LEARNED}
    # Standout's term is a constant 0 (its paper has no regulariser): no gradient to take.
    assert regularizer_spy["backpropagated"] == {name: 13 for name in LEARNED if name != "standout"}
    assert "concrete" in (out / "report.html").read_text()


def test_vd_and_svd_convert_the_cnn_and_rates_are_learned(regularizer_spy):
    for technique in ("svd", "vd", "concrete"):
        config = RunConfig("digits", "cnn", technique, (0.2, 0.2, 0.2), seed=0, epochs=1)
        result = train_run(config)
        assert 0.0 <= result["test_score"] <= 1.0
    assert set(regularizer_spy["backpropagated"]) == {"svd", "vd", "concrete"}


def test_learned_techniques_are_listed_and_seeded():
    from dropkit.experiments.techniques import get_technique

    for name in LEARNED:
        assert get_technique(name).learned
    config = RunConfig("digits", "mlp", "concrete", (0.2, 0.2), seed=1, epochs=1)
    assert train_run(config)["test_score"] == train_run(config)["test_score"]
