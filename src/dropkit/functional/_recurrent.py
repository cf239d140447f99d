"""Recurrent dropout as functions: weight dropout (AWD-LSTM), zoneout and variational RNNs.
Modules in :mod:`dropkit.nn` wrap them; their docstrings carry the full math and references."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_draw_args,
    check_floating,
    check_offset,
    resolve_seed_step,
)
from dropkit.kernels import _ops
from dropkit.kernels.reference import compute_dtype, dropout_scale, keep_probability

__all__ = ["variational_rnn", "weight_dropout_call", "zoneout", "zoneout_cell"]

RNNMode = Literal["lstm", "gru"]
# cuDNN warns on every call when an RNN's weights are not one flat buffer, which is always
# the case when masked copies replace them; the warning is about speed, not correctness.
_NON_CONTIGUOUS_RNN_WARNING = r".*not part of single contiguous chunk of memory.*"


def check_weight_names(module: nn.Module, weights: Sequence[str]) -> tuple[str, ...]:
    """The names as a tuple; a ValueError listing the module's parameters if one is unknown."""
    if isinstance(weights, str):
        weights = (weights,)
    available = [name for name, _ in module.named_parameters()]
    missing = [name for name in weights if name not in available]
    if missing or not weights:
        raise ValueError(
            f"weights {list(missing) or list(weights)} are not parameters of "
            f"{type(module).__name__}; available weight names: {', '.join(available)}"
        )
    return tuple(weights)


def weight_dropout_call(
    module: nn.Module,
    weights: Sequence[str],
    p: float | Tensor,
    training: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None = None,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Any:
    """Call ``module(*args, **kwargs)`` with the named parameters replaced by inverted-dropout
    masked copies (see :class:`dropkit.nn.WeightDrop`).

    The masked copies are computed from the real parameters, so gradients reach them; nothing
    is re-registered on the module. Weight ``k`` uses the mask elements after those of weights
    ``0 .. k-1`` (offsets add up), so the masks are independent.

    Example:
        >>> lstm = torch.nn.LSTM(3, 4)
        >>> out, _ = weight_dropout_call(lstm, ["weight_hh_l0"], 0.5, True, (torch.ones(2, 1, 3),))
    """
    names = check_weight_names(module, weights)
    offset = check_draw_args(training, seed, step, offset)
    kwargs = kwargs or {}
    if not training:
        return module(*args, **kwargs)
    params = dict(module.named_parameters())
    rate = as_rate(p, params[names[0]])
    seed_t, step_t = resolve_seed_step(seed, step, params[names[0]].device)
    position = check_offset(offset)
    replaced: dict[str, Tensor] = {}
    for name in names:
        weight = params[name]
        replaced[name] = _ops.dropout(
            weight, rate, seed_t, step_t, position, list(weight.shape), True
        )
        position += weight.numel()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NON_CONTIGUOUS_RNN_WARNING)
            return torch.func.functional_call(module, replaced, args, kwargs)
    finally:
        # functional_call restores the parameters without nn.RNNBase.__setattr__, so an RNN's
        # cached _flat_weights would keep the masked copies (and their graph): rebuild them.
        for sub in module.modules():
            if isinstance(sub, nn.RNNBase):
                sub._init_flat_weights()


def zoneout(
    h_new: Tensor,
    h_prev: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Zoneout: each unit keeps its previous value with probability ``p`` in training; the
    expectation ``p * h_prev + (1 - p) * h_new`` at inference (see
    :class:`dropkit.nn.ZoneoutLSTMCell`).

    Computed as ``h_prev + mask * (h_new - h_prev)`` with a counter-based mask regenerated in
    backward, so no mask is stored; where the mask is 1 the result equals ``h_new`` up to one
    rounding of the difference.

    Example:
        >>> h = zoneout(torch.ones(2, 3), torch.zeros(2, 3), 0.5, seed=0)
    """
    check_floating(h_new, "h_new")
    check_floating(h_prev, "h_prev")
    if h_new.shape != h_prev.shape:
        raise ValueError(
            f"h_prev must have the shape of h_new {tuple(h_new.shape)}, got {tuple(h_prev.shape)}"
        )
    offset = check_draw_args(training, seed, step, offset)
    rate = as_rate(p, h_new)
    if not isinstance(p, Tensor) and p == 0:
        return h_new
    if not training:
        cd = compute_dtype(h_new.dtype)
        keep_prob = keep_probability(rng.threshold_tensor(rate), cd)
        mixed = h_prev.to(cd) + keep_prob * (h_new.to(cd) - h_prev.to(cd))
        return mixed.to(h_new.dtype)
    seed_t, step_t = resolve_seed_step(seed, step, h_new.device)
    update = _ops.dropout(
        h_new - h_prev, rate, seed_t, step_t, check_offset(offset), list(h_new.shape), False
    )
    return h_prev + update


def _lstm_step(
    gates_x: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None
) -> tuple[Tensor, Tensor]:
    gates = gates_x + torch.nn.functional.linear(h, w_hh, b_hh)
    in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=-1)
    c = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
    return torch.sigmoid(out_gate) * torch.tanh(c), c


def _gru_step(
    gates_x: Tensor, h_masked: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None
) -> Tensor:
    gates_h = torch.nn.functional.linear(h_masked, w_hh, b_hh)
    x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
    h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
    reset = torch.sigmoid(x_r + h_r)
    update = torch.sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + reset * h_n)
    return (1 - update) * candidate + update * h


def _unrolled_direction(
    mode: RNNMode,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    params: Sequence[Tensor],
    recurrent_mask: Tensor,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer, one direction, time-major ``x`` (T, B, in); the recurrent mask (already
    scaled) multiplies ``h_{t-1}`` before the hidden-to-hidden product at every step."""
    w_ih, w_hh = params[0], params[1]
    b_ih = params[2] if len(params) > 2 else None
    b_hh = params[3] if len(params) > 2 else None
    gates_x = torch.nn.functional.linear(x, w_ih, b_ih)
    h, c = h0, c0
    outputs: list[Tensor] = []
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in steps:
        if mode == "lstm":
            assert c is not None
            h, c = _lstm_step(gates_x[t], h * recurrent_mask, c, w_hh, b_hh)
        else:
            h = _gru_step(gates_x[t], h * recurrent_mask, h, w_hh, b_hh)
        outputs.append(h)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs), h, c


def variational_rnn(
    x: Tensor,
    hx: Tensor | tuple[Tensor, Tensor] | None,
    params: Sequence[Sequence[Tensor]],
    *,
    mode: RNNMode = "lstm",
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    p_input: float | Tensor = 0.0,
    p_hidden: float | Tensor = 0.0,
    p_layer: float | Tensor = 0.0,
    p_output: float | Tensor = 0.0,
    training: bool = True,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """A multi-layer LSTM/GRU with one dropout mask per sequence (see
    :class:`dropkit.nn.VariationalLSTM`).

    ``params[layer * num_directions + direction]`` holds ``(w_ih, w_hh[, b_ih, b_hh])`` as
    ``torch.nn.LSTM``/``GRU`` store them. Masks: ``p_input`` on the input sequence,
    ``p_layer`` on the input of every further layer, ``p_output`` on the output, and
    ``p_hidden`` on ``h_{t-1}`` inside each layer and direction — each the same at every time
    step. With ``p_hidden == 0`` (or at inference) every layer runs as PyTorch's fused RNN op
    (cuDNN on GPU); otherwise the recurrence is unrolled in Python. The choice reads
    ``p_hidden`` on the host (one sync per call on GPU).

    Example:
        >>> lstm = torch.nn.LSTM(3, 4)
        >>> out, (h, c) = variational_rnn(
        ...     torch.ones(5, 2, 3), None, [lstm._flat_weights], hidden_size=4, p_hidden=0.3,
        ...     seed=0)
    """
    check_floating(x)
    if mode not in ("lstm", "gru"):
        raise ValueError(f"mode must be 'lstm' or 'gru', got {mode!r}")
    check_draw_args(training, seed, step, 0)
    if x.dim() != 3:
        raise ValueError(f"input must be 3-D (T, B, H) or (B, T, H), got {tuple(x.shape)}")
    directions = 2 if bidirectional else 1
    if len(params) != num_layers * directions:
        raise ValueError(
            f"params must hold num_layers * num_directions = {num_layers * directions} "
            f"weight groups, got {len(params)}"
        )
    rates = [as_rate(r, x, name) for r, name in ((p_input, "p_input"), (p_hidden, "p_hidden"),
             (p_layer, "p_layer"), (p_output, "p_output"))]  # fmt: skip
    input_rate, hidden_rate, layer_rate, output_rate = rates
    seq = x.transpose(0, 1) if batch_first else x
    batch = int(seq.shape[1])
    state_shape = (num_layers * directions, batch, hidden_size)
    if hx is None:
        zeros = seq.new_zeros(state_shape)
        h_all, c_all = zeros, (zeros if mode == "lstm" else None)
    elif mode == "lstm":
        if not isinstance(hx, tuple) or len(hx) != 2:
            raise TypeError("hx must be a tuple (h_0, c_0) for an LSTM")
        h_all, c_all = hx
    else:
        if not isinstance(hx, Tensor):
            raise TypeError("hx must be a tensor h_0 for a GRU")
        h_all, c_all = hx, None
    for name, state in (("h_0", h_all), ("c_0", c_all)):
        if state is not None and tuple(state.shape) != state_shape:
            raise ValueError(f"{name} must have shape {state_shape}, got {tuple(state.shape)}")
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    recurrent = training and float(hidden_rate) > 0
    # Every mask takes the next block of element indices, in the order they are used (layer
    # input, recurrent masks per direction, next layer, ..., output): all independent.
    position = 0

    def locked(sequence: Tensor, rate: Tensor) -> Tensor:
        nonlocal position
        shape = [1, *sequence.shape[1:]]
        start = position
        position += math.prod(shape)
        if not training:
            return sequence
        return _ops.dropout(sequence, rate, seed_t, step_t, start, shape, True)

    h_out: list[Tensor] = []
    c_out: list[Tensor] = []
    layer_input = seq
    for layer in range(num_layers):
        layer_input = locked(layer_input, input_rate if layer == 0 else layer_rate)
        index = layer * directions
        h0 = h_all[index : index + directions]
        c0 = c_all[index : index + directions] if c_all is not None else None
        flat = [t for d in range(directions) for t in params[index + d]]
        if not recurrent:
            if mode == "lstm":
                assert c0 is not None
                layer_input, h_n, c_n = torch.lstm(
                    layer_input, (h0, c0), flat, len(params[index]) > 2, 1, 0.0, training,
                    bidirectional, False,
                )  # fmt: skip
                c_out.append(c_n)
            else:
                layer_input, h_n = torch.gru(
                    layer_input, h0, flat, len(params[index]) > 2, 1, 0.0, training,
                    bidirectional, False,
                )  # fmt: skip
            h_out.append(h_n)
            continue
        outputs = []
        for direction in range(directions):
            mask_shape = [batch, hidden_size]
            mask_start = position
            position += batch * hidden_size
            keep = _ops.keep_mask(hidden_rate, seed_t, step_t, mask_start, mask_shape)
            cd = compute_dtype(x.dtype)
            scale = dropout_scale(rng.threshold_tensor(hidden_rate), cd).to(x.dtype)
            recurrent_mask = keep.to(x.dtype) * scale
            out, h_n, c_last = _unrolled_direction(
                mode, layer_input, h0[direction], None if c0 is None else c0[direction],
                params[index + direction], recurrent_mask, reverse=direction == 1,
            )  # fmt: skip
            outputs.append(out)
            h_out.append(h_n.unsqueeze(0))
            if c_last is not None:
                c_out.append(c_last.unsqueeze(0))
        layer_input = torch.cat(outputs, dim=-1)
    output = locked(layer_input, output_rate)
    if batch_first:
        output = output.transpose(0, 1)
    h_n_all = torch.cat(h_out)
    if mode == "lstm":
        return output, (h_n_all, torch.cat(c_out))
    return output, h_n_all


def zoneout_cell(
    cell: nn.LSTMCell | nn.GRUCell,
    x: Tensor,
    hx: Tensor | tuple[Tensor, Tensor] | None,
    p_hidden: float | Tensor = 0.1,
    p_cell: float | Tensor = 0.1,
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor | tuple[Tensor, Tensor]:
    """One step of an ``nn.LSTMCell`` or ``nn.GRUCell`` with zoneout on the hidden state (rate
    ``p_hidden``) and, for an LSTM, the cell state (``p_cell``); see
    :class:`dropkit.nn.ZoneoutLSTMCell`. The cell mask uses the element indices after the
    hidden mask's.

    Example:
        >>> h, c = zoneout_cell(torch.nn.LSTMCell(3, 4), torch.ones(2, 3), None, 0.1, 0.1, seed=0)
    """
    if not isinstance(cell, (nn.LSTMCell, nn.GRUCell)):
        raise TypeError(f"cell must be an nn.LSTMCell or nn.GRUCell, got {type(cell).__name__}")
    check_floating(x)
    offset = check_draw_args(training, seed, step, offset)
    as_rate(p_hidden, x, "p_hidden")
    as_rate(p_cell, x, "p_cell")
    batch_shape = x.shape[:-1]
    if hx is None:
        zeros = x.new_zeros((*batch_shape, cell.hidden_size))
        hx = (zeros, zeros) if isinstance(cell, nn.LSTMCell) else zeros
    offset = check_offset(offset)
    if isinstance(cell, nn.LSTMCell):
        if not isinstance(hx, tuple) or len(hx) != 2:
            raise TypeError("hx must be a tuple (h, c) for an LSTM cell")
        h_prev, c_prev = hx
        h_new, c_new = cell(x, (h_prev, c_prev))
        h = zoneout(h_new, h_prev, p_hidden, training, seed=seed, step=step, offset=offset)
        c = zoneout(
            c_new, c_prev, p_cell, training, seed=seed, step=step, offset=offset + h.numel()
        )
        return h, c
    if not isinstance(hx, Tensor):
        raise TypeError("hx must be a tensor h for a GRU cell")
    return zoneout(cell(x, hx), hx, p_hidden, training, seed=seed, step=step, offset=offset)
