# ruff: noqa: E501 (a table: one bad input per line reads better than ruff's wrapping)
"""The table of bad API inputs: each names the call, the exception it must raise, a regex its
message must match, and the argument the message must name.

Used by ``test_bad_input.py`` (asserts type and regex) and by ``bad_input_census.py`` (counts
clear / unclear / silent, whatever the message says). Ops are called at ``p = 0`` and in eval
as well as in training: a bad argument is bad whatever the rate and the mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import dropkit
import dropkit.functional as F
from dropkit import rng, schedules, surgery, uncertainty


@dataclass(frozen=True)
class BadInput:
    id: str
    call: Callable[[], Any]
    error: type[BaseException]
    match: str
    #: The argument the message must name (the census's "clear" test).
    arg: str


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


# -- every op that draws: (name, call(**overrides)) ---------------------------------------------

_Q = _x(1, 2, 4, 8)

DRAWING_OPS: list[tuple[str, Callable[..., Any]]] = [
    ("dropout", lambda **kw: F.dropout(_x(2, 3, 4), **kw)),
    ("spatial_dropout", lambda **kw: F.spatial_dropout(_x(2, 3, 4), **kw)),
    ("locked_dropout", lambda **kw: F.locked_dropout(_x(5, 2, 3), time_dim=0, **kw)),
    ("gaussian_dropout", lambda **kw: F.gaussian_dropout(_x(2, 3), **kw)),
    ("alpha_dropout", lambda **kw: F.alpha_dropout(_x(2, 3), **kw)),
    ("feature_alpha_dropout", lambda **kw: F.feature_alpha_dropout(_x(2, 3, 4), **kw)),
    ("drop_block2d", lambda **kw: F.drop_block2d(_x(1, 2, 6, 6), block_size=3, **kw)),
    ("drop_block3d", lambda **kw: F.drop_block3d(_x(1, 1, 4, 4, 4), block_size=2, **kw)),
    ("drop_path", lambda **kw: F.drop_path(_x(4, 3), **kw)),
    ("drop_path_add", lambda **kw: F.drop_path_add(_x(4, 3), _x(4, 3), **kw)),
    ("drop_head", lambda **kw: F.drop_head(_x(2, 4, 3), **kw)),
    ("drop_key", lambda **kw: F.drop_key(_x(2, 4, 4), **kw)),
    ("adl", lambda **kw: F.adl(torch.rand(2, 3, 4, 4), **kw)),
    ("patch_dropout", lambda **kw: F.patch_dropout(_x(2, 5, 3), **kw)),
    (
        "embedding_dropout",
        lambda **kw: F.embedding_dropout(torch.tensor([[0, 1, 2]]), _x(4, 2), **kw),
    ),
    ("drop_connect_linear", lambda **kw: F.drop_connect_linear(_x(2, 3), _x(4, 3), **kw)),
    (
        "drop_connect_conv",
        lambda **kw: F.drop_connect_conv(_x(1, 2, 5, 5), _x(3, 2, 3, 3), **kw),
    ),
    ("zoneout", lambda **kw: F.zoneout(_x(2, 3), _x(2, 3), **kw)),
    ("bias_dropout_add", lambda **kw: F.bias_dropout_add(_x(2, 4), _x(4), _x(2, 4), **kw)),
    ("bias_act_dropout", lambda **kw: F.bias_act_dropout(_x(2, 4), _x(4), **kw)),
    (
        "bias_act_dropout_add",
        lambda **kw: F.bias_act_dropout_add(_x(2, 4), _x(4), _x(2, 4), **kw),
    ),
    ("attention", lambda **kw: F.attention(_Q, _Q, _Q, **kw)),
]

_SEED_TYPE = r"seed must be an int in \[0, 2\*\*64 - 1\]"
_SEED_RANGE = r"seed must be an integer in \[0, 18446744073709551615\]"
_STEP_TYPE = r"step must be a non-negative int"
_STEP_RANGE = r"step must be an integer in \[0, 9223372036854775807\]"
_STEP_VALUE = r"step must be non-negative, got a tensor holding -3"
_OFFSET = r"offset must be a non-negative int below 2\*\*63 \(a mask element index\)"
_TRAINING = r"training must be a bool \(True or False\), got str 'no'"

# Bad values of the arguments every drawing op shares, each at p = 0 or in eval where the
# op would otherwise return early.
_SHARED: list[tuple[str, dict[str, Any], type[BaseException], str, str]] = [
    ("seed-str-p0", {"p": 0.0, "seed": "x"}, TypeError, _SEED_TYPE, "seed"),
    ("seed-neg-eval", {"p": 0.5, "training": False, "seed": -1}, ValueError, _SEED_RANGE, "seed"),
    ("seed-float-p0", {"p": 0.0, "seed": 1.5}, TypeError, _SEED_TYPE, "seed"),
    ("step-neg-p0", {"p": 0.0, "seed": 1, "step": -1}, ValueError, _STEP_RANGE, "step"),
    (
        "step-tensor-neg",
        {"p": 0.5, "seed": 1, "step": torch.tensor(-3)},
        ValueError,
        _STEP_VALUE,
        "step",
    ),
    (
        "offset-neg-eval",
        {"p": 0.5, "training": False, "seed": 1, "offset": -1},
        ValueError,
        _OFFSET,
        "offset",
    ),
    ("offset-2**64", {"p": 0.5, "seed": 1, "offset": 2**64}, ValueError, _OFFSET, "offset"),
    ("training-str", {"p": 0.5, "seed": 1, "training": "no"}, TypeError, _TRAINING, "training"),
]


def _shared_cases() -> list[BadInput]:
    cases = []
    for op_name, op in DRAWING_OPS:
        for case_name, overrides, error, match, arg in _SHARED:
            kwargs = dict(overrides)
            if op_name == "patch_dropout" and kwargs.get("p") == 0.5:
                kwargs["p"] = 0.25
            cases.append(
                BadInput(
                    f"{op_name}:{case_name}",
                    lambda op=op, kwargs=kwargs: op(**kwargs),
                    error,
                    match,
                    arg,
                )
            )
    return cases


# Learned-rate ops have no ``p``: the shared bad values are tried in training and in eval
# (``training=None``: the op has no training argument, those rows are skipped).
LEARNED_DRAWING_OPS: list[tuple[str, Callable[..., Any], bool]] = [
    ("concrete_dropout", lambda **kw: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), **kw), True),
    ("standout", lambda **kw: F.standout(_x(2, 3), torch.zeros(2, 3), **kw), True),
    (
        "local_reparam_linear",
        lambda **kw: F.local_reparam_linear(_x(2, 3), _x(4, 3), torch.ones(4, 3), **kw),
        False,
    ),
    (
        "local_reparam_conv2d",
        lambda **kw: F.local_reparam_conv2d(
            _x(1, 1, 4, 4), _x(2, 1, 3, 3), torch.ones(2, 1, 3, 3), **kw
        ),
        False,
    ),
]


def _learned_shared_cases() -> list[BadInput]:
    cases = []
    for op_name, op, has_training in LEARNED_DRAWING_OPS:
        for case_name, overrides, error, match, arg in _SHARED:
            kwargs = {k: v for k, v in overrides.items() if k != "p"}
            if not has_training:
                if arg == "training":
                    continue
                kwargs.pop("training", None)
            elif overrides.get("p") == 0.0:
                kwargs["training"] = False  # no rate to set to 0: the eval short-circuit instead
            cases.append(
                BadInput(
                    f"{op_name}:{case_name}",
                    lambda op=op, kwargs=kwargs: op(**kwargs),
                    error,
                    match,
                    arg,
                )
            )
    return cases


X = _x(2, 3, 4)
IMG = _x(1, 2, 6, 6)
_P_RANGE = r"p must be in \[0, 1\]"
_NOISE_SHAPE = r"noise_shape must be None or a sequence of ints >= 1 or None"


def _specific_cases() -> list[BadInput]:
    # fmt: off
    c: list[tuple[str, Callable[[], Any], type[BaseException], str, str]] = [
        # -- functional: rates, tensors, shapes ----------------------------------------------
        ("dropout:p>1", lambda: F.dropout(X, 1.5), ValueError, r"p must be in \[0, 1\], got 1.5", "p"),
        ("dropout:p<0", lambda: F.dropout(X, -0.1), ValueError, r"p must be in \[0, 1\], got -0.1", "p"),
        ("dropout:p-nan", lambda: F.dropout(X, math.nan), ValueError, r"p must be in \[0, 1\], got nan", "p"),
        ("dropout:p-str", lambda: F.dropout(X, "0.5"), TypeError, r"p must be a float in \[0, 1\], got str", "p"),
        ("dropout:p-tensor>1", lambda: F.dropout(X, torch.tensor(2.0)), ValueError, _P_RANGE, "p"),
        ("dropout:p-tensor-2el", lambda: F.dropout(X, torch.tensor([0.1, 0.2])), TypeError, r"p must be a float or a one", "p"),
        ("dropout:p-tensor-bool", lambda: F.dropout(X, torch.tensor(True)), TypeError, r"p must be a float or a one", "p"),
        ("gaussian_dropout:p=1", lambda: F.gaussian_dropout(X, 1.0), ValueError, r"p must be in \[0, 1\), got 1.0", "p"),
        ("gaussian_dropout:p=1-eval", lambda: F.gaussian_dropout(X, 1.0, False), ValueError, r"p must be in \[0, 1\)", "p"),
        ("patch_dropout:p=1", lambda: F.patch_dropout(X, 1.0), ValueError, r"p must be in \[0, 1\)", "p"),
        ("dropout:int-input", lambda: F.dropout(torch.arange(4), 0.5), TypeError, r"input must be a floating-point", "input"),
        ("dropout:list-input", lambda: F.dropout([1.0], 0.5), TypeError, r"input must be a torch.Tensor", "input"),
        ("dropout:noise_shape-no-broadcast", lambda: F.dropout(X, 0.5, noise_shape=(2, 2, None)), ValueError, r"noise_shape \(2, 2, None\) does not broadcast to the input shape \(2, 3, 4\)", "noise_shape"),
        ("dropout:noise_shape-rank", lambda: F.dropout(X, 0.5, noise_shape=(2, 1)), ValueError, r"noise_shape \(2, 1\) does not broadcast to the input shape \(2, 3, 4\)", "noise_shape"),
        ("dropout:noise_shape-p0", lambda: F.dropout(X, 0.0, noise_shape=(2, 1)), ValueError, r"noise_shape \(2, 1\) does not broadcast", "noise_shape"),
        ("dropout:noise_shape-eval", lambda: F.dropout(X, 0.5, False, noise_shape=(2, 1)), ValueError, r"noise_shape \(2, 1\) does not broadcast", "noise_shape"),
        ("dropout:noise_shape-int", lambda: F.dropout(X, 0.5, noise_shape=5), TypeError, _NOISE_SHAPE, "noise_shape"),
        ("dropout:noise_shape-str-entry", lambda: F.dropout(X, 0.5, noise_shape=(2, "a", 4)), TypeError, _NOISE_SHAPE, "noise_shape"),
        ("dropout:noise_shape-neg", lambda: F.dropout(X, 0.5, noise_shape=(2, -1, 4)), ValueError, _NOISE_SHAPE, "noise_shape"),
        ("dropout:noise_shape-zero", lambda: F.dropout(X, 0.5, noise_shape=(0, 3, 4)), ValueError, _NOISE_SHAPE, "noise_shape"),
        ("gaussian_dropout:noise_shape-eval", lambda: F.gaussian_dropout(X, 0.5, False, noise_shape=(9,)), ValueError, r"noise_shape \(9,\) does not broadcast", "noise_shape"),
        ("alpha_dropout:noise_shape-p0", lambda: F.alpha_dropout(X, 0.0, noise_shape=(9,)), ValueError, r"noise_shape \(9,\) does not broadcast", "noise_shape"),
        ("dropout:mode", lambda: F.dropout(X, 0.5, mode="weird"), ValueError, r"mode must be one of", "mode"),
        ("dropout:out-list", lambda: F.dropout(X, 0.5, out=[0.0]), TypeError, r"out must be a torch.Tensor or None", "out"),
        ("dropout:out-shape", lambda: F.dropout(X, 0.5, out=torch.empty(3)), ValueError, r"out must have the input's shape", "out"),
        ("dropout:inplace-str", lambda: F.dropout(X, 0.5, inplace="yes"), TypeError, r"inplace must be a bool", "inplace"),
        ("spatial_dropout:channel_dim-range", lambda: F.spatial_dropout(X, 0.5, channel_dim=3), ValueError, r"channel_dim must be in \[-3, 2\] for a 3-D input, got 3", "channel_dim"),
        ("spatial_dropout:channel_dim-float", lambda: F.spatial_dropout(X, 0.5, channel_dim=1.5), TypeError, r"channel_dim must be an int, got float", "channel_dim"),
        ("spatial_dropout:channel_dim==batch_dim", lambda: F.spatial_dropout(X, 0.5, channel_dim=0), ValueError, r"channel_dim and batch_dim must be different dimensions, got both 0", "channel_dim"),
        ("spatial_dropout:channel_dim==batch_dim-neg", lambda: F.spatial_dropout(X, 0.5, channel_dim=-3), ValueError, r"channel_dim and batch_dim must be different dimensions", "channel_dim"),
        ("spatial_dropout:channel_dim==batch_dim-eval", lambda: F.spatial_dropout(X, 0.5, False, channel_dim=0), ValueError, r"channel_dim and batch_dim must be different", "channel_dim"),
        ("feature_alpha_dropout:channel_dim==batch_dim", lambda: F.feature_alpha_dropout(X, 0.5, channel_dim=0, batch_dim=0), ValueError, r"channel_dim and batch_dim must be different", "channel_dim"),
        ("spatial_dropout:batch_dim-range", lambda: F.spatial_dropout(X, 0.5, batch_dim=5), ValueError, r"batch_dim must be in \[-3, 2\]", "batch_dim"),
        ("locked_dropout:time_dim-range", lambda: F.locked_dropout(X, 0.5, time_dim=-4), ValueError, r"time_dim must be in \[-3, 2\] for a 3-D input, got -4", "time_dim"),
        ("locked_dropout:time_dim-str", lambda: F.locked_dropout(X, 0.5, time_dim="0"), TypeError, r"time_dim must be an int", "time_dim"),
        ("dropout:seed-2**64", lambda: F.dropout(X, 0.5, seed=2**64), ValueError, _SEED_RANGE, "seed"),
        ("dropout:seed-bool", lambda: F.dropout(X, 0.5, seed=True), TypeError, _SEED_TYPE, "seed"),
        ("dropout:seed-float-tensor", lambda: F.dropout(X, 0.5, seed=torch.tensor(1.5)), TypeError, r"seed must be an int or a one-element int64 tensor", "seed"),
        ("dropout:step-float", lambda: F.dropout(X, 0.5, seed=1, step=0.5), TypeError, _STEP_TYPE, "step"),
        ("dropout:step-2**63", lambda: F.dropout(X, 0.5, seed=1, step=2**63), ValueError, _STEP_RANGE, "step"),
        ("dropout:step-float-tensor", lambda: F.dropout(X, 0.5, seed=1, step=torch.tensor(1.0)), TypeError, r"step must be an int or a one-element int64 tensor", "step"),
        ("dropout:offset-float", lambda: F.dropout(X, 0.5, seed=1, offset=1.5), TypeError, _OFFSET, "offset"),
        ("dropout:offset-str-p0", lambda: F.dropout(X, 0.0, seed=1, offset="a"), TypeError, _OFFSET, "offset"),
        ("dropout:offset-2**63", lambda: F.dropout(X, 0.5, seed=1, offset=2**63), ValueError, _OFFSET, "offset"),
        # -- structured ------------------------------------------------------------------------
        ("drop_block2d:gamma_scale-neg", lambda: F.drop_block2d(IMG, 0.2, block_size=3, gamma_scale=-1), ValueError, r"gamma_scale must be a finite float > 0, got -1", "gamma_scale"),
        ("drop_block2d:gamma_scale-nan", lambda: F.drop_block2d(IMG, 0.2, block_size=3, gamma_scale=math.nan), ValueError, r"gamma_scale must be a finite float > 0, got nan", "gamma_scale"),
        ("drop_block2d:gamma_scale-inf", lambda: F.drop_block2d(IMG, 0.2, block_size=3, gamma_scale=math.inf), ValueError, r"gamma_scale must be a finite float > 0", "gamma_scale"),
        ("drop_block2d:gamma_scale-str", lambda: F.drop_block2d(IMG, 0.2, block_size=3, gamma_scale="1"), TypeError, r"gamma_scale must be a finite float > 0, got str", "gamma_scale"),
        ("drop_block2d:gamma_scale-eval", lambda: F.drop_block2d(IMG, 0.2, False, block_size=3, gamma_scale=-1), ValueError, r"gamma_scale must be a finite float > 0", "gamma_scale"),
        ("drop_block2d:block_size-0", lambda: F.drop_block2d(IMG, 0.2, block_size=0), ValueError, r"block_size must be >= 1", "block_size"),
        ("drop_block2d:block_size-float", lambda: F.drop_block2d(IMG, 0.2, block_size=2.5), TypeError, r"block_size must be an int or a tuple of 2 ints", "block_size"),
        ("drop_block2d:block_size-3-tuple", lambda: F.drop_block2d(IMG, 0.2, block_size=(1, 2, 3)), TypeError, r"block_size must be an int or a tuple of 2 ints", "block_size"),
        ("drop_block2d:empty-map", lambda: F.drop_block2d(_x(1, 1, 0, 0), 0.2, block_size=3), ValueError, r"input must have spatial sizes >= 1 for DropBlock, got shape \(1, 1, 0, 0\)", "input"),
        ("drop_block2d:3-D", lambda: F.drop_block2d(X, 0.2), ValueError, r"input must be 4-D \(N, C, \*spatial\)", "input"),
        ("drop_block:spatial_dims", lambda: F.drop_block(IMG, 0.2, spatial_dims=4), ValueError, r"spatial_dims must be 1, 2 or 3", "spatial_dims"),
        ("drop_block2d:scale", lambda: F.drop_block2d(IMG, 0.2, scale="all"), ValueError, r"scale must be one of", "scale"),
        ("drop_path:mode", lambda: F.drop_path(X, 0.2, mode="col"), ValueError, r"mode must be 'row' or 'batch'", "mode"),
        ("drop_path:0-d", lambda: F.drop_path(torch.tensor(1.0), 0.2), ValueError, r"input of drop_path must have a batch dimension", "input"),
        ("drop_path:batch_dim", lambda: F.drop_path(X, 0.2, batch_dim=3), ValueError, r"batch_dim must be in \[-3, 2\]", "batch_dim"),
        ("drop_path_add:branch-list", lambda: F.drop_path_add(X, [1.0], 0.2), TypeError, r"branch must be a torch.Tensor", "branch"),
        ("drop_path_add:branch-shape", lambda: F.drop_path_add(X, _x(2, 3), 0.2), ValueError, r"branch must have the shape of x", "branch"),
        ("drop_path_add:x-list", lambda: F.drop_path_add([1.0], X, 0.2), TypeError, r"input must be a torch.Tensor", "input"),
        ("depth_rates:total-0", lambda: F.depth_rates(0, 0.2), ValueError, r"total must be a positive int", "total"),
        ("depth_rates:max_rate", lambda: F.depth_rates(3, 1.2), ValueError, r"max_rate must be in \[0, 1\]", "max_rate"),
        ("depth_rates:schedule", lambda: F.depth_rates(3, 0.2, "cubic"), ValueError, r"schedule must be 'linear' or 'uniform'", "schedule"),
        ("drop_head:head_dim-0", lambda: F.drop_head(X, 0.2, head_dim=0), ValueError, r"head_dim must not be the batch dim 0", "head_dim"),
        ("drop_head:scale", lambda: F.drop_head(X, 0.2, scale="none"), ValueError, r"scale must be 'kept' or 'rate'", "scale"),
        ("drop_key:1-D", lambda: F.drop_key(_x(4), 0.2), ValueError, r"scores must be \(\.\.\., L, S\)", "scores"),
        ("adl:gamma", lambda: F.adl(IMG, 0.5, gamma=1.5), ValueError, r"gamma must be in \[0, 1\]", "gamma"),
        ("adl:3-D", lambda: F.adl(X, 0.5), ValueError, r"input must be 4-D \(N, C, H, W\)", "input"),
        ("patch_dropout:prefix-neg", lambda: F.patch_dropout(X, 0.5, num_prefix_tokens=-1), ValueError, r"num_prefix_tokens must be in \[0, 3\]", "num_prefix_tokens"),
        ("patch_dropout:prefix-float", lambda: F.patch_dropout(X, 0.5, num_prefix_tokens=1.0), TypeError, r"num_prefix_tokens must be an int", "num_prefix_tokens"),
        ("embedding_dropout:float-index", lambda: F.embedding_dropout(torch.zeros(2), _x(4, 2), 0.5), TypeError, r"input must be an int64 or int32 tensor of indices", "input"),
        ("embedding_dropout:weight-1-D", lambda: F.embedding_dropout(torch.tensor([0]), _x(4), 0.5), ValueError, r"weight must be 2-D", "weight"),
        ("embedding_dropout:padding_idx", lambda: F.embedding_dropout(torch.tensor([0]), _x(4, 2), 0.5, padding_idx=4), ValueError, r"padding_idx must be in \[-4, 3\]", "padding_idx"),
        ("embedding_dropout:padding_idx-float", lambda: F.embedding_dropout(torch.tensor([0]), _x(4, 2), 0.5, padding_idx=1.5), TypeError, r"padding_idx must be an int or None", "padding_idx"),
        ("drop_connect_linear:inference", lambda: F.drop_connect_linear(_x(2, 3), _x(4, 3), p=0.5, training=False, inference="median"), ValueError, r"inference must be 'mean' or 'gaussian'", "inference"),
        ("drop_connect_linear:num_samples", lambda: F.drop_connect_linear(_x(2, 3), _x(4, 3), p=0.5, num_samples=0), ValueError, r"num_samples must be a positive int", "num_samples"),
        ("drop_connect_linear:weight-int", lambda: F.drop_connect_linear(_x(2, 3), torch.ones(4, 3, dtype=torch.int64)), TypeError, r"weight must be a floating-point", "weight"),
        ("drop_connect_conv:weight-2-D", lambda: F.drop_connect_conv(_x(1, 2, 5, 5), _x(3, 2)), ValueError, r"weight must be 3-, 4- or 5-D", "weight"),
        ("drop_connect_conv:weight-list", lambda: F.drop_connect_conv(_x(1, 2, 5, 5), [1.0]), TypeError, r"weight must be a torch.Tensor", "weight"),
        ("zoneout:shape", lambda: F.zoneout(_x(2, 3), _x(3, 2), 0.5), ValueError, r"h_prev", "h_prev"),
        ("zoneout:h_prev-list", lambda: F.zoneout(_x(2, 3), [0.0], 0.5), TypeError, r"h_prev must be a torch.Tensor", "h_prev"),
        # -- fused -----------------------------------------------------------------------------
        ("bias_dropout_add:residual-None", lambda: F.bias_dropout_add(_x(2, 4), None, None, 0.5), TypeError, r"residual must be a torch.Tensor \(bias_dropout_add adds it\)", "residual"),
        ("bias_dropout_add:residual-None-eval", lambda: F.bias_dropout_add(_x(2, 4), None, None, 0.5, False), TypeError, r"residual must be a torch.Tensor", "residual"),
        ("bias_act_dropout_add:residual-None", lambda: F.bias_act_dropout_add(_x(2, 4), None, None, 0.5), TypeError, r"residual must be a torch.Tensor", "residual"),
        ("bias_dropout_add:bias-shape", lambda: F.bias_dropout_add(_x(2, 4), _x(3), _x(2, 4), 0.5), ValueError, r"bias shape \(3,\) does not broadcast", "bias"),
        ("bias_dropout_add:residual-int", lambda: F.bias_dropout_add(_x(2, 4), None, torch.ones(2, 4, dtype=torch.int64), 0.5), TypeError, r"residual must be a floating-point", "residual"),
        ("bias_act_dropout:activation", lambda: F.bias_act_dropout(_x(2, 4), None, 0.5, "tanh"), ValueError, r"activation must be one of", "activation"),
        ("bias_act_dropout:bias-list", lambda: F.bias_act_dropout(_x(2, 4), [0.0], 0.5), TypeError, r"bias must be a torch.Tensor", "bias"),
        # -- attention -------------------------------------------------------------------------
        ("attention:rank", lambda: F.attention(_x(4, 8), _x(1, 4, 8), _x(1, 4, 8)), ValueError, r"query, key and value must have the same number", "query"),
        ("attention:mask+causal", lambda: F.attention(_Q, _Q, _Q, attn_mask=torch.ones(4, 4, dtype=torch.bool), is_causal=True), ValueError, r"attn_mask and is_causal=True are exclusive", "attn_mask"),
        ("attention:key-int", lambda: F.attention(_Q, torch.ones(1, 2, 4, 8, dtype=torch.int64), _Q), TypeError, r"key must be a floating-point", "key"),
        # -- recurrent -------------------------------------------------------------------------
        ("variational_rnn:mode", lambda: F.variational_rnn(_x(3, 2, 4), None, [], mode="rnn", hidden_size=4), ValueError, r"mode must be 'lstm' or 'gru'", "mode"),
        ("variational_rnn:seed-p0", lambda: F.variational_rnn(_x(3, 2, 4), None, [[_x(16, 4), _x(16, 4)]], hidden_size=4, seed="x"), TypeError, _SEED_TYPE, "seed"),
        ("variational_rnn:training", lambda: F.variational_rnn(_x(3, 2, 4), None, [[_x(16, 4), _x(16, 4)]], hidden_size=4, training="no"), TypeError, _TRAINING, "training"),
        ("zoneout_cell:cell", lambda: F.zoneout_cell(nn.Linear(2, 2), _x(1, 2), None), TypeError, r"cell must be an nn.LSTMCell or nn.GRUCell", "cell"),
        ("zoneout_cell:seed-p0", lambda: F.zoneout_cell(nn.GRUCell(2, 3), _x(1, 2), None, 0.0, 0.0, seed=-1), ValueError, _SEED_RANGE, "seed"),
        ("zoneout_cell:training", lambda: F.zoneout_cell(nn.GRUCell(2, 3), _x(1, 2), None, training="no"), TypeError, _TRAINING, "training"),
        ("weight_dropout_call:weights", lambda: F.weight_dropout_call(nn.Linear(2, 2), ["nope"], 0.5, True, (_x(1, 2),)), ValueError, r"nope", "weights"),
        ("weight_dropout_call:seed-p0", lambda: F.weight_dropout_call(nn.Linear(2, 2), ["weight"], 0.0, True, (_x(1, 2),), seed="x"), TypeError, _SEED_TYPE, "seed"),
        ("weight_dropout_call:training", lambda: F.weight_dropout_call(nn.Linear(2, 2), ["weight"], 0.5, "no", (_x(1, 2),), seed=1), TypeError, _TRAINING, "training"),
        # -- rng -------------------------------------------------------------------------------
        ("rng.keep_mask:p>1", lambda: rng.keep_mask((4,), 1.5, seed=0), ValueError, r"p must be in \[0, 1\], got 1.5", "p"),
        ("rng.keep_mask:p-nan", lambda: rng.keep_mask((4,), math.nan, seed=0), ValueError, r"p must be in \[0, 1\], got nan", "p"),
        ("rng.keep_mask:p-str", lambda: rng.keep_mask((4,), "0.5", seed=0), TypeError, r"p must be a float in \[0, 1\]", "p"),
        ("rng.keep_mask:p-int-tensor", lambda: rng.keep_mask((4,), torch.tensor([1, 2]), seed=0), TypeError, r"p must be a float or a one-element", "p"),
        ("rng.keep_mask:p-tensor>1", lambda: rng.keep_mask((4,), torch.tensor(1.5), seed=0), ValueError, r"p must be in \[0, 1\]", "p"),
        ("rng.keep_mask:shape-neg", lambda: rng.keep_mask((2, -3), 0.5, seed=0), ValueError, r"shape must be a sequence of ints >= 0, got \(2, -3\)", "shape"),
        ("rng.keep_mask:shape-float", lambda: rng.keep_mask((2.5,), 0.5, seed=0), TypeError, r"shape must be a sequence of ints >= 0", "shape"),
        ("rng.keep_mask:shape-int", lambda: rng.keep_mask(4, 0.5, seed=0), TypeError, r"shape must be a sequence of ints >= 0, got int", "shape"),
        ("rng.keep_mask:offset-float", lambda: rng.keep_mask((4,), 0.5, seed=0, offset=1.5), TypeError, _OFFSET, "offset"),
        ("rng.keep_mask:offset-2**64", lambda: rng.keep_mask((4,), 0.5, seed=0, offset=2**64), ValueError, _OFFSET, "offset"),
        ("rng.keep_mask:seed-str", lambda: rng.keep_mask((4,), 0.5, seed="x"), TypeError, _SEED_TYPE, "seed"),
        ("rng.keep_mask:step-tensor-neg", lambda: rng.keep_mask((4,), 0.5, seed=0, step=torch.tensor(-3)), ValueError, _STEP_VALUE, "step"),
        ("rng.uniform:shape-neg", lambda: rng.uniform((-1,), seed=0), ValueError, r"shape must be a sequence of ints >= 0", "shape"),
        ("rng.uniform:offset-neg", lambda: rng.uniform((4,), seed=0, offset=-1), ValueError, _OFFSET, "offset"),
        ("rng.uniform:offset-2**64", lambda: rng.uniform((4,), seed=0, offset=2**64), ValueError, _OFFSET, "offset"),
        ("rng.normal:shape-neg", lambda: rng.normal((3, -1), seed=0), ValueError, r"shape must be a sequence of ints >= 0", "shape"),
        ("rng.normal:offset-float", lambda: rng.normal((4,), seed=0, offset=0.5), TypeError, _OFFSET, "offset"),
        ("rng.normal:offset-2**64", lambda: rng.normal((4,), seed=0, offset=2**64), ValueError, _OFFSET, "offset"),
        ("rng.p_eff:1.5", lambda: rng.p_eff(1.5), ValueError, r"p must be in \[0, 1\], got 1.5", "p"),
        ("rng.p_eff:nan", lambda: rng.p_eff(math.nan), ValueError, r"p must be in \[0, 1\], got nan", "p"),
        ("rng.p_eff:str", lambda: rng.p_eff("0.1"), TypeError, r"p must be a float in \[0, 1\]", "p"),
        ("dropkit.p_eff:-0.5", lambda: dropkit.p_eff(-0.5), ValueError, r"p must be in \[0, 1\]", "p"),
        ("rng.threshold:nan", lambda: rng.threshold(math.nan), ValueError, r"p must be in \[0, 1\], got nan", "p"),
        ("rng.threshold:2", lambda: rng.threshold(2.0), ValueError, r"p must be in \[0, 1\]", "p"),
        ("rng.random_words:first_block-float", lambda: rng.random_words(0, 0, 1.5, 2), TypeError, r"first_block must be an int >= 0, got 1.5", "first_block"),
        ("rng.random_words:num_blocks-float", lambda: rng.random_words(0, 0, 0, 2.5), TypeError, r"num_blocks must be an int >= 0, got 2.5", "num_blocks"),
        ("rng.random_words:num_blocks-neg", lambda: rng.random_words(0, 0, 0, -1), ValueError, r"num_blocks must be an int >= 0, got -1", "num_blocks"),
        ("rng.random_words:first_block-2**64", lambda: rng.random_words(0, 0, 2**64, 1), ValueError, r"first_block must be an int >= 0 with first_block \+ num_blocks <= 2\*\*63", "first_block"),
        ("rng.seed_tensor:str", lambda: rng.seed_tensor("x"), TypeError, _SEED_TYPE, "seed"),
        ("rng.seed_tensor:2-el", lambda: rng.seed_tensor(torch.tensor([1, 2])), TypeError, r"seed must be an int or a one-element", "seed"),
        ("rng.step_tensor:neg", lambda: rng.step_tensor(-1), ValueError, _STEP_RANGE, "step"),
        ("rng.step_tensor:tensor-neg", lambda: rng.step_tensor(torch.tensor(-3)), ValueError, _STEP_VALUE, "step"),
        ("rng.draw_seed:generator", lambda: rng.draw_seed("gen"), TypeError, r"generator must be a torch.Generator or None", "generator"),
        # -- surgery ---------------------------------------------------------------------------
        ("surgery.convert:seed-neg", lambda: surgery.convert(nn.Sequential(nn.Dropout(0.1)), seed=-1), ValueError, _SEED_RANGE, "seed"),
        ("surgery.convert:seed-float", lambda: surgery.convert(nn.Sequential(nn.Dropout(0.1)), seed=1.5), TypeError, _SEED_TYPE, "seed"),
        ("surgery.convert:seed-str", lambda: surgery.convert(nn.Sequential(nn.Dropout(0.1)), seed="abc"), TypeError, _SEED_TYPE, "seed"),
        ("surgery.convert:seed-str-no-sites", lambda: surgery.convert(nn.Sequential(nn.Linear(2, 2)), seed="abc"), TypeError, _SEED_TYPE, "seed"),
        ("surgery.convert:model", lambda: surgery.convert("model"), TypeError, r"model must be an nn.Module", "model"),
        ("surgery.insert:seed-neg", lambda: surgery.insert(nn.Sequential(nn.Linear(2, 2)), nn.Linear, seed=-1), ValueError, _SEED_RANGE, "seed"),
        ("surgery.insert:seed-float", lambda: surgery.insert(nn.Sequential(nn.Linear(2, 2)), nn.Linear, seed=1.5), TypeError, _SEED_TYPE, "seed"),
        ("surgery.insert:seed-str", lambda: surgery.insert(nn.Sequential(nn.Linear(2, 2)), nn.Linear, seed="abc"), TypeError, _SEED_TYPE, "seed"),
        ("surgery.insert:p", lambda: surgery.insert(nn.Sequential(nn.Linear(2, 2)), nn.Linear, p=1.5), ValueError, r"p must be in \[0, 1\]", "p"),
        ("surgery.site_seed:seed-str", lambda: surgery.site_seed("abc", "fc"), TypeError, _SEED_TYPE, "seed"),
        ("surgery.site_seed:seed-neg", lambda: surgery.site_seed(-1, "fc"), ValueError, _SEED_RANGE, "seed"),
        ("surgery.route_functional:seed", lambda: surgery.route_functional(nn.Linear(2, 2), seed=-1), ValueError, _SEED_RANGE, "seed"),
        ("surgery.FunctionalDropoutRouter:seed", lambda: surgery.FunctionalDropoutRouter(seed="abc"), TypeError, _SEED_TYPE, "seed"),
        ("surgery.set_rates:rate", lambda: surgery.set_rates(nn.Sequential(dropkit.nn.Dropout(0.1)), {"0": 1.5}), ValueError, r"rates\[.0.\] must be in \[0, 1\]", "rates"),
        # -- schedules -------------------------------------------------------------------------
        ("schedules.constant:p", lambda: schedules.constant(1.5), ValueError, r"p must be in \[0, 1\]", "p"),
        ("schedules.linear:steps", lambda: schedules.linear(0.0, 0.5, 0), ValueError, r"steps must be a positive int", "steps"),
        ("schedules.linear:start", lambda: schedules.linear(-0.1, 0.5, 10), ValueError, r"start must be in \[0, 1\]", "start"),
        ("schedules.cosine:end-nan", lambda: schedules.cosine(0.0, math.nan, 10), ValueError, r"end must be in \[0, 1\]", "end"),
        ("schedules.step:boundaries", lambda: schedules.step([0.1, 0.2, 0.3], [5, 3]), ValueError, r"boundaries must", "boundaries"),
        ("schedules.warmup:warmup_steps", lambda: schedules.warmup(0.1, -1), ValueError, r"warmup_steps must be", "warmup_steps"),
        ("schedules.exponential:decay", lambda: schedules.exponential(0.5, -1.0), ValueError, r"decay must be a positive float", "decay"),
        ("schedules.curriculum:gamma", lambda: schedules.curriculum(0.5, 0.0), ValueError, r"gamma must be a positive float", "gamma"),
        ("schedules.early:until", lambda: schedules.early(0.1, 1.5), ValueError, r"until must be", "until"),
        ("schedules.late:p", lambda: schedules.late(2.0, 10), ValueError, r"p must be in \[0, 1\]", "p"),
        ("schedules.call:step-neg", lambda: schedules.constant(0.1)(-1), ValueError, r"step must be a non-negative int", "step"),
        ("schedules.call:step-float", lambda: schedules.linear(0.0, 0.5, 10)(2.5), ValueError, r"step must be a non-negative int", "step"),
        ("schedules.linear_by_depth:num_blocks", lambda: schedules.linear_by_depth(0.2, 0), ValueError, r"num_blocks must be", "num_blocks"),
        ("schedules.piecewise:points", lambda: schedules.piecewise([]), ValueError, r"points must", "points"),
        # -- uncertainty metrics ---------------------------------------------------------------
        ("uncertainty.entropy:negative", lambda: uncertainty.entropy(torch.tensor([[1.5, -0.5]])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.predictive_entropy:negative", lambda: uncertainty.predictive_entropy(torch.tensor([[[1.5, -0.5]]])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.mutual_information:negative", lambda: uncertainty.mutual_information(torch.tensor([[[1.5, -0.5]]])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.variation_ratio:negative", lambda: uncertainty.variation_ratio(torch.tensor([[[1.5, -0.5]]])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.negative_log_likelihood:negative", lambda: uncertainty.negative_log_likelihood(torch.tensor([[[1.5, -0.5]]]), torch.tensor([0])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.brier_score:negative", lambda: uncertainty.brier_score(torch.tensor([[[1.5, -0.5]]]), torch.tensor([0])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.expected_calibration_error:negative", lambda: uncertainty.expected_calibration_error(torch.tensor([[[1.5, -0.5]]]), torch.tensor([0])), ValueError, r"probs must be probabilities", "probs"),
        ("uncertainty.negative_log_likelihood:empty-batch", lambda: uncertainty.negative_log_likelihood(torch.ones(2, 0, 3) / 3, torch.zeros(0, dtype=torch.int64)), ValueError, r"probs must have a non-empty batch", "probs"),
        ("uncertainty.brier_score:empty-batch", lambda: uncertainty.brier_score(torch.ones(2, 0, 3) / 3, torch.zeros(0, dtype=torch.int64)), ValueError, r"probs must have a non-empty batch", "probs"),
        ("uncertainty.expected_calibration_error:empty-batch", lambda: uncertainty.expected_calibration_error(torch.ones(2, 0, 3) / 3, torch.zeros(0, dtype=torch.int64)), ValueError, r"probs must have a non-empty batch", "probs"),
        ("uncertainty.rmse:empty-batch", lambda: uncertainty.rmse(torch.ones(2, 0), torch.ones(0)), ValueError, r"samples must have a non-empty batch", "samples"),
        ("uncertainty.gaussian_log_likelihood:empty-batch", lambda: uncertainty.gaussian_log_likelihood(torch.ones(2, 0), torch.ones(0), 1.0), ValueError, r"samples must have a non-empty batch", "samples"),
        ("uncertainty.interval_calibration:empty-batch", lambda: uncertainty.interval_calibration(torch.ones(2, 0), torch.ones(0), 1.0), ValueError, r"samples must have a non-empty batch", "samples"),
        ("uncertainty.predictive_mean:list", lambda: uncertainty.predictive_mean([1.0]), TypeError, r"samples must be a floating-point tensor", "samples"),
        ("uncertainty.negative_log_likelihood:labels-float", lambda: uncertainty.negative_log_likelihood(torch.ones(2, 1, 2) / 2, torch.zeros(1)), TypeError, r"labels must be an integer tensor", "labels"),
        ("uncertainty.negative_log_likelihood:labels-range", lambda: uncertainty.negative_log_likelihood(torch.ones(2, 1, 2) / 2, torch.tensor([5])), ValueError, r"labels must be class indices in \[0, 1\]", "labels"),
        ("uncertainty.total_variance:tau", lambda: uncertainty.total_variance(torch.ones(2, 3), -1.0), ValueError, r"tau \(the model precision\) must be a float > 0", "tau"),
        ("uncertainty.expected_calibration_error:n_bins", lambda: uncertainty.expected_calibration_error(torch.ones(2, 1, 2) / 2, torch.tensor([0]), n_bins=0), ValueError, r"n_bins must be an int >= 1", "n_bins"),
        ("uncertainty.ood_auroc:empty", lambda: uncertainty.ood_auroc(torch.ones(0), torch.ones(3)), ValueError, r"scores_in must be a non-empty 1-D tensor", "scores_in"),
        ("uncertainty.sample:samples", lambda: uncertainty.sample(nn.Linear(2, 2), _x(1, 2), 0), ValueError, r"samples must be", "samples"),
        ("uncertainty.sample:seed", lambda: uncertainty.sample(nn.Sequential(dropkit.nn.Dropout(0.1)), _x(1, 2), 2, seed=-1), ValueError, _SEED_RANGE, "seed"),
        # -- nn constructors -------------------------------------------------------------------
        ("nn.Dropout:p", lambda: dropkit.nn.Dropout(1.5), ValueError, r"p must be in \[0, 1\], got 1.5", "p"),
        ("nn.Dropout:seed-str", lambda: dropkit.nn.Dropout(0.1, seed="x"), TypeError, _SEED_TYPE, "seed"),
        ("nn.Dropout:seed-neg-p0", lambda: dropkit.nn.Dropout(0.0, seed=-1), ValueError, _SEED_RANGE, "seed"),
        ("nn.Dropout:mode", lambda: dropkit.nn.Dropout(0.1, mode="x"), ValueError, r"mode must be one of", "mode"),
        ("nn.Dropout:noise_shape-int", lambda: dropkit.nn.Dropout(0.1, noise_shape=5), TypeError, _NOISE_SHAPE, "noise_shape"),
        ("nn.Dropout:noise_shape-str", lambda: dropkit.nn.Dropout(0.1, noise_shape="ab"), TypeError, _NOISE_SHAPE, "noise_shape"),
        ("nn.Dropout:noise_shape-neg", lambda: dropkit.nn.Dropout(0.1, noise_shape=(-1, None)), ValueError, _NOISE_SHAPE, "noise_shape"),
        ("nn.Dropout:noise_shape-zero", lambda: dropkit.nn.Dropout(0.1, noise_shape=(0,)), ValueError, _NOISE_SHAPE, "noise_shape"),
        ("nn.Dropout:noise_shape-float", lambda: dropkit.nn.Dropout(0.1, noise_shape=(1.5,)), TypeError, _NOISE_SHAPE, "noise_shape"),
        ("nn.SpatialDropout2d:channel_dim-str", lambda: dropkit.nn.SpatialDropout2d(0.1, channel_dim="1"), TypeError, r"channel_dim must be an int, got str", "channel_dim"),
        ("nn.SpatialDropout2d:channel_dim-float", lambda: dropkit.nn.SpatialDropout2d(0.1, channel_dim=1.0), TypeError, r"channel_dim must be an int, got float", "channel_dim"),
        ("nn.SpatialDropout1d:channel_dim-range", lambda: dropkit.nn.SpatialDropout1d(0.1, channel_dim=3), ValueError, r"channel_dim must be in \[-3, 2\]", "channel_dim"),
        ("nn.SpatialDropout3d:channel_dim-range", lambda: dropkit.nn.SpatialDropout3d(0.1, channel_dim=-6), ValueError, r"channel_dim must be in \[-5, 4\]", "channel_dim"),
        ("nn.LockedDropout:time_dim-str", lambda: dropkit.nn.LockedDropout(0.1, time_dim="0"), TypeError, r"time_dim must be an int", "time_dim"),
        ("nn.GaussianDropout:p=1", lambda: dropkit.nn.GaussianDropout(1.0), ValueError, r"p must be in \[0, 1\)", "p"),
        ("nn.AlphaDropout:seed", lambda: dropkit.nn.AlphaDropout(0.1, seed=2**64), ValueError, _SEED_RANGE, "seed"),
        ("nn.DropBlock2d:gamma_scale-neg", lambda: dropkit.nn.DropBlock2d(0.1, 3, gamma_scale=-1), ValueError, r"gamma_scale must be a finite float > 0", "gamma_scale"),
        ("nn.DropBlock2d:gamma_scale-nan", lambda: dropkit.nn.DropBlock2d(0.1, 3, gamma_scale=math.nan), ValueError, r"gamma_scale must be a finite float > 0", "gamma_scale"),
        ("nn.DropBlock2d:block_size", lambda: dropkit.nn.DropBlock2d(0.1, 0), ValueError, r"block_size must be >= 1", "block_size"),
        ("nn.DropBlock3d:scale", lambda: dropkit.nn.DropBlock3d(0.1, 2, scale="x"), ValueError, r"scale must be one of", "scale"),
        ("nn.DropBlock2d:drop_prob", lambda: dropkit.nn.DropBlock2d(2.0), ValueError, r"drop_prob must be in \[0, 1\]", "drop_prob"),
        ("nn.DropPath:mode", lambda: dropkit.nn.DropPath(0.1, mode="x"), ValueError, r"mode must be 'row' or 'batch'", "mode"),
        ("nn.DropPath:batch_dim", lambda: dropkit.nn.DropPath(0.1, batch_dim="0"), TypeError, r"batch_dim must be an int", "batch_dim"),
        ("nn.DropPath:drop_prob", lambda: dropkit.nn.DropPath(-0.1), ValueError, r"drop_prob must be in \[0, 1\]", "drop_prob"),
        ("nn.DropHead:head_dim", lambda: dropkit.nn.DropHead(0.1, head_dim="1"), TypeError, r"head_dim must be an int", "head_dim"),
        ("nn.DropHead:scale", lambda: dropkit.nn.DropHead(0.1, scale="x"), ValueError, r"scale must be 'kept' or 'rate'", "scale"),
        ("nn.PatchDropout:prefix", lambda: dropkit.nn.PatchDropout(0.5, num_prefix_tokens=-1), ValueError, r"num_prefix_tokens must be an int >= 0", "num_prefix_tokens"),
        ("nn.PatchDropout:prob", lambda: dropkit.nn.PatchDropout(1.0), ValueError, r"prob must be in \[0, 1\)", "prob"),
        ("nn.ADL:gamma", lambda: dropkit.nn.ADL(0.5, gamma=2.0), ValueError, r"gamma must be in \[0, 1\]", "gamma"),
        ("nn.EmbeddingDropout:padding_idx", lambda: dropkit.nn.EmbeddingDropout(4, 2, padding_idx=9), ValueError, r"padding_idx must be", "padding_idx"),
        ("nn.DropConnectLinear:num_samples", lambda: dropkit.nn.DropConnectLinear(2, 3, num_samples=0), ValueError, r"num_samples must be a positive int", "num_samples"),
        ("nn.ZoneoutLSTMCell:p_cell", lambda: dropkit.nn.ZoneoutLSTMCell(2, 3, p_cell=2.0), ValueError, r"p_cell must be in \[0, 1\]", "p_cell"),
        ("nn.VariationalLSTM:p_input", lambda: dropkit.nn.VariationalLSTM(2, 3, p_input=-1.0), ValueError, r"p_input must be in \[0, 1\]", "p_input"),
        ("nn.WeightDrop:weights", lambda: dropkit.nn.WeightDrop(nn.Linear(2, 2), ["nope"]), ValueError, r"nope", "weights"),
        ("nn.BiasActDropout:activation", lambda: dropkit.nn.BiasActDropout(0.1, "tanh"), ValueError, r"activation must be one of", "activation"),
        ("schedules.LinearRamp:total_steps", lambda: schedules.LinearRamp(dropkit.nn.Dropout(0.1), 0.5, 0), ValueError, r"total_steps must be a positive int", "total_steps"),
        ("nn.Dropout.p=:2", lambda: setattr(dropkit.nn.Dropout(0.1), "p", 2.0), ValueError, r"p must be in \[0, 1\]", "p"),
        ("nn.Dropout.reset_seed:str", lambda: dropkit.nn.Dropout(0.1).reset_seed("x"), TypeError, _SEED_TYPE, "seed"),
        # -- nn forward ------------------------------------------------------------------------
        ("nn.Dropout():list", lambda: dropkit.nn.Dropout(0.1)([1.0]), TypeError, r"input must be a torch.Tensor", "input"),
        ("nn.Dropout():int-p0", lambda: dropkit.nn.Dropout(0.0)(torch.arange(3)), TypeError, r"input must be a floating-point", "input"),
        ("nn.Dropout(noise_shape):no-broadcast-eval", lambda: dropkit.nn.Dropout(0.1, noise_shape=(5, None)).eval()(X), ValueError, r"noise_shape \(5, None\) does not broadcast", "noise_shape"),
        ("nn.SpatialDropout2d():channel_dim==batch_dim", lambda: dropkit.nn.SpatialDropout2d(0.1, channel_dim=0)(IMG), ValueError, r"channel_dim and batch_dim must be different", "channel_dim"),
        ("nn.SpatialDropout2d():1-D", lambda: dropkit.nn.SpatialDropout2d(0.1)(_x(3)), ValueError, r"input", "input"),
        ("nn.DropBlock2d():empty-map", lambda: dropkit.nn.DropBlock2d(0.1, 3)(_x(1, 1, 0, 0)), ValueError, r"input must have spatial sizes >= 1 for DropBlock", "input"),
        ("nn.DropBlock2d():3-D", lambda: dropkit.nn.DropBlock2d(0.1, 3)(X), ValueError, r"input must be 4-D", "input"),
        ("nn.DropPath():0-d", lambda: dropkit.nn.DropPath(0.1)(torch.tensor(1.0)), ValueError, r"input of drop_path must have a batch dimension", "input"),
        ("nn.BiasDropoutAdd():residual-None", lambda: dropkit.nn.BiasDropoutAdd(0.1)(_x(2, 4), None, None), TypeError, r"residual must be a torch.Tensor", "residual"),
        ("nn.EmbeddingDropout():float-index", lambda: dropkit.nn.EmbeddingDropout(4, 2)(torch.zeros(2)), TypeError, r"input must be an int64 or int32 tensor", "input"),
        ("nn.Dropout.train:str", lambda: dropkit.nn.Dropout(0.1).train("no"), ValueError, r"training mode is expected to be boolean", "training"),
    ]
    # fmt: on
    return [BadInput(*row) for row in c]


def _learned_cases() -> list[BadInput]:
    """Learned-rate layers and functions (issue 12's "Bad input")."""
    cd, svdo, vd = (
        dropkit.nn.ConcreteDropout,
        dropkit.nn.LinearSVDO,
        dropkit.nn.VariationalDropoutLinear,
    )
    plain = nn.Sequential(nn.Linear(2, 2), dropkit.nn.Dropout(0.1))
    learned = nn.Sequential(svdo(2, 2, seed=0))
    loss = lambda out, batch: out.sum()  # noqa: E731

    def load(module: nn.Module, **entries: torch.Tensor) -> Any:
        state = module.state_dict()
        state.update(entries)
        return module.load_state_dict(state)

    _TEMP = r"temperature must be a finite float > 0"
    _INIT = r"init_p must be in \(0, 1\) \(open interval\)"
    _N = r"dataset_size must be an int > 0 \(the number of training examples\)"
    _FIN = r"must be a finite float"
    # fmt: off
    rows: list[tuple[str, Callable[[], Any], type[BaseException], str, str]] = [
        # -- functional ------------------------------------------------------------------------
        ("concrete_dropout:temperature-0", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), temperature=0.0), ValueError, _TEMP, "temperature"),
        ("concrete_dropout:temperature-neg-eval", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), False, temperature=-1.0), ValueError, _TEMP, "temperature"),
        ("concrete_dropout:temperature-nan", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), temperature=math.nan), ValueError, _TEMP, "temperature"),
        ("concrete_dropout:temperature-str", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), temperature="0.1"), TypeError, r"temperature must be a float > 0", "temperature"),
        ("concrete_dropout:p_logit-int", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2)), TypeError, r"p_logit must be a floating-point", "p_logit"),
        ("concrete_dropout:p_logit-shape", lambda: F.concrete_dropout(_x(4, 3), torch.zeros(5)), ValueError, r"p_logit of shape \(5,\) does not broadcast", "p_logit"),
        ("concrete_dropout:p_logit-shape-eval", lambda: F.concrete_dropout(_x(4, 3), torch.zeros(5), False), ValueError, r"p_logit of shape \(5,\) does not broadcast", "p_logit"),
        ("concrete_dropout:shared_dims-range", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), shared_dims=(5,)), ValueError, r"shared_dims must be in \[-2, 1\] for a 2-D input, got 5", "shared_dims"),
        ("concrete_dropout:shared_dims-int", lambda: F.concrete_dropout(_x(4, 3), torch.tensor(-2.0), shared_dims=1), TypeError, r"shared_dims must be a sequence of ints", "shared_dims"),
        ("concrete_regularizer:weight_regularizer-neg", lambda: F.concrete_regularizer(torch.tensor(-2.0), [_x(3, 2)], [], weight_regularizer=-1.0, dropout_regularizer=0.1, input_dim=2), ValueError, r"weight_regularizer must be a finite float >= 0", "weight_regularizer"),
        ("concrete_regularizer:dropout_regularizer-nan", lambda: F.concrete_regularizer(torch.tensor(-2.0), [_x(3, 2)], [], weight_regularizer=0.1, dropout_regularizer=math.nan, input_dim=2), ValueError, r"dropout_regularizer must be a finite float >= 0", "dropout_regularizer"),
        ("concrete_regularizer:input_dim-0", lambda: F.concrete_regularizer(torch.tensor(-2.0), [_x(3, 2)], [], weight_regularizer=0.1, dropout_regularizer=0.1, input_dim=0), ValueError, r"input_dim must be an int >= 1", "input_dim"),
        ("concrete_regularizer:p_logit-list", lambda: F.concrete_regularizer([0.0], [_x(3, 2)], [], weight_regularizer=0.1, dropout_regularizer=0.1, input_dim=2), TypeError, r"p_logit must be a torch.Tensor", "p_logit"),
        ("standout:keep_logit-shape", lambda: F.standout(_x(2, 3), torch.zeros(4)), ValueError, r"keep_logit of shape \(4,\) does not broadcast", "keep_logit"),
        ("standout:keep_logit-shape-eval", lambda: F.standout(_x(2, 3), torch.zeros(4), False), ValueError, r"keep_logit of shape \(4,\) does not broadcast", "keep_logit"),
        ("standout:keep_logit-int", lambda: F.standout(_x(2, 3), torch.zeros(2, 3, dtype=torch.int64)), TypeError, r"keep_logit must be a floating-point", "keep_logit"),
        ("local_reparam_linear:variance-shape", lambda: F.local_reparam_linear(_x(2, 3), _x(4, 3), torch.ones(5), seed=0), ValueError, r"variance of shape \(5,\) does not broadcast to the weight", "variance"),
        ("local_reparam_linear:weight-list", lambda: F.local_reparam_linear(_x(2, 3), [1.0], torch.ones(4, 3), seed=0), TypeError, r"weight must be a torch.Tensor", "weight"),
        ("local_reparam_conv2d:variance-int", lambda: F.local_reparam_conv2d(_x(1, 1, 4, 4), _x(2, 1, 3, 3), torch.ones(2, 1, 3, 3, dtype=torch.int64), seed=0), TypeError, r"variance must be a floating-point", "variance"),
        ("kl_kingma:float", lambda: F.kl_kingma(0.5), TypeError, r"log_alpha must be a torch.Tensor", "log_alpha"),
        ("kl_molchanov:int", lambda: F.kl_molchanov(torch.tensor([1, 2])), TypeError, r"log_alpha must be a floating-point", "log_alpha"),
        # -- constructors ----------------------------------------------------------------------
        ("nn.ConcreteDropout:temperature-0", lambda: cd(temperature=0.0), ValueError, _TEMP, "temperature"),
        ("nn.ConcreteDropout:temperature-neg", lambda: cd(temperature=-0.1), ValueError, _TEMP, "temperature"),
        ("nn.ConcreteDropout:temperature-inf", lambda: cd(temperature=math.inf), ValueError, _TEMP, "temperature"),
        ("nn.ConcreteDropout:temperature-setter", lambda: setattr(cd(), "temperature", 0.0), ValueError, _TEMP, "temperature"),
        ("nn.ConcreteDropout:init_p-0", lambda: cd(init_p=0.0), ValueError, _INIT, "init_p"),
        ("nn.ConcreteDropout:init_p-1", lambda: cd(init_p=1.0), ValueError, _INIT, "init_p"),
        ("nn.ConcreteDropout:init_p-1.5", lambda: cd(init_p=1.5), ValueError, _INIT, "init_p"),
        ("nn.ConcreteDropout:init_p-nan", lambda: cd(init_p=math.nan), ValueError, _INIT, "init_p"),
        ("nn.ConcreteDropout:init_p-str", lambda: cd(init_p="0.1"), TypeError, r"init_p must be a float in \(0, 1\)", "init_p"),
        ("nn.ConcreteDropout:precision-0", lambda: cd(precision=0.0), ValueError, r"precision must be a finite float > 0", "precision"),
        ("nn.ConcreteDropout:length_scale-neg", lambda: cd(length_scale=-1.0), ValueError, r"length_scale must be a finite float >= 0", "length_scale"),
        ("nn.ConcreteDropout:weight_regularizer-nan", lambda: cd(weight_regularizer=math.nan), ValueError, r"weight_regularizer must be a finite float >= 0", "weight_regularizer"),
        ("nn.ConcreteDropout:layer", lambda: cd("linear"), TypeError, r"layer must be a torch.nn.Module or None", "layer"),
        ("nn.ConcreteDropout:rate_shape-neg", lambda: cd(rate_shape=(-1,)), ValueError, r"rate_shape must be a sequence of ints >= 1", "rate_shape"),
        ("nn.ConcreteDropout:rate_shape-int", lambda: cd(rate_shape=3), TypeError, r"rate_shape must be a sequence of ints >= 1", "rate_shape"),
        ("nn.ConcreteDropout:seed", lambda: cd(seed=-1), ValueError, _SEED_RANGE, "seed"),
        ("nn.ConcreteDropout.regularization:dataset_size-0", lambda: cd(nn.Linear(2, 2)).regularization(0), ValueError, _N, "dataset_size"),
        ("nn.ConcreteDropout.regularization:dataset_size-float", lambda: cd(nn.Linear(2, 2)).regularization(1.5), TypeError, _N, "dataset_size"),
        ("nn.SpatialConcreteDropout():2-D", lambda: dropkit.nn.SpatialConcreteDropout()(_x(2, 3)), ValueError, r"input", "input"),
        ("nn.VariationalDropoutLinear:init_p-1", lambda: vd(2, 3, init_p=1.0), ValueError, _INIT, "init_p"),
        ("nn.VariationalDropoutLinear:init_p-0", lambda: vd(2, 3, init_p=0.0), ValueError, _INIT, "init_p"),
        ("nn.VariationalDropoutLinear:max_log_alpha-nan", lambda: vd(2, 3, max_log_alpha=math.nan), ValueError, r"max_log_alpha " + _FIN, "max_log_alpha"),
        ("nn.VariationalDropoutLinear:max_log_alpha-inf", lambda: vd(2, 3, max_log_alpha=math.inf), ValueError, r"max_log_alpha " + _FIN, "max_log_alpha"),
        ("nn.VariationalDropoutLinear:alpha_shape", lambda: vd(2, 3, alpha_shape="row"), ValueError, r"alpha_shape must be one of", "alpha_shape"),
        ("nn.VariationalDropoutLinear:in_features-0", lambda: vd(0, 3), ValueError, r"in_features must be a positive int", "in_features"),
        ("nn.VariationalDropoutLinear.regularization:dataset_size-neg", lambda: vd(2, 3).regularization(-5), ValueError, _N, "dataset_size"),
        ("nn.VariationalDropoutConv2d:groups", lambda: dropkit.nn.VariationalDropoutConv2d(4, 6, 3, groups=4), ValueError, r"groups must divide in_channels and out_channels", "groups"),
        ("nn.LinearSVDO:threshold-nan", lambda: svdo(2, 3, threshold=math.nan), ValueError, r"threshold " + _FIN, "threshold"),
        ("nn.LinearSVDO:threshold-inf", lambda: svdo(2, 3, threshold=-math.inf), ValueError, r"threshold " + _FIN, "threshold"),
        ("nn.LinearSVDO:log_alpha_clip-nan", lambda: svdo(2, 3, log_alpha_clip=(math.nan, 8.0)), ValueError, r"log_alpha_clip " + _FIN, "log_alpha_clip"),
        ("nn.LinearSVDO:log_alpha_clip-order", lambda: svdo(2, 3, log_alpha_clip=(8.0, -8.0)), ValueError, r"log_alpha_clip must be \(low, high\) with low < high", "log_alpha_clip"),
        ("nn.LinearSVDO:log_alpha_clip-3", lambda: svdo(2, 3, log_alpha_clip=(-8.0, 0.0, 8.0)), ValueError, r"log_alpha_clip must be \(low, high\)", "log_alpha_clip"),
        ("nn.LinearSVDO:init_log_sigma2-inf", lambda: svdo(2, 3, init_log_sigma2=math.inf), ValueError, r"init_log_sigma2 " + _FIN, "init_log_sigma2"),
        ("nn.Conv2dSVDO:kernel_size-0", lambda: dropkit.nn.Conv2dSVDO(1, 2, 0), ValueError, r"kernel_size must be", "kernel_size"),
        ("nn.Standout:layer", lambda: dropkit.nn.Standout("linear"), TypeError, r"layer must be a torch.nn.Module", "layer"),
        ("nn.Standout:activation", lambda: dropkit.nn.Standout(nn.Linear(2, 2), "relu"), TypeError, r"activation must be a torch.nn.Module or None", "activation"),
        ("nn.Standout:alpha-nan", lambda: dropkit.nn.Standout(nn.Linear(2, 2), alpha=math.nan), ValueError, r"alpha " + _FIN, "alpha"),
        ("nn.Standout:beta-inf", lambda: dropkit.nn.Standout(nn.Linear(2, 2), beta=math.inf), ValueError, r"beta " + _FIN, "beta"),
        ("nn.Standout.regularization:dataset_size-0", lambda: dropkit.nn.Standout(nn.Linear(2, 2)).regularization(0), ValueError, _N, "dataset_size"),
        ("nn.LinearSVDO.set_mc_mode:str", lambda: svdo(2, 3).set_mc_mode("yes"), TypeError, r"enabled must be a bool", "enabled"),
        # -- model-level API -------------------------------------------------------------------
        ("regularization:no-learned-layer", lambda: dropkit.regularization(plain, dataset_size=10), ValueError, r"model has no learned-rate dropout module", "model"),
        ("regularization:dataset_size-0", lambda: dropkit.regularization(learned, dataset_size=0), ValueError, _N, "dataset_size"),
        ("regularization:dataset_size-neg", lambda: dropkit.regularization(learned, dataset_size=-100), ValueError, _N, "dataset_size"),
        ("regularization:dataset_size-float", lambda: dropkit.regularization(learned, dataset_size=1e4), TypeError, _N, "dataset_size"),
        ("regularization:dataset_size-bool", lambda: dropkit.regularization(learned, dataset_size=True), TypeError, _N, "dataset_size"),
        ("regularization:model", lambda: dropkit.regularization("net", dataset_size=10), TypeError, r"model must be a torch.nn.Module", "model"),
        ("learned_rates:model", lambda: dropkit.learned_rates("net"), TypeError, r"model must be a torch.nn.Module", "model"),
        ("sparsity:threshold-nan", lambda: dropkit.sparsity(learned, threshold=math.nan), ValueError, r"threshold " + _FIN, "threshold"),
        ("sparsity:model", lambda: dropkit.sparsity([1]), TypeError, r"model must be a torch.nn.Module", "model"),
        ("export_pruned:model", lambda: dropkit.export_pruned("net"), TypeError, r"model must be a torch.nn.Module", "model"),
        ("MetaRateTuner:no-concrete", lambda: dropkit.MetaRateTuner(plain, loss, inner_lr=0.1), ValueError, r"model has no ConcreteDropout layer", "model"),
        ("MetaRateTuner:inner_lr-0", lambda: dropkit.MetaRateTuner(nn.Sequential(cd(nn.Linear(2, 2))), loss, inner_lr=0.0), ValueError, r"inner_lr must be a finite float > 0", "inner_lr"),
        ("MetaRateTuner:rate_lr-neg", lambda: dropkit.MetaRateTuner(nn.Sequential(cd(nn.Linear(2, 2))), loss, inner_lr=0.1, rate_lr=-1.0), ValueError, r"rate_lr must be a finite float > 0", "rate_lr"),
        ("MetaRateTuner:dataset_size-0", lambda: dropkit.MetaRateTuner(nn.Sequential(cd(nn.Linear(2, 2))), loss, inner_lr=0.1, dataset_size=0), ValueError, _N, "dataset_size"),
        ("MetaRateTuner:loss_fn", lambda: dropkit.MetaRateTuner(nn.Sequential(cd(nn.Linear(2, 2))), 3, inner_lr=0.1), TypeError, r"loss_fn must be callable", "loss_fn"),
        # -- load_state_dict -------------------------------------------------------------------
        ("load_state_dict:learned-step-neg", lambda: load(svdo(2, 3), step=torch.tensor(-7)), ValueError, r"state_dict entry 'step' must be >= 0, got -7", "step"),
        ("load_state_dict:learned-seed-float", lambda: load(svdo(2, 3), seed=torch.tensor(1.7)), TypeError, r"state_dict entry 'seed' must be a one-element integer tensor", "seed"),
        ("load_state_dict:concrete-temperature-0", lambda: load(cd(), temperature_t=torch.tensor(0.0)), ValueError, r"state_dict entry 'temperature_t' must be a finite float > 0, got 0.0", "temperature_t"),
        ("load_state_dict:concrete-temperature-nan", lambda: load(cd(), temperature_t=torch.tensor(math.nan)), ValueError, r"state_dict entry 'temperature_t' must be a finite float > 0", "temperature_t"),
        ("load_state_dict:standout-alpha-nan", lambda: load(dropkit.nn.Standout(nn.Linear(2, 2)), alpha=torch.tensor(math.nan)), ValueError, r"state_dict entry 'alpha' must be a finite float", "alpha"),
        # -- added on main since the first census: rate aliases, backends, depth rules -----------
        ("nn.ADL:drop_rate", lambda: dropkit.nn.ADL(drop_rate=1.5), ValueError, r"drop_rate must be in \[0, 1\]", "drop_rate"),
        ("nn.DropPath:p-alias", lambda: dropkit.nn.DropPath(p=2.0), ValueError, r"p must be in \[0, 1\]", "p"),
        ("nn.DropPath:both-names", lambda: dropkit.nn.DropPath(0.1, p=0.2), TypeError, r"pass the rate once, not also as p=", "p"),
        ("nn.PatchDropout:p-alias-1", lambda: dropkit.nn.PatchDropout(p=1.0), ValueError, r"p must be in \[0, 1\)", "p"),
        ("kernels.use_backend:bogus", lambda: dropkit.kernels.use_backend("bogus").__enter__(), ValueError, r"backend must be one of", "backend"),
        ("depth_rates:rule", lambda: F.depth_rates(4, 0.2, rule="paper"), ValueError, r"rule must be 'timm' or 'huang'", "rule"),
        ("schedules.constant:both-names", lambda: schedules.constant(0.1, rate=0.2), TypeError, r"pass the rate once, as p \(not also as rate=", "rate"),
        ("nn.Standout:init_p-1", lambda: dropkit.nn.Standout(init_p=1.0), ValueError, _INIT, "init_p"),
        ("nn.Standout:init_p+beta", lambda: dropkit.nn.Standout(init_p=0.5, beta=1.0), TypeError, r"pass beta or init_p, not both", "init_p"),
        ("surgery.convert:technique", lambda: surgery.convert(nn.Sequential(nn.Dropout(0.1)), technique="bogus"), ValueError, r"technique must be one of", "technique"),
        ("surgery.insert:layer-technique", lambda: surgery.insert(nn.Sequential(nn.ReLU()), after=nn.ReLU, technique="svd"), ValueError, r"technique 'svd' replaces layers", "technique"),
        ("surgery.summary:model", lambda: surgery.summary("net"), TypeError, r"model must be a torch.nn.Module", "model"),
        ("surgery.audit:model", lambda: surgery.audit("net", _x(1, 2)), TypeError, r"model must be a torch.nn.Module", "model"),
        ("surgery.set_rates:model", lambda: surgery.set_rates("net", {}), TypeError, r"model must be a torch.nn.Module", "model"),
        ("surgery.route_functional:model", lambda: surgery.route_functional("net"), TypeError, r"model must be a torch.nn.Module", "model"),
        ("schedules.linear_by_depth:rule", lambda: schedules.linear_by_depth(0.2, 4, rule="paper"), ValueError, r"rule must be 'timm' or 'huang'", "rule"),
    ]
    # fmt: on
    return [BadInput(*row) for row in rows]


def _state_dict_cases() -> list[BadInput]:
    def load(module: nn.Module, **entries: torch.Tensor) -> Any:
        state = module.state_dict()
        state.update(entries)
        return module.load_state_dict(state)

    d = dropkit.nn.Dropout
    # fmt: off
    rows: list[tuple[str, Callable[[], Any], type[BaseException], str, str]] = [
        ("load_state_dict:rate-2", lambda: load(d(0.1), rate=torch.tensor(2.0)), ValueError, r"state_dict entry 'rate' must be a drop rate in \[0, 1\], got 2.0", "rate"),
        ("load_state_dict:rate-nan", lambda: load(d(0.1), rate=torch.tensor(math.nan)), ValueError, r"state_dict entry 'rate' must be a drop rate in \[0, 1\], got nan", "rate"),
        ("load_state_dict:rate-neg-p0", lambda: load(d(0.0), rate=torch.tensor(-0.5)), ValueError, r"state_dict entry 'rate' must be a drop rate in \[0, 1\]", "rate"),
        ("load_state_dict:rate-int", lambda: load(d(0.1), rate=torch.tensor(1)), TypeError, r"state_dict entry 'rate' must be a one-element floating tensor, got a torch.int64 tensor", "rate"),
        ("load_state_dict:rate-gaussian-1", lambda: load(dropkit.nn.GaussianDropout(0.1), rate=torch.tensor(1.0)), ValueError, r"state_dict entry 'rate' must be a drop rate in \[0, 1\), got 1.0", "rate"),
        ("load_state_dict:step-neg", lambda: load(d(0.1), step=torch.tensor(-7)), ValueError, r"state_dict entry 'step' must be >= 0, got -7", "step"),
        ("load_state_dict:step-float", lambda: load(d(0.1), step=torch.tensor(1.5)), TypeError, r"state_dict entry 'step' must be a one-element integer tensor, got a torch.float32 tensor", "step"),
        ("load_state_dict:seed-float", lambda: load(d(0.1), seed=torch.tensor(1.7)), TypeError, r"state_dict entry 'seed' must be a one-element integer tensor, got a torch.float32 tensor", "seed"),
        ("load_state_dict:seed-2-el", lambda: load(d(0.1), seed=torch.tensor([1, 2])), TypeError, r"state_dict entry 'seed' must be a one-element integer tensor", "seed"),
        ("load_state_dict:nested-rate", lambda: load(nn.Sequential(nn.Linear(2, 2), d(0.1)), **{"1.rate": torch.tensor(2.0)}), ValueError, r"state_dict entry '1.rate' must be a drop rate", "rate"),
        ("load_state_dict:nested-step-eval", lambda: load(nn.Sequential(d(0.1)).eval(), **{"0.step": torch.tensor(-1)}), ValueError, r"state_dict entry '0.step' must be >= 0", "step"),
        ("load_state_dict:drop-path-rate", lambda: load(dropkit.nn.DropPath(0.1), rate=torch.tensor(1.5)), ValueError, r"state_dict entry 'rate' must be a drop rate", "rate"),
    ]
    # fmt: on
    return [BadInput(*row) for row in rows]


def all_cases() -> list[BadInput]:
    return (
        _shared_cases()
        + _learned_shared_cases()
        + _specific_cases()
        + _learned_cases()
        + _state_dict_cases()
    )
