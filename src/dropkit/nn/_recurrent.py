"""Modules of recurrent dropout: weight dropout (AWD-LSTM), zoneout cells and variational
RNNs. Each ``forward`` is one call into :mod:`dropkit.functional`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dropkit import functional as F
from dropkit.functional._checks import check_p
from dropkit.functional._recurrent import RNNMode, check_weight_names
from dropkit.nn._base import DropoutModule

__all__ = [
    "VariationalGRU",
    "VariationalLSTM",
    "WeightDrop",
    "ZoneoutGRUCell",
    "ZoneoutLSTMCell",
]


class WeightDrop(DropoutModule):
    r"""Weight dropout (DropConnect on chosen parameters) of any module, as in AWD-LSTM.

    Each training call replaces the named parameters by inverted-dropout masked copies
    :math:`M \odot W / (1 - p_{\mathrm{eff}})` — one mask per forward call, shared by every
    time step — through ``torch.func.functional_call``. The masked copies are computed from the
    real parameters, so ``.grad`` reaches them (the known AWD bug re-registers the weight as a
    new Parameter and cuts the gradient); nothing is re-registered, so the wrapped module's
    ``state_dict`` is that of a plain module (``wrapper.module.state_dict()`` loads into a plain
    ``nn.LSTM`` and back). cuDNN's warning that the RNN weights are not one contiguous chunk
    (unavoidable with substituted weights) is silenced for the call. The plain module runs at
    inference.

    Args:
        module: the module to wrap (e.g. ``nn.LSTM``).
        weights: parameter names to drop, e.g. ``["weight_hh_l0"]`` (AWD-LSTM drops the
            hidden-to-hidden matrices); a wrong name raises a ``ValueError`` listing the
            available names.
        p: drop rate in [0, 1].
        seed: 64-bit seed.

    Shape:
        - As the wrapped module.

    Example:
        >>> lstm = dropkit.nn.WeightDrop(torch.nn.LSTM(4, 8), ["weight_hh_l0"], p=0.5, seed=0)
        >>> out, (h, c) = lstm(torch.randn(5, 2, 4))

    References:
        Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language Models", ICLR 2018.
        Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    def __init__(
        self,
        module: nn.Module,
        weights: Sequence[str] | str = ("weight_hh_l0",),
        p: float = 0.5,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        self.weights = check_weight_names(module, weights)
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return F.weight_dropout_call(
            self.module, self.weights, self.rate, self.training, args, kwargs, seed=self.seed,
            step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weights={list(self.weights)}"


class _ZoneoutCell(DropoutModule):
    cell_type: type[nn.LSTMCell] | type[nn.GRUCell] = nn.LSTMCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        p: float = 0.1,
        p_cell: float | None = None,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        self.cell = self.cell_type(input_size, hidden_size, bias, device=device, dtype=dtype)
        self.p_cell = self.p if p_cell is None else check_p(p_cell, "p_cell")

    def forward(self, x: Tensor, hx: Any = None) -> Any:
        return F.zoneout_cell(
            self.cell, x, hx, self.rate, self.p_cell, self.training, seed=self.seed,
            step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p_cell={self.p_cell:g}"


class ZoneoutLSTMCell(_ZoneoutCell):
    r"""An LSTM cell with zoneout (Krueger et al. 2017): units keep their previous value.

    In training, with fresh masks each step,
    :math:`c_t = d^c_t \odot c_{t-1} + (1 - d^c_t) \odot \tilde c_t` and
    :math:`h_t = d^h_t \odot h_{t-1} + (1 - d^h_t) \odot \tilde h_t`, where
    :math:`\tilde c_t, \tilde h_t` are the plain LSTM update and
    :math:`d \sim \mathrm{Bernoulli}(p)`. At inference the expectation:
    :math:`h_t = p\,h_{t-1} + (1 - p)\,\tilde h_t` (same for ``c``). The masks are regenerated in
    backward, never stored.

    Args:
        input_size, hidden_size, bias: as ``torch.nn.LSTMCell``.
        p: zoneout rate of the hidden state, in [0, 1].
        p_cell: zoneout rate of the cell state (defaults to ``p``); the paper uses separate
            rates (e.g. 0.05 on hidden, 0.5 on cells).
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(B, H_{in})` and optionally ``(h, c)`` each :math:`(B, H)`.
          Output: ``(h, c)``.

    Example:
        >>> cell = dropkit.nn.ZoneoutLSTMCell(3, 4, p=0.05, p_cell=0.5, seed=0)
        >>> h, c = cell(torch.randn(2, 3))

    References:
        Krueger et al., "Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations",
        ICLR 2017.
    """

    cell_type = nn.LSTMCell


class ZoneoutGRUCell(_ZoneoutCell):
    r"""A GRU cell with zoneout on the hidden state (Krueger et al. 2017).

    :math:`h_t = d_t \odot h_{t-1} + (1 - d_t) \odot \mathrm{GRU}(x_t, h_{t-1})`,
    :math:`d_t \sim \mathrm{Bernoulli}(p)`, in training; the expectation at inference.
    ``p_cell`` is unused.

    Shape:
        - Input: :math:`(B, H_{in})` and optionally ``h`` :math:`(B, H)`. Output: ``h``.

    Example:
        >>> h = dropkit.nn.ZoneoutGRUCell(3, 4, p=0.1, seed=0)(torch.randn(2, 3))

    References:
        Krueger et al., "Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations",
        ICLR 2017.
    """

    cell_type = nn.GRUCell


class _VariationalRNN(DropoutModule):
    mode: RNNMode = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        p: float = 0.25,
        *,
        p_input: float | None = None,
        p_layer: float | None = None,
        p_output: float | None = None,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        rnn_type = nn.LSTM if self.mode == "lstm" else nn.GRU
        self.rnn = rnn_type(
            input_size, hidden_size, num_layers, bias, batch_first, 0.0, bidirectional,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.p_input = self.p if p_input is None else check_p(p_input, "p_input")
        self.p_layer = self.p if p_layer is None else check_p(p_layer, "p_layer")
        self.p_output = self.p if p_output is None else check_p(p_output, "p_output")

    def forward(self, x: Tensor, hx: Any = None) -> Any:
        rnn = self.rnn
        return F.variational_rnn(
            x, hx, rnn.all_weights, mode=self.mode, hidden_size=rnn.hidden_size,
            num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
            batch_first=rnn.batch_first, p_input=self.p_input, p_hidden=self.rate,
            p_layer=self.p_layer, p_output=self.p_output, training=self.training,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, p_input={self.p_input:g}, p_layer={self.p_layer:g}, "
            f"p_output={self.p_output:g}"
        )


class VariationalLSTM(_VariationalRNN):
    r"""A multi-layer LSTM with variational dropout: one mask per sequence (Gal & Ghahramani
    2016).

    Each mask is drawn once per forward call and used at every time step: on the input
    sequence (``p_input``), on the input of every further layer (``p_layer``, locked dropout
    between layers), on the output sequence (``p_output``), and on the recurrent state
    :math:`h_{t-1}` before the hidden-to-hidden product, per layer and direction (``p``), all
    with inverted scaling. This is the paper's "tied" variant: one recurrent mask shared by
    the four gates (the untied variant draws one per gate). With ``p == 0`` (or at inference)
    every layer runs PyTorch's fused LSTM (cuDNN on GPU); otherwise the recurrence is unrolled.
    The weights live in ``self.rnn``, a plain ``nn.LSTM`` (same ``state_dict`` keys under
    ``rnn.``).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as
            ``torch.nn.LSTM``.
        p: recurrent dropout rate (on :math:`h_{t-1}`), in [0, 1].
        p_input, p_layer, p_output: rates of the input, between-layer and output masks
            (each defaults to ``p``).
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(T, B, H_{in})` (or :math:`(B, T, H_{in})` if ``batch_first``),
          optional ``(h_0, c_0)`` each :math:`(L D, B, H)`.
        - Output: ``(output, (h_n, c_n))`` as ``torch.nn.LSTM``.

    Example:
        >>> lstm = dropkit.nn.VariationalLSTM(4, 8, num_layers=2, p=0.25, seed=0)
        >>> out, (h, c) = lstm(torch.randn(5, 2, 4))
        >>> out.shape
        torch.Size([5, 2, 8])

    References:
        Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
        Networks", NeurIPS 2016.
    """

    mode: RNNMode = "lstm"


class VariationalGRU(_VariationalRNN):
    r"""A multi-layer GRU with variational dropout; see :class:`VariationalLSTM`.

    The recurrent mask multiplies :math:`h_{t-1}` in the hidden-to-hidden products of all three
    gates; the carried state :math:`z \odot h_{t-1}` uses the unmasked state.

    Shape:
        - Input: as ``torch.nn.GRU``. Output: ``(output, h_n)``.

    Example:
        >>> out, h = dropkit.nn.VariationalGRU(4, 8, p=0.25, seed=0)(torch.randn(5, 2, 4))

    References:
        Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
        Networks", NeurIPS 2016.
    """

    mode: RNNMode = "gru"
