"""Assertions for users' own test suites, and a pytest plugin that seeds dropkit.

The helpers restore the model's state (parameters, buffers, dropout steps, BatchNorm
statistics) and train/eval modes after running, so calling them has no side effect.
"""

from dropkit.testing._asserts import (
    assert_dropout_active,
    assert_expectation_preserved,
    assert_inference_deterministic,
)

__all__ = [
    "assert_dropout_active",
    "assert_expectation_preserved",
    "assert_inference_deterministic",
]
