"""Bad input raises a clear error naming the argument and what is allowed."""

from __future__ import annotations

import re

import pytest
import torch

import dropkit.functional as F
from tests.functional.bad_inputs import BadInput, all_cases

X = torch.randn(2, 3, 4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: F.dropout(X, 1.5), ValueError, r"p must be in \[0, 1\], got 1.5"),
        (lambda: F.dropout(X, -0.1), ValueError, r"p must be in \[0, 1\], got -0.1"),
        (lambda: F.dropout(X, float("nan")), ValueError, r"p must be in \[0, 1\], got nan"),
        (lambda: F.dropout(X, "0.5"), TypeError, r"p must be a float in \[0, 1\], got str"),
        (lambda: F.dropout(X, torch.tensor(2.0)), ValueError, r"p must be in \[0, 1\]"),
        (lambda: F.dropout(X, torch.tensor([0.1, 0.2])), TypeError, r"p must be a float or a one"),
        (lambda: F.gaussian_dropout(X, 1.0), ValueError, r"p must be in \[0, 1\), got 1.0"),
        (lambda: F.dropout(torch.arange(4), 0.5), TypeError, r"input must be a floating-point"),
        (lambda: F.dropout([1.0], 0.5), TypeError, r"input must be a torch.Tensor"),
        (
            lambda: F.dropout(X, 0.5, noise_shape=(2, 2, None)),
            ValueError,
            r"noise_shape \(2, 2, None\) does not broadcast to the input shape \(2, 3, 4\)",
        ),
        (
            lambda: F.dropout(X, 0.5, noise_shape=(2, 1)),
            ValueError,
            r"noise_shape \(2, 1\) does not broadcast to the input shape \(2, 3, 4\)",
        ),
        (lambda: F.dropout(X, 0.5, mode="weird"), ValueError, r"mode must be one of"),
        (
            lambda: F.spatial_dropout(X, 0.5, channel_dim=3),
            ValueError,
            r"channel_dim must be in \[-3, 2\] for a 3-D input, got 3",
        ),
        (
            lambda: F.locked_dropout(X, 0.5, time_dim=-4),
            ValueError,
            r"time_dim must be in \[-3, 2\] for a 3-D input, got -4",
        ),
        (lambda: F.dropout(X, 0.5, seed=2**64), ValueError, r"seed must be an integer in \[0, "),
        (lambda: F.dropout(X, 0.5, seed=-5), ValueError, r"seed must be an integer in \[0, "),
        (lambda: F.dropout(X, 0.5, seed=1, step=-1), ValueError, r"step must be an integer in"),
        (lambda: F.dropout(X, 0.5, seed=1, offset=-1), ValueError, r"offset must be a non-neg"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("case", all_cases(), ids=lambda case: case.id)
def test_bad_input_table(case: BadInput) -> None:
    """Every bad input of the table raises its exception with a message naming the argument,
    at p = 0 and in eval as well as in training (tests/functional/bad_inputs.py)."""
    with pytest.raises(case.error, match=case.match) as raised:
        case.call()
    assert re.search(rf"\b{re.escape(case.arg)}\b", str(raised.value)), str(raised.value)
