"""The conversion registry: which dropout type becomes which, in each direction.

Entries are keyed by a type or by a qualified class name (``"timm.layers.drop.DropPath"``), so
optional packages never need importing to be known. A key may map to a factory
``module -> replacement`` or to a reason there is no equivalent (reported, never skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import nn

import dropkit.nn as dk

__all__ = [
    "Direction",
    "Factory",
    "lookup",
    "register_conversion",
    "register_unsupported",
]

Direction = Literal["to_dropkit", "to_torch"]
#: ``module -> replacement``, or a string saying why this instance has no equivalent.
Factory = Callable[[nn.Module], "nn.Module | str"]
_Key = type | str

_FACTORIES: dict[Direction, dict[_Key, Factory]] = {"to_dropkit": {}, "to_torch": {}}
_UNSUPPORTED: dict[Direction, dict[_Key, str]] = {"to_dropkit": {}, "to_torch": {}}


def _check_direction(direction: object) -> Direction:
    if direction not in ("to_dropkit", "to_torch"):
        raise ValueError(f"direction must be one of ('to_dropkit', 'to_torch'), got {direction!r}")
    return direction


def register_conversion(source: _Key, factory: Factory, *, direction: Direction) -> None:
    """Convert modules of type ``source`` (a type or qualified class name) with ``factory``.

    ``factory(module)`` returns the replacement (keeping the rate; the training mode is copied
    afterwards) or a string saying why this instance has no equivalent. Later registrations
    override earlier ones, so a build that adds e.g. ``dropkit.nn.DropPath`` registers
    ``"timm.layers.drop.DropPath"`` here and the "no equivalent" report disappears.
    """
    direction = _check_direction(direction)
    _FACTORIES[direction][source] = factory
    _UNSUPPORTED[direction].pop(source, None)


def register_unsupported(source: _Key, reason: str, *, direction: Direction) -> None:
    """Record that ``source`` is a known dropout type with no equivalent (``reason`` says why)."""
    direction = _check_direction(direction)
    _UNSUPPORTED[direction][source] = reason
    _FACTORIES[direction].pop(source, None)


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def lookup(module: nn.Module, direction: Direction) -> Factory | str | None:
    """The factory for ``module``'s type (nearest class in its MRO), the reason it has no
    equivalent, or ``None`` when the type is not in the registry."""
    for cls in type(module).__mro__:
        for key in (cls, _qualified_name(cls)):
            if key in _FACTORIES[direction]:
                return _FACTORIES[direction][key]
            if key in _UNSUPPORTED[direction]:
                return _UNSUPPORTED[direction][key]
    return None


def _torch_dropout(module: nn.Module) -> nn.Module | str:
    assert isinstance(module, nn.Dropout)
    return dk.Dropout(module.p, module.inplace)


def _spatial(target: type[dk.DropoutModule]) -> Factory:
    def factory(module: nn.Module) -> nn.Module | str:
        assert isinstance(module, nn.modules.dropout._DropoutNd)
        return target(module.p, module.inplace)

    return factory


def _dropkit_dropout(module: nn.Module) -> nn.Module | str:
    assert isinstance(module, dk.Dropout)
    if module.mode != "inverted":
        return "mode='standard' has no torch.nn equivalent (torch.nn.Dropout is inverted)"
    if module.noise_shape is not None:
        return "noise_shape has no torch.nn.Dropout equivalent"
    return nn.Dropout(module.p, module.inplace)


def _dropkit_spatial(target: type[nn.modules.dropout._DropoutNd]) -> Factory:
    def factory(module: nn.Module) -> nn.Module | str:
        assert isinstance(module, dk.SpatialDropout1d | dk.SpatialDropout2d | dk.SpatialDropout3d)
        if module.channel_dim != 1:
            return f"channel_dim={module.channel_dim} has no equivalent (torch uses dim 1)"
        return target(module.p, module.inplace)

    return factory


def _alpha(target: type[nn.Module]) -> Factory:
    def factory(module: nn.Module) -> nn.Module | str:
        if getattr(module, "noise_shape", None) is not None:
            return f"noise_shape has no torch.nn.{target.__name__} equivalent"
        return target(float(module.p), bool(module.inplace))  # type: ignore[arg-type]

    return factory


def _timm_drop_path(module: nn.Module) -> nn.Module | str:
    return dk.DropPath(float(module.drop_prob), bool(module.scale_by_keep))  # type: ignore[arg-type]


def _timm_drop_block(module: nn.Module) -> nn.Module | str:
    return dk.DropBlock2d(
        float(module.drop_prob),  # type: ignore[arg-type]
        module.block_size,  # type: ignore[arg-type]
        float(module.gamma_scale),  # type: ignore[arg-type]
        bool(module.with_noise),
        bool(module.inplace),
        bool(module.couple_channels),
        bool(module.scale_by_keep),
    )


def _torchvision_stochastic_depth(module: nn.Module) -> nn.Module | str:
    return dk.DropPath(float(module.p), True, mode=module.mode)  # type: ignore[arg-type]


def _dropkit_drop_path(module: nn.Module) -> nn.Module | str:
    assert isinstance(module, dk.DropPath)
    if module.batch_dim != 0:
        return f"batch_dim={module.batch_dim} has no equivalent (torchvision/timm use dim 0)"
    if module.scale_by_keep:
        try:
            from torchvision.ops import StochasticDepth
        except ImportError:
            pass
        else:
            return StochasticDepth(module.p, module.mode)
    try:
        from timm.layers import DropPath
    except ImportError:
        return "needs torchvision (StochasticDepth) or timm (DropPath), neither is installed"
    if module.mode != "row":
        return "timm's DropPath has no mode='batch' (torchvision's StochasticDepth has)"
    return DropPath(module.p, module.scale_by_keep)


def _dropkit_drop_block(module: nn.Module) -> nn.Module | str:
    assert isinstance(module, dk.DropBlock2d)
    try:
        from timm.layers import DropBlock2d
    except ImportError:
        return "needs timm (DropBlock2d), which is not installed"
    if module.scale == "rate":
        return "scale='rate' has no timm equivalent (timm scales by the kept fraction or not)"
    block_h, block_w = module.block_size
    if block_h != block_w:
        return f"a non-square block {module.block_size} has no timm equivalent"
    return DropBlock2d(
        module.p, block_h, module.gamma_scale, module.with_noise, module.inplace,
        module.couple_channels, module.scale == "kept",
    )  # fmt: skip


register_conversion(nn.Dropout, _torch_dropout, direction="to_dropkit")
register_conversion(nn.Dropout1d, _spatial(dk.SpatialDropout1d), direction="to_dropkit")
register_conversion(nn.Dropout2d, _spatial(dk.SpatialDropout2d), direction="to_dropkit")
register_conversion(nn.Dropout3d, _spatial(dk.SpatialDropout3d), direction="to_dropkit")
register_conversion(nn.AlphaDropout, _alpha(dk.AlphaDropout), direction="to_dropkit")
register_conversion(nn.FeatureAlphaDropout, _alpha(dk.FeatureAlphaDropout), direction="to_dropkit")
register_conversion("timm.layers.drop.DropPath", _timm_drop_path, direction="to_dropkit")
register_conversion("timm.layers.drop.DropBlock2d", _timm_drop_block, direction="to_dropkit")
register_conversion(
    "torchvision.ops.stochastic_depth.StochasticDepth",
    _torchvision_stochastic_depth,
    direction="to_dropkit",
)

register_conversion(dk.Dropout, _dropkit_dropout, direction="to_torch")
register_conversion(dk.SpatialDropout1d, _dropkit_spatial(nn.Dropout1d), direction="to_torch")
register_conversion(dk.SpatialDropout2d, _dropkit_spatial(nn.Dropout2d), direction="to_torch")
register_conversion(dk.SpatialDropout3d, _dropkit_spatial(nn.Dropout3d), direction="to_torch")
register_conversion(dk.AlphaDropout, _alpha(nn.AlphaDropout), direction="to_torch")
register_conversion(dk.FeatureAlphaDropout, _alpha(nn.FeatureAlphaDropout), direction="to_torch")
register_conversion(dk.DropPath, _dropkit_drop_path, direction="to_torch")
register_conversion(dk.DropBlock2d, _dropkit_drop_block, direction="to_torch")
register_unsupported(dk.GaussianDropout, "torch.nn has no Gaussian dropout", direction="to_torch")
register_unsupported(dk.LockedDropout, "torch.nn has no locked dropout", direction="to_torch")
register_unsupported(
    dk.DropoutModule, "no torch.nn equivalent registered for this dropkit module",
    direction="to_torch",
)  # fmt: skip
register_unsupported(
    dk.LearnedDropoutModule,
    "a learned rate has no torch.nn equivalent (for inference, dropkit.export_pruned turns "
    "variational layers into plain ones)",
    direction="to_torch",
)
