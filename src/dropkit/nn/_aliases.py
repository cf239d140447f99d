"""The rate is ``p`` in dropkit's API. A drop-in for a timm module keeps timm's name for it
(``drop_prob``, ``prob``) first, so every timm call works, and takes ``p=`` as a keyword alias;
``ADL`` takes its authors' ``drop_rate=`` as an alias of ``p``."""

from __future__ import annotations

from dropkit.functional._checks import check_p

__all__ = ["rate_alias"]


def rate_alias(
    cls: str,
    rate: float,
    default: float,
    alias: str,
    value: float | None,
    *,
    name: str = "p",
    allow_one: bool = True,
) -> float:
    """``rate`` (the primary argument, called ``name``), or the keyword alias's ``value`` when
    given; both given (``rate`` not at its default) is an error naming the alias. The rate is
    validated here, so a bad one is reported under the name the caller wrote."""
    if value is None:
        return check_p(rate, name, allow_one=allow_one)
    if rate != default:
        raise TypeError(f"{cls}: pass the rate once, not also as {alias}= (its alias)")
    return check_p(value, alias, allow_one=allow_one)
