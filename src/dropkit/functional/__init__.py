"""Every dropout technique as a function ``(x, p, training, *, seed, step, offset, ...)``.

Functions do the work; the modules of :mod:`dropkit.nn` store hyperparameters, a seed and a step
counter, and call one of these.
"""

from dropkit.functional._adl import adl
from dropkit.functional._attention import attention, drop_head, drop_key
from dropkit.functional._drop_block import drop_block, drop_block2d, drop_block3d
from dropkit.functional._drop_connect import drop_connect_conv, drop_connect_linear
from dropkit.functional._drop_path import depth_rates, drop_path, drop_path_add
from dropkit.functional._elementwise import (
    alpha_dropout,
    dropout,
    feature_alpha_dropout,
    gaussian_dropout,
    locked_dropout,
    spatial_dropout,
)
from dropkit.functional._embedding import embedding_dropout
from dropkit.functional._fused import bias_act_dropout, bias_act_dropout_add, bias_dropout_add
from dropkit.functional._learned import (
    concrete_dropout,
    concrete_regularizer,
    kl_kingma,
    kl_molchanov,
    local_reparam_conv2d,
    local_reparam_linear,
    standout,
)
from dropkit.functional._patch_dropout import patch_dropout
from dropkit.functional._recurrent import (
    variational_rnn,
    weight_dropout_call,
    zoneout,
    zoneout_cell,
)

__all__ = [
    "adl",
    "alpha_dropout",
    "attention",
    "bias_act_dropout",
    "bias_act_dropout_add",
    "bias_dropout_add",
    "concrete_dropout",
    "concrete_regularizer",
    "depth_rates",
    "drop_block",
    "drop_block2d",
    "drop_block3d",
    "drop_connect_conv",
    "drop_connect_linear",
    "drop_head",
    "drop_key",
    "drop_path",
    "drop_path_add",
    "dropout",
    "embedding_dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "kl_kingma",
    "kl_molchanov",
    "local_reparam_conv2d",
    "local_reparam_linear",
    "locked_dropout",
    "patch_dropout",
    "spatial_dropout",
    "standout",
    "variational_rnn",
    "weight_dropout_call",
    "zoneout",
    "zoneout_cell",
]
