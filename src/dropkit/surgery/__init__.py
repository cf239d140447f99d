"""Model surgery on any ``nn.Module``: convert dropout to dropkit and back, route functional
dropout, insert, remove and re-rate dropout layers."""

from dropkit.surgery._convert import (
    PRESETS,
    ConversionError,
    ConversionReport,
    convert,
    insert,
    is_dropout_like,
    preset_rates,
    remove,
    set_rates,
    site_seed,
    to_torch,
)
from dropkit.surgery._functional import (
    FunctionalDropoutRouter,
    route_functional,
    unroute_functional,
)
from dropkit.surgery._registry import register_conversion, register_unsupported

__all__ = [
    "PRESETS",
    "ConversionError",
    "ConversionReport",
    "FunctionalDropoutRouter",
    "convert",
    "insert",
    "is_dropout_like",
    "preset_rates",
    "register_conversion",
    "register_unsupported",
    "remove",
    "route_functional",
    "set_rates",
    "site_seed",
    "to_torch",
    "unroute_functional",
]
