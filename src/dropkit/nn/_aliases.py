"""The rate is ``p`` in dropkit's API. A drop-in for a timm module keeps timm's name for it
(``drop_prob``, ``prob``) first, so every timm call works, and takes ``p=`` as a keyword alias;
``ADL`` takes its authors' ``drop_rate=`` as an alias of ``p``."""

from __future__ import annotations

__all__ = ["rate_alias"]


def rate_alias(cls: str, rate: float, default: float, alias: str, value: float | None) -> float:
    """``rate`` (the primary argument), or the keyword alias's ``value`` when given; both given
    (``rate`` not at its default) is an error naming the alias."""
    if value is None:
        return rate
    if rate != default:
        raise TypeError(f"{cls}: pass the rate once, not also as {alias}= (its alias)")
    return value
