"""dropkit: dropout that is complete, correct, fast and measurable.

Every mask is a pure function of ``(seed, step, element index)`` through Philox4x32-10: nothing
is stored for backward, and masks are bit-identical on every device and for any batch split.
"""

from dropkit import functional, kernels, nn, rng
from dropkit.rng import p_eff

__version__ = "0.1.0"

__all__ = ["__version__", "functional", "kernels", "nn", "p_eff", "rng"]
