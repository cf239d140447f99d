"""The public surface of the workflow tools (surgery, schedules, summary/audit) is pinned, and
stays light to import."""

from __future__ import annotations

import subprocess
import sys

import dropkit


def test_workflow_names_are_exported():
    assert {"schedules", "surgery", "summary", "audit", "testing", "integrations"} <= set(
        dropkit.__all__
    )
    assert {
        "DropoutScheduler", "constant", "linear", "cosine", "step", "warmup", "exponential",
        "curriculum", "early", "late", "join", "piecewise", "linear_by_depth", "stagewise",
    } <= set(dropkit.schedules.__all__)  # fmt: skip
    assert {
        "convert", "to_torch", "insert", "remove", "set_rates", "route_functional",
        "unroute_functional", "register_conversion", "summary", "audit", "PRESETS",
    } <= set(dropkit.surgery.__all__)  # fmt: skip
    assert {
        "assert_inference_deterministic", "assert_dropout_active", "assert_expectation_preserved"
    } <= set(dropkit.testing.__all__)  # fmt: skip
    for module in (dropkit.schedules, dropkit.surgery, dropkit.testing, dropkit.integrations):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert dropkit.summary is dropkit.surgery.summary and dropkit.audit is dropkit.surgery.audit


def test_import_dropkit_loads_no_framework():
    code = (
        "import sys, dropkit, dropkit.schedules, dropkit.surgery; "
        "heavy = {'lightning', 'pytorch_lightning', 'transformers', 'timm', 'pytest', "
        "'dropkit.testing', 'dropkit.integrations'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
