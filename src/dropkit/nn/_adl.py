"""Attention-based dropout layer (Choe & Shim 2019): :class:`ADL`, one call into
:func:`dropkit.functional.adl`."""

from __future__ import annotations

from torch import Tensor

from dropkit import functional as F
from dropkit.functional._checks import check_p
from dropkit.nn._aliases import rate_alias
from dropkit.nn._base import DropoutModule

__all__ = ["ADL"]


class ADL(DropoutModule):
    r"""Attention-based Dropout Layer (Choe & Shim 2019) for weakly supervised localisation.

    From the channel-mean self-attention map :math:`A = \frac{1}{C}\sum_c x_c` (per sample),
    build the drop mask :math:`M_{\mathrm{drop}} = [A < \gamma \max A]` (hides the most
    discriminative region) and the importance map :math:`M_{\mathrm{imp}} = \sigma(A)`. Each
    training call uses the drop mask with probability ``p``, else the importance
    map — one choice for the whole batch, as the authors' code — and returns
    :math:`x \odot M`. Identity at inference. Gradients flow through the importance map.

    Args:
        p: probability of using the drop mask in a call (the paper's 0.75 default).
            ``drop_rate`` (the authors' name) is accepted as a keyword alias.
        gamma: drop threshold :math:`\gamma` in [0, 1] relative to the per-sample maximum.
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(N, C, H, W)`. Output: same.

    Example:
        >>> dropkit.nn.ADL(0.75, 0.9, seed=0)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])

    References:
        Choe & Shim, "Attention-based Dropout Layer for Weakly Supervised Object Localization",
        CVPR 2019.
    """

    def __init__(
        self,
        p: float = 0.75,
        gamma: float = 0.9,
        *,
        seed: int | None = None,
        drop_rate: float | None = None,
    ) -> None:
        super().__init__(rate_alias("ADL", p, 0.75, "drop_rate", drop_rate), seed=seed)
        self.gamma = check_p(gamma, "gamma")

    def forward(self, x: Tensor) -> Tensor:
        return F.adl(x, self.rate, self.training, gamma=self.gamma, seed=self.seed,
                     step=self.next_step())  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma:g}"
