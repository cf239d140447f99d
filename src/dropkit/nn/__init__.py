"""One module per dropout technique; ``forward`` is one call into :mod:`dropkit.functional`."""

from dropkit.nn._adl import ADL
from dropkit.nn._attention import AttentionDropout, DropHead, DropKey
from dropkit.nn._base import DropoutModule
from dropkit.nn._concrete import ConcreteDropout, SpatialConcreteDropout
from dropkit.nn._drop_block import DropBlock2d, DropBlock3d
from dropkit.nn._drop_connect import (
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectConv3d,
    DropConnectLinear,
)
from dropkit.nn._drop_path import DropPath
from dropkit.nn._elementwise import (
    AlphaDropout,
    Dropout,
    FeatureAlphaDropout,
    GaussianDropout,
    LockedDropout,
    SpatialDropout1d,
    SpatialDropout2d,
    SpatialDropout3d,
)
from dropkit.nn._embedding import EmbeddingDropout
from dropkit.nn._fused import BiasActDropout, BiasActDropoutAdd, BiasDropoutAdd
from dropkit.nn._learned import LearnedDropoutModule
from dropkit.nn._patch_dropout import PatchDropout
from dropkit.nn._recurrent import (
    VariationalGRU,
    VariationalLSTM,
    WeightDrop,
    ZoneoutGRUCell,
    ZoneoutLSTMCell,
)
from dropkit.nn._standout import Standout
from dropkit.nn._variational import (
    Conv2dSVDO,
    LinearSVDO,
    SparseLinear,
    SparsityReport,
    VariationalDropoutConv2d,
    VariationalDropoutLinear,
    export_pruned,
    sparsity,
)

__all__ = [
    "ADL",
    "AlphaDropout",
    "AttentionDropout",
    "BiasActDropout",
    "BiasActDropoutAdd",
    "BiasDropoutAdd",
    "ConcreteDropout",
    "Conv2dSVDO",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectConv3d",
    "DropConnectLinear",
    "DropHead",
    "DropKey",
    "DropPath",
    "Dropout",
    "DropoutModule",
    "EmbeddingDropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LearnedDropoutModule",
    "LinearSVDO",
    "LockedDropout",
    "PatchDropout",
    "SparseLinear",
    "SparsityReport",
    "SpatialConcreteDropout",
    "SpatialDropout1d",
    "SpatialDropout2d",
    "SpatialDropout3d",
    "Standout",
    "VariationalDropoutConv2d",
    "VariationalDropoutLinear",
    "VariationalGRU",
    "VariationalLSTM",
    "WeightDrop",
    "ZoneoutGRUCell",
    "ZoneoutLSTMCell",
    "export_pruned",
    "sparsity",
]
