"""Patch dropout module (Liu et al. 2022): :class:`PatchDropout`, one call into
:func:`dropkit.functional.patch_dropout`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dropkit import functional as F
from dropkit.nn._aliases import rate_alias
from dropkit.nn._base import DropoutModule

__all__ = ["PatchDropout"]


class PatchDropout(DropoutModule):
    r"""Token (patch) dropout: keep a random subset of tokens per sample (as timm's
    ``PatchDropout``; Liu et al. 2022, Li et al. 2023).

    In training, of the :math:`L` non-prefix tokens of each sample,
    :math:`\max(1, \lfloor L (1 - p) \rfloor)` are kept, chosen uniformly without replacement
    by sorting counter-based uniforms; the ``num_prefix_tokens`` leading tokens (class,
    register tokens) are always kept, first. ``ordered=True`` keeps the kept tokens in their
    original order. No rescaling (tokens are removed, not zeroed). Identity at inference.

    Args:
        prob: drop fraction ``p`` in [0, 1), in timm's name (this is a drop-in for timm's
            ``PatchDropout``); dropkit's ``p=`` is accepted as a keyword alias.
        num_prefix_tokens: leading tokens always kept.
        ordered: keep the original token order.
        return_indices: return ``(tokens, keep_indices)`` (``keep_indices`` is ``None`` at
            inference) instead of the tokens alone.
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(B, L_{prefix} + L, *)`. Output: :math:`(B, L_{prefix} + K, *)`;
          indices :math:`(B, K)` into the non-prefix tokens.

    Example:
        >>> drop = dropkit.nn.PatchDropout(0.5, num_prefix_tokens=1, seed=0)
        >>> drop(torch.ones(2, 9, 4)).shape
        torch.Size([2, 5, 4])

    References:
        Liu et al., "PatchDropout: Economizing Vision Transformers Using Patch Dropout", WACV
        2023. Li et al., "Scaling Language-Image Pre-training via Masking", CVPR 2023.
    """

    allow_rate_one = False

    def __init__(
        self,
        prob: float = 0.5,
        num_prefix_tokens: int = 1,
        ordered: bool = False,
        return_indices: bool = False,
        *,
        seed: int | None = None,
        p: float | None = None,
    ) -> None:
        super().__init__(rate_alias("PatchDropout", prob, 0.5, "p", p), seed=seed)
        self.num_prefix_tokens = num_prefix_tokens
        self.ordered = bool(ordered)
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor) -> Any:
        tokens, indices = F.patch_dropout(
            x, self.rate, self.training, num_prefix_tokens=self.num_prefix_tokens,
            ordered=self.ordered, seed=self.seed, step=self.next_step(),
        )  # fmt: skip
        return (tokens, indices) if self.return_indices else tokens

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_prefix_tokens={self.num_prefix_tokens}"
