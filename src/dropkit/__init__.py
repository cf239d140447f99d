"""dropkit: dropout that is complete, correct, fast and measurable.

Every mask is a pure function of ``(seed, step, element index)`` through Philox4x32-10: nothing
is stored for backward, and masks are bit-identical on every device and for any batch split.
"""

from typing import Any

from dropkit import functional, kernels, nn, rng, schedules, surgery, uncertainty
from dropkit._checkpoint import checkpoint, checkpoint_context
from dropkit._meta_rates import MetaRateTuner
from dropkit._regularization import LearnedRate, learned_rates, regularization
from dropkit.nn._variational import export_pruned, sparsity
from dropkit.rng import p_eff
from dropkit.surgery import audit, summary
from dropkit.uncertainty import mc_mode

__version__ = "0.1.0"

__all__ = [
    "LearnedRate",
    "MetaRateTuner",
    "__version__",
    "audit",
    "checkpoint",
    "checkpoint_context",
    "export_pruned",
    "functional",
    "integrations",
    "kernels",
    "learned_rates",
    "mc_mode",
    "nn",
    "p_eff",
    "regularization",
    "rng",
    "schedules",
    "sparsity",
    "summary",
    "surgery",
    "testing",
    "uncertainty",
]

_LAZY = ("integrations", "testing")


def __getattr__(name: str) -> Any:
    # testing and integrations are for test suites and training loops: imported on first use.
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"dropkit.{name}")
    raise AttributeError(f"module 'dropkit' has no attribute {name!r}")
