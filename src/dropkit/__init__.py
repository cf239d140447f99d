"""dropkit: dropout that is complete, correct, fast and measurable.

Every mask is a pure function of ``(seed, step, element index)`` through Philox4x32-10: nothing
is stored for backward, and masks are bit-identical on every device and for any batch split.
"""

from dropkit import functional, kernels, nn, rng, uncertainty
from dropkit.rng import p_eff
from dropkit.uncertainty import mc_mode

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "functional",
    "kernels",
    "mc_mode",
    "nn",
    "p_eff",
    "rng",
    "uncertainty",
]
