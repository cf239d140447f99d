"""Model surgery on any ``nn.Module``: convert dropout to dropkit and back, route functional
dropout, insert, remove and re-rate dropout layers; summary and audit of every dropout site."""

from dropkit.surgery._audit import AuditReport, Finding, audit
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
    torch_state_dict,
)
from dropkit.surgery._functional import (
    FunctionalDropoutRouter,
    route_functional,
    unroute_functional,
)
from dropkit.surgery._registry import register_conversion, register_unsupported
from dropkit.surgery._summary import DropoutSite, DropoutSummary, summary

__all__ = [
    "PRESETS",
    "AuditReport",
    "ConversionError",
    "ConversionReport",
    "DropoutSite",
    "DropoutSummary",
    "Finding",
    "FunctionalDropoutRouter",
    "audit",
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
    "summary",
    "to_torch",
    "torch_state_dict",
    "unroute_functional",
]
