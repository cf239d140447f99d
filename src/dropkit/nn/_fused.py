"""Fused dropout blocks as modules. Each ``forward`` is one call into :mod:`dropkit.functional`."""

from __future__ import annotations

from torch import Tensor

from dropkit import functional as F
from dropkit.functional._fused import ACTIVATIONS, Activation
from dropkit.nn._base import DropoutModule

__all__ = ["BiasActDropout", "BiasActDropoutAdd", "BiasDropoutAdd"]


class BiasDropoutAdd(DropoutModule):
    r"""``residual + dropout(x + bias)`` in one pass, as after a transformer's attention or MLP
    projection (Megatron-LM's *bias-dropout-add*).

    .. math:: y = r + m \odot (x + b) / (1 - p_{\mathrm{eff}})

    with the mask :math:`m` that :func:`dropkit.functional.dropout` draws for ``x`` (same seed,
    step and offset, bit for bit). Intermediates are float32; the result is rounded once to
    ``x``'s dtype. At inference :math:`y = r + x + b`. Nothing of ``x``'s size is saved for
    backward.

    Args:
        p: drop probability in [0, 1].
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - ``x``: :math:`(*)`; ``bias`` (or None) and ``residual`` broadcast to ``x``.
          Output: ``x``'s shape and dtype.

    Example:
        >>> import torch, dropkit
        >>> block = dropkit.nn.BiasDropoutAdd(0.1, seed=0)
        >>> block(torch.randn(2, 8), torch.zeros(8), torch.randn(2, 8)).shape
        torch.Size([2, 8])

    References:
        Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using
        Model Parallelism", 2019. Srivastava et al., "Dropout", JMLR 2014.
    """

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__(p, seed=seed)

    def forward(self, x: Tensor, bias: Tensor | None, residual: Tensor) -> Tensor:
        return F.bias_dropout_add(
            x, bias, residual, self.rate, self.training, seed=self.seed, step=self.next_step()
        )


class _ActivationDropout(DropoutModule):
    def __init__(
        self, p: float = 0.5, activation: Activation = "gelu", *, seed: int | None = None
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        super().__init__(p, seed=seed)
        self.activation: Activation = activation

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class BiasActDropout(_ActivationDropout):
    r"""``dropout(act(x + bias))`` in one pass: the MLP's first half after its matmul.

    .. math:: y = m \odot \mathrm{act}(x + b) / (1 - p_{\mathrm{eff}})

    ``act`` is ``"gelu"`` (erf), ``"gelu_tanh"``, ``"relu"`` or ``"silu"``; the mask is the one
    :func:`dropkit.functional.dropout` draws for ``x``. Backward keeps only ``x`` and ``bias``
    (the pre-activation is recomputed for the activation's derivative); no mask.

    Args:
        p: drop probability in [0, 1].
        activation: ``"gelu"``, ``"gelu_tanh"``, ``"relu"`` or ``"silu"``.
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - ``x``: :math:`(*)`; ``bias`` (optional) broadcasts to ``x``. Output: same as ``x``.

    Example:
        >>> block = dropkit.nn.BiasActDropout(0.1, "gelu", seed=0)
        >>> block(torch.randn(2, 8), torch.zeros(8)).shape
        torch.Size([2, 8])

    References:
        Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", 2016. Srivastava et al.,
        "Dropout", JMLR 2014.
    """

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        return F.bias_act_dropout(
            x, bias, self.rate, self.activation, self.training,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip


class BiasActDropoutAdd(_ActivationDropout):
    r"""``residual + dropout(act(x + bias))`` in one pass.

    .. math:: y = r + m \odot \mathrm{act}(x + b) / (1 - p_{\mathrm{eff}})

    Args:
        p: drop probability in [0, 1].
        activation: ``"gelu"``, ``"gelu_tanh"``, ``"relu"`` or ``"silu"``.
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - ``x``: :math:`(*)`; ``bias`` (or None) and ``residual`` broadcast to ``x``.
          Output: same as ``x``.

    Example:
        >>> block = dropkit.nn.BiasActDropoutAdd(0.1, "gelu", seed=0)
        >>> block(torch.randn(2, 8), torch.zeros(8), torch.randn(2, 8)).shape
        torch.Size([2, 8])

    References:
        Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", 2016. Shoeybi et al.,
        "Megatron-LM", 2019.
    """

    def forward(self, x: Tensor, bias: Tensor | None, residual: Tensor) -> Tensor:
        return F.bias_act_dropout_add(
            x, bias, residual, self.rate, self.activation, self.training,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip
