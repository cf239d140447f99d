"""``assert_inference_deterministic``, ``assert_dropout_active``,
``assert_expectation_preserved``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from dropkit.surgery._convert import is_dropout_like
from dropkit.surgery._trace import _outputs_equal, _restore, _run, _snapshot

__all__ = [
    "assert_dropout_active",
    "assert_expectation_preserved",
    "assert_inference_deterministic",
]


@contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    snapshot = _snapshot(model)
    try:
        yield
    finally:
        _restore(model, snapshot)


def _sampling_modules(model: nn.Module) -> list[str]:
    return [path or "<root>" for path, m in model.named_modules()
            if is_dropout_like(m) and m.training]  # fmt: skip


def assert_inference_deterministic(model: nn.Module, example_input: Any, *, runs: int = 2) -> None:
    """Assert that ``model`` in eval mode gives bit-identical outputs on repeated calls.

    Runs ``model.eval()`` and ``runs`` forward passes under ``no_grad``, reseeding PyTorch's
    generator differently before each, so dropout that reads the global generator in eval
    (a forgotten ``training=self.training``, a module stuck in training mode) is caught. The
    model's state and modes are restored.

    Raises:
        AssertionError: naming the dropout modules still in training mode, if any.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> assert_inference_deterministic(model, torch.randn(2, 4))
    """
    if runs < 2:
        raise ValueError(f"runs must be >= 2, got {runs}")
    with _preserved(model), torch.no_grad():
        model.eval()
        reference = None
        for run in range(runs):
            torch.manual_seed(run + 12345)
            output = _run(model, example_input)
            if reference is None:
                reference = output
            elif not _outputs_equal(reference, output):
                stuck = _sampling_modules(model)
                detail = f"; modules still sampling: {stuck}" if stuck else (
                    "; no dropout module is in training mode, so look for functional dropout "
                    "that ignores `training` (dropkit.audit finds it)"
                )  # fmt: skip
                raise AssertionError(f"eval outputs differ between run 0 and run {run}{detail}")


def assert_dropout_active(model: nn.Module, example_input: Any, *, runs: int = 2) -> None:
    """Assert that ``model`` in training mode gives different outputs on repeated calls, i.e.
    that its dropout actually samples (a rate left at 0, a model frozen in eval, or dropout
    removed by mistake all fail). State and modes are restored.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> assert_dropout_active(model, torch.randn(2, 4))
    """
    if runs < 2:
        raise ValueError(f"runs must be >= 2, got {runs}")
    with _preserved(model), torch.no_grad():
        model.train()
        outputs = [_run(model, example_input) for _ in range(runs)]
    if all(_outputs_equal(outputs[0], other) for other in outputs[1:]):
        sites = [path or "<root>" for path, m in model.named_modules() if is_dropout_like(m)]
        raise AssertionError(
            f"{runs} training-mode forward passes gave identical outputs: dropout is not "
            f"active (dropout modules found: {sites or 'none'})"
        )


def assert_expectation_preserved(
    module: nn.Module,
    example_input: Tensor,
    *,
    samples: int = 2000,
    sigma: float = 5.0,
    atol: float = 1e-6,
) -> None:
    r"""Assert that training-mode outputs average to the eval-mode output: :math:`E[f_{train}(x)]
    = f_{eval}(x)` (inverted dropout, Gaussian dropout, standard dropout's ``(1 - p) x``).

    Draws ``samples`` training outputs and tests, with stated bounds:

    * globally: :math:`|\bar d| \le \sigma\,s_d/\sqrt{nS}` for the differences :math:`d` between
      each training output and the eval output over all :math:`n` elements and :math:`S` samples;
    * per element: :math:`|\bar d_i| \le \sigma_e\,s_i/\sqrt{S} + \mathrm{atol}`, with
      :math:`\sigma_e = \sigma + \sqrt{2 \ln n}` (a Bonferroni-style allowance for testing
      :math:`n` elements at once).

    Alpha dropout preserves the mean and variance of standardised inputs, not each element's
    expectation, and fails this test by design.

    Example:
        >>> import torch, dropkit
        >>> assert_expectation_preserved(dropkit.nn.Dropout(0.3, seed=0), torch.randn(64))
    """
    with _preserved(module), torch.no_grad():
        module.eval()
        expected = module(example_input).detach().double()
        module.train()
        total = torch.zeros_like(expected)
        total_sq = torch.zeros_like(expected)
        for _ in range(samples):
            diff = module(example_input).detach().double() - expected
            total += diff
            total_sq += diff * diff
    mean = total / samples
    variance = (total_sq / samples - mean * mean).clamp_min(0) * samples / max(samples - 1, 1)
    n = mean.numel()
    global_mean = float(mean.mean())
    global_bound = sigma * math.sqrt(float(variance.mean()) / (n * samples)) + atol
    if abs(global_mean) > global_bound:
        raise AssertionError(
            f"mean training output differs from the eval output by {global_mean:.3g} on "
            f"average, beyond the {sigma:g}-sigma bound {global_bound:.3g} ({samples} samples)"
        )
    element_sigma = sigma + math.sqrt(2 * math.log(max(n, 2)))
    bound = element_sigma * variance.sqrt() / math.sqrt(samples) + atol
    excess = mean.abs() - bound
    if bool((excess > 0).any()):
        worst = int(excess.argmax())
        raise AssertionError(
            f"{int((excess > 0).sum())} of {n} elements' mean training output differs from "
            f"the eval output beyond {element_sigma:.3g} sigma; worst at flat index {worst}: "
            f"{float(mean.flatten()[worst]):.3g} > bound {float(bound.flatten()[worst]):.3g}"
        )
