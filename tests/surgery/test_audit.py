"""audit finds each planted problem and nothing on a clean model; summary rows and exports."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit
from dropkit import schedules


class Clean(nn.Module):
    """Dropout after BatchNorm and activations, moderate rates, none on the output."""

    def __init__(self) -> None:
        super().__init__()
        self.input_dropout = dropkit.nn.Dropout(0.1)
        self.fc1 = nn.Linear(8, 16)
        self.bn = nn.BatchNorm1d(16)
        self.act = nn.ReLU()
        self.hidden_dropout = dropkit.nn.Dropout(0.3)
        self.fc2 = nn.Linear(16, 16)
        self.res_dropout = dropkit.nn.Dropout(0.2)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden_dropout(self.act(self.bn(self.fc1(self.input_dropout(x)))))
        h = h + self.res_dropout(self.fc2(h))
        return self.out(F.dropout(h, 0.2, self.training))


class Planted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_dropout = nn.Dropout(0.6)  # rate-out-of-range (input)
        self.fc1 = nn.Linear(8, 16)
        self.before_bn = nn.Dropout(0.3)  # dropout-before-batchnorm
        self.bn = nn.BatchNorm1d(16)
        self.first = dropkit.nn.Dropout(0.2)
        self.act = nn.ReLU()
        self.second = dropkit.nn.Dropout(0.2)  # duplicated-dropout
        self.fc2 = nn.Linear(16, 16)
        self.unscaled = dropkit.nn.Dropout(0.2, mode="standard")  # residual-unscaled
        self.fc3 = nn.Linear(16, 16)
        self.huge = dropkit.nn.Dropout(0.8)  # rate-out-of-range (hidden)
        self.out = nn.Linear(16, 3)
        self.on_output = nn.Dropout(0.1)  # dropout-on-output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.before_bn(self.fc1(self.input_dropout(x))))
        h = self.second(self.act(self.first(h)))
        h = h + self.unscaled(self.fc2(h))
        h = self.huge(self.fc3(F.dropout(h, 0.1)))  # functional-ignores-training, active-in-eval
        return self.on_output(self.out(h))


def _codes(report) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in report:
        found.setdefault(finding.code, set()).add(finding.path)
    return found


def test_clean_model_has_no_findings():
    torch.manual_seed(0)
    model = Clean()
    report = dropkit.audit(model, torch.randn(4, 8))
    assert len(report) == 0, str(report)
    assert str(report) == "audit: no findings"


def test_each_planted_problem_is_found_with_severity_and_fix():
    torch.manual_seed(0)
    model = Planted()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = dropkit.audit(model, torch.randn(4, 8))
    found = _codes(report)
    assert found["rate-out-of-range"] == {"input_dropout", "huge"}
    assert found["dropout-before-batchnorm"] == {"before_bn"}
    assert found["duplicated-dropout"] == {"second"}
    assert found["residual-unscaled"] == {"unscaled"}
    assert found["dropout-on-output"] == {"on_output"}
    assert found["functional-ignores-training"] == {":dropout#0"}
    assert found["active-in-eval"] == {""}
    assert all(f.fix and f.severity in ("error", "warning") for f in report)
    # The audit left the model as it found it (modes, BatchNorm statistics, steps).
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_dropout_left_in_training_mode_in_an_eval_model():
    model = nn.Sequential(nn.Linear(4, 4), dropkit.nn.Dropout(0.2), nn.Linear(4, 2)).eval()
    model[1].train()  # MC mode left on
    report = dropkit.audit(model, torch.randn(2, 4))
    assert _codes(report) == {"active-in-eval": {"1"}}
    assert not model.training and model[1].training  # restored


def test_untraceable_model_reports_skipped_residual_check():
    class Dynamic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.drop = dropkit.nn.Dropout(0.1, mode="standard")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow defeats FX
                return x + self.drop(self.fc(x))
            return x + self.drop(self.fc(x))

    report = dropkit.audit(Dynamic(), torch.ones(2, 4))
    assert _codes(report) == {"residual-check-skipped": {""}}
    assert report.findings[0].severity == "info"


def test_summary_rows_positions_and_exports(capsys):
    torch.manual_seed(0)
    model = Clean()
    scheduler = schedules.DropoutScheduler(model, {"hidden_dropout": schedules.constant(0.3)})
    rows = dropkit.summary(model, torch.randn(4, 8), scheduler=scheduler)
    printed = capsys.readouterr().out
    assert [row.path for row in rows] == [
        "input_dropout",
        "hidden_dropout",
        "res_dropout",
        ":dropout#0",
    ]
    hidden = rows[1]
    assert (hidden.technique, hidden.rate, hidden.mode) == ("Dropout", pytest.approx(0.3), "train")
    assert hidden.after == "ReLU (act)" and hidden.before == "Linear (fc2)"
    assert hidden.schedule == "constant(0.3)"
    assert rows[3].technique == "F.dropout" and rows[3].mode == "follows caller"
    assert "hidden_dropout" in printed and "F.dropout" in printed
    data = json.loads(rows.to_json())
    assert data[1]["path"] == "hidden_dropout" and data[1]["rate"] == pytest.approx(0.3)
    markdown = rows.to_markdown().splitlines()
    assert markdown[0].startswith("| path | technique | rate |") and len(markdown) == 6


def test_summary_without_input_uses_definition_order():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2), nn.BatchNorm1d(2))
    model.eval()
    model[1].train()
    rows = dropkit.summary(model, print_table=False)
    assert [(r.path, r.after, r.before, r.mode) for r in rows] == [
        ("1", "Linear (0)", "BatchNorm1d (2)", "mc (train in an eval model)")
    ]
    assert str(dropkit.summary(nn.Linear(2, 2), print_table=False)) == "no dropout sites"


def test_summary_and_audit_see_routed_functional_dropout_and_unrun_modules():
    class Forgetful(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.unused = dropkit.nn.Dropout(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(F.dropout(x, 0.1))

    model = Forgetful().eval()
    assert _codes(dropkit.audit(model, torch.randn(2, 4)))["functional-ignores-training"] == {
        ":dropout#0"
    }
    dropkit.surgery.route_functional(model, seed=0)
    rows = dropkit.summary(model, torch.randn(2, 4), print_table=False)
    assert [(r.path, r.technique, r.after) for r in rows] == [
        (":dropout#0", "F.dropout", "(model input)"),
        ("unused", "Dropout", "(not run)"),
    ]
    report = dropkit.audit(model, torch.randn(2, 4))
    assert [(f.code, f.severity) for f in report] == [("functional-ignores-training", "info")]
