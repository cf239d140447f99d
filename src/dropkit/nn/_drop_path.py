"""Stochastic depth module (Huang et al. 2016): :class:`DropPath`, one call into
:func:`dropkit.functional.drop_path`."""

from __future__ import annotations

from torch import Tensor

from dropkit import functional as F
from dropkit.functional._drop_path import DropPathMode
from dropkit.nn._aliases import rate_alias
from dropkit.nn._base import DropoutModule

__all__ = ["DropPath"]


class DropPath(DropoutModule):
    r"""Stochastic depth: drop a residual branch for whole samples (Huang et al. 2016).

    ``mode="row"`` (default, as timm): one Bernoulli draw per sample,
    :math:`y_n = m_n x_n / (1 - p_{\mathrm{eff}})`; ``mode="batch"`` (the paper's original):
    one draw for the whole mini-batch. Use on the branch, before the residual add (or call
    :func:`dropkit.functional.drop_path_add`). Identity at inference. With
    ``scale_by_keep=False`` kept samples are not scaled and inference is still the identity,
    as in timm; the paper instead scales the branch by its survival probability at test time.

    Args:
        drop_prob: drop rate ``p`` in [0, 1], in timm's name (this is a drop-in for timm's
            ``DropPath``); dropkit's ``p=`` is accepted as a keyword alias, and ``module.p`` /
            ``module.drop_prob`` read and set it.
        scale_by_keep: scale kept samples by :math:`1 / (1 - p)`.
        mode: ``"row"`` or ``"batch"``.
        batch_dim: the sample dimension (0).
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - Input: :math:`(N, *)`, at least 1-D. Output: same.

    Example:
        >>> dropkit.nn.DropPath(0.2, seed=0)(torch.ones(4, 3, 2)).shape
        torch.Size([4, 3, 2])

    References:
        Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016.
    """

    def __init__(
        self,
        drop_prob: float = 0.0,
        scale_by_keep: bool = True,
        *,
        mode: DropPathMode = "row",
        batch_dim: int = 0,
        seed: int | None = None,
        p: float | None = None,
    ) -> None:
        p = rate_alias("DropPath", drop_prob, 0.0, "p", p)
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        super().__init__(p, seed=seed)
        self.scale_by_keep = bool(scale_by_keep)
        self.mode: DropPathMode = mode
        self.batch_dim = batch_dim

    @property
    def drop_prob(self) -> float:
        """timm's name for the rate (same as ``p``)."""
        return self.p

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self.p = value

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_path(
            x, self.rate, self.training, scale_by_keep=self.scale_by_keep, mode=self.mode,
            batch_dim=self.batch_dim, seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = [super().extra_repr()]
        if not self.scale_by_keep:
            extra.append("scale_by_keep=False")
        if self.mode != "row":
            extra.append(f"mode={self.mode!r}")
        return ", ".join(extra)
