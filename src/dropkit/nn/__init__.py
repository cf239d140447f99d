"""One module per dropout technique; ``forward`` is one call into :mod:`dropkit.functional`."""

from dropkit.nn._base import DropoutModule
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
from dropkit.nn._fused import BiasActDropout, BiasActDropoutAdd, BiasDropoutAdd

__all__ = [
    "AlphaDropout",
    "BiasActDropout",
    "BiasActDropoutAdd",
    "BiasDropoutAdd",
    "Dropout",
    "DropoutModule",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "LockedDropout",
    "SpatialDropout1d",
    "SpatialDropout2d",
    "SpatialDropout3d",
]
