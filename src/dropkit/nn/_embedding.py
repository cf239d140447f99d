"""Embedding dropout module (Gal & Ghahramani 2016): :class:`EmbeddingDropout`, one call into
:func:`dropkit.functional.embedding_dropout`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dropkit import functional as F
from dropkit.nn._base import DropoutModule

__all__ = ["EmbeddingDropout"]


class EmbeddingDropout(DropoutModule):
    r"""An embedding whose rows (whole words) are dropped per call (Gal & Ghahramani 2016;
    Merity et al. 2018).

    In training each vocabulary row :math:`v` is kept with probability :math:`1 - p` (one draw
    per row per call, so a dropped word is zero at every position of the batch), and kept rows
    are scaled by :math:`1 / (1 - p_{\mathrm{eff}})`. The padding row is never dropped or
    scaled and gets no gradient. The weight is never modified in place: the mask is applied to
    the looked-up rows, which equals looking up in the masked matrix without building it.
    Plain lookup at inference.

    Args:
        num_embeddings, embedding_dim, padding_idx: as ``torch.nn.Embedding``.
        p: drop rate of each row in [0, 1].
        seed: 64-bit seed.

    Shape:
        - Input: integer indices :math:`(*)`. Output: :math:`(*, \text{embedding\_dim})`.

    Example:
        >>> emb = dropkit.nn.EmbeddingDropout(10, 4, p=0.1, seed=0)
        >>> emb(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 4])

    References:
        Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
        Networks", NeurIPS 2016. Merity, Keskar & Socher, "Regularizing and Optimizing LSTM
        Language Models", ICLR 2018.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        p: float = 0.1,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        template = nn.Embedding(
            num_embeddings, embedding_dim, padding_idx, device=device, dtype=dtype
        )
        self.weight = template.weight
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = template.padding_idx

    @classmethod
    def from_embedding(
        cls, embedding: nn.Embedding, p: float = 0.1, **kwargs: Any
    ) -> EmbeddingDropout:
        """Embedding dropout sharing ``embedding``'s weight (e.g. tied with a decoder)."""
        layer = cls(
            embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, p, **kwargs
        )
        layer.weight = embedding.weight
        return layer

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding_dropout(
            input, self.weight, self.rate, self.training, padding_idx=self.padding_idx,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = f"{super().extra_repr()}, {self.num_embeddings}, {self.embedding_dim}"
        return extra if self.padding_idx is None else f"{extra}, padding_idx={self.padding_idx}"
