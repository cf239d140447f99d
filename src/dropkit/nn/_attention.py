"""Modules of attention dropout: dropout of attention probabilities, DropHead and DropKey.
Each ``forward`` is one call into :mod:`dropkit.functional`."""

from __future__ import annotations

from torch import Tensor

from dropkit import functional as F
from dropkit.functional._attention import HeadScale
from dropkit.functional._checks import check_int
from dropkit.nn._base import DropoutModule

__all__ = ["AttentionDropout", "DropHead", "DropKey"]


class AttentionDropout(DropoutModule):
    r"""Scaled dot-product attention with dropout on the attention probabilities.

    :math:`\mathrm{out} = \big(m \odot \mathrm{softmax}(q k^\top s + \mathrm{mask})
    / (1 - p_{\mathrm{eff}})\big)\, v`, :math:`s = 1/\sqrt{E}` unless given, a fresh
    counter-based mask :math:`m` per call (regenerated in backward, never stored), as in the
    Transformer (Vaswani et al. 2017). ``use_sdpa=True`` is the fast path: PyTorch's fused
    ``scaled_dot_product_attention`` with its own ``dropout_p`` — same distribution, but the
    mask comes from PyTorch's generator, so it does not follow ``seed``/``step``. No dropout at
    inference.

    Args:
        p: dropout rate of the attention probabilities, in [0, 1].
        use_sdpa: use PyTorch's fused attention and its dropout.
        scale: the logit scale (default :math:`1/\sqrt{E}`).
        seed: 64-bit seed.

    Shape:
        - ``query`` :math:`(*, L, E)`, ``key`` :math:`(*, S, E)`, ``value`` :math:`(*, S, E_v)`;
          ``attn_mask`` broadcastable to :math:`(*, L, S)` (bool: True may attend; float:
          added). Output: :math:`(*, L, E_v)`.

    Example:
        >>> attn = dropkit.nn.AttentionDropout(0.1, seed=0)
        >>> q = torch.randn(2, 4, 6, 8)
        >>> attn(q, q, q).shape
        torch.Size([2, 4, 6, 8])

    References:
        Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(
        self, p: float = 0.1, *, use_sdpa: bool = False, scale: float | None = None,
        seed: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(p, seed=seed)
        self.use_sdpa = bool(use_sdpa)
        self.scale = scale

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        return F.attention(
            query, query if key is None else key, query if value is None else value, self.rate,
            self.training, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale,
            use_sdpa=self.use_sdpa, seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, use_sdpa={self.use_sdpa}"


class DropHead(DropoutModule):
    r"""DropHead: drop whole attention heads per sample (Zhou et al. 2020).

    Apply to the per-head outputs :math:`(B, H, L, D)` (before the heads are merged). Each
    head of each sample is kept with probability :math:`1 - p`; with ``scale="kept"`` (the
    paper) a sample's kept heads are rescaled by :math:`H / \sum_h m_{b,h}` (a sample with no
    head kept outputs zeros); ``scale="rate"`` uses :math:`1 / (1 - p)`. Identity at inference.
    The paper's scheduled (V-shaped) rate is a schedule on ``module.p``.

    Args:
        p: head drop rate in [0, 1].
        head_dim: the head axis (1 for :math:`(B, H, L, D)`).
        scale: ``"kept"`` or ``"rate"``.
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(B, H, *)`. Output: same.

    Example:
        >>> dropkit.nn.DropHead(0.2, seed=0)(torch.ones(2, 4, 3, 8)).shape
        torch.Size([2, 4, 3, 8])

    References:
        Zhou, Ge, Xu, Wei & Zhou, "Scheduled DropHead: A Regularization Method for Transformer
        Models", Findings of EMNLP 2020.
    """

    def __init__(
        self, p: float = 0.1, *, head_dim: int = 1, scale: HeadScale = "kept",
        seed: int | None = None,
    ) -> None:  # fmt: skip
        if scale not in ("kept", "rate"):
            raise ValueError(f"scale must be 'kept' or 'rate', got {scale!r}")
        super().__init__(p, seed=seed)
        self.head_dim = check_int(head_dim, "head_dim")
        self.scale: HeadScale = scale

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_head(x, self.rate, self.training, head_dim=self.head_dim, scale=self.scale,
                           seed=self.seed, step=self.next_step())  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, head_dim={self.head_dim}, scale={self.scale!r}"


class DropKey(DropoutModule):
    r"""DropKey: drop keys before the softmax (Li et al. 2023).

    Apply to the attention logits :math:`(\dots, L, S)`: each (query, key) logit is dropped
    with probability ``p`` — set to the dtype's lowest finite value, so the softmax
    renormalises over the kept keys (no rescaling needed; a row with every key dropped becomes
    uniform, as the paper's ``-1e12`` fill gives). Identity at inference. Backward regenerates
    the mask from ``(seed, step)``: no logits-sized mask is held between forward and backward
    (a plain ``torch.where`` holds one byte per logit).

    Args:
        p: key drop rate in [0, 1].
        seed: 64-bit seed.

    Shape:
        - Input: logits :math:`(*, L, S)`. Output: same.

    Example:
        >>> logits = dropkit.nn.DropKey(0.1, seed=0)(torch.randn(2, 4, 6, 6))
        >>> torch.softmax(logits, dim=-1).shape
        torch.Size([2, 4, 6, 6])

    References:
        Li et al., "DropKey for Vision Transformer", CVPR 2023.
    """

    def forward(self, scores: Tensor) -> Tensor:
        return F.drop_key(scores, self.rate, self.training, seed=self.seed, step=self.next_step())
