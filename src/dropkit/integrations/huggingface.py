"""Hugging Face round trip for converted models: ``save_pretrained`` / ``from_pretrained``.

A converted model's weights file holds exactly what the unconverted model's does (dropkit's
``rate``/``seed``/``step`` buffers are left out, so Transformers reports no unexpected keys),
and a small JSON file beside it, :data:`DROPOUT_FILE`, records each dropout site: its dropkit
class, rate, seed, step and settings, and the functional-dropout router if there is one.
:func:`from_pretrained` loads the model with Transformers, converts it again and restores every
site, so the model comes back using dropkit, with the rates, seeds and steps it was saved with.

This module does not import ``transformers``; it calls the model's own methods.

Example:
    >>> import tempfile, torch, transformers, dropkit
    >>> from dropkit.integrations import huggingface
    >>> config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
    >>> model = transformers.BertModel(config)
    >>> _ = dropkit.surgery.convert(model, seed=0)
    >>> _ = dropkit.surgery.set_rates(model, {"embeddings.dropout": 0.05})
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     huggingface.save_pretrained(model, directory)
    ...     loaded = huggingface.from_pretrained(transformers.BertModel, directory)
    >>> loaded.embeddings.dropout.p, type(loaded.embeddings.dropout).__name__
    (0.05, 'Dropout')
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import torch
from torch import nn

from dropkit.nn._base import DropoutModule
from dropkit.surgery._convert import _DropoutAfter, convert, torch_state_dict
from dropkit.surgery._functional import (
    ROUTER_NAME,
    FunctionalDropoutRouter,
    route_functional,
)

__all__ = [
    "DROPOUT_FILE",
    "apply_dropout_state",
    "dropout_state",
    "from_pretrained",
    "save_pretrained",
]

#: The file, beside the weights, that records every dropkit dropout site.
DROPOUT_FILE = "dropkit_dropout.json"
_FORMAT = 1
#: Settings restored by attribute, where a site's class has them.
_SETTINGS = (
    "mode", "noise_shape", "channel_dim", "time_dim", "inplace", "scale_by_keep", "batch_dim",
    "block_size", "gamma_scale", "with_noise", "couple_channels", "scale",
)  # fmt: skip


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _unsigned(value: torch.Tensor) -> int:
    return int(value) % 2**64


def dropout_state(model: nn.Module) -> dict[str, Any]:
    """Every dropkit dropout site of ``model`` as a JSON-serialisable dict (what
    :func:`save_pretrained` writes to :data:`DROPOUT_FILE`).

    Raises:
        ValueError: for dropout added by :func:`dropkit.surgery.insert` (it lives in a forward
            hook, which a checkpoint cannot carry; insert it again after loading).
    """
    for module in model.modules():
        for hook in module._forward_hooks.values():
            if isinstance(hook, _DropoutAfter):
                raise ValueError(
                    f"model has dropout added by dropkit.surgery.insert ({hook.name!r}): a "
                    "checkpoint cannot carry its forward hook; save before inserting, or "
                    "insert it again after from_pretrained"
                )
    sites: dict[str, Any] = {}
    router: dict[str, Any] | None = None
    for path, module in model.named_modules():
        if isinstance(module, FunctionalDropoutRouter):
            router = {
                "path": path, "seed": _unsigned(module.seed), "step": int(module.step),
                "override": module.override, "p": module.p,
            }  # fmt: skip
        elif isinstance(module, DropoutModule):
            cls = type(module)
            sites[path] = {
                "class": f"{cls.__module__}:{cls.__qualname__}",
                "p": module.p,
                "seed": _unsigned(module.seed),
                "step": int(module.step),
                "settings": {
                    name: _json_value(getattr(module, name))
                    for name in _SETTINGS
                    if name in vars(module)
                },
            }
    return {"format": _FORMAT, "sites": sites, "router": router}


def _build(path: str, record: dict[str, Any]) -> DropoutModule:
    module_name, _, qualname = record["class"].partition(":")
    cls: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    try:
        module = cls(record["p"])
    except TypeError as error:
        raise ValueError(
            f"cannot rebuild dropout site {path!r} ({record['class']}) from its rate alone: {error}"
        ) from error
    if not isinstance(module, DropoutModule):
        raise ValueError(f"site {path!r}: {record['class']} is not a dropkit DropoutModule")
    return module


def apply_dropout_state(model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Make ``model`` use dropkit as recorded by :func:`dropout_state`: convert its
    ``torch.nn`` dropout, rebuild sites of other dropkit classes, and restore every site's rate,
    seed, step and settings (and the functional-dropout router). Returns ``model``.

    Raises:
        ValueError: a recorded site path that is not in ``model``, or an unknown format.
    """
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"not a dropkit dropout state of format {_FORMAT}: {state!r:.80}")
    convert(model, strict=False)
    names = dict(model.named_modules())
    for path, record in state["sites"].items():
        if path not in names:
            raise ValueError(f"dropout site {path!r} of the checkpoint is not in the model")
        module = names[path]
        expected = record["class"]
        cls = type(module)
        if f"{cls.__module__}:{cls.__qualname__}" != expected:
            replacement = _build(path, record)
            replacement.train(module.training)
            parent_path, _, child = path.rpartition(".")
            setattr(names[parent_path] if parent_path else model, child, replacement)
            module = replacement
        assert isinstance(module, DropoutModule)
        for name, value in record["settings"].items():
            current = getattr(module, name)
            setattr(module, name, tuple(value) if isinstance(current, tuple) else value)
        module.p = record["p"]
        module.reset_seed(record["seed"])
        with torch.no_grad():
            module.step.fill_(record["step"])
    router_state = state.get("router")
    if router_state is not None:
        router = getattr(model, ROUTER_NAME, None)
        if not isinstance(router, FunctionalDropoutRouter):
            router = route_functional(model, seed=router_state["seed"])
        else:
            router.reset_seed(router_state["seed"])
        with torch.no_grad():
            router.step.fill_(router_state["step"])
        if router_state["override"]:
            router.p = router_state["p"]
    return model


def save_pretrained(model: Any, save_directory: str | os.PathLike[str], **kwargs: Any) -> None:
    """``model.save_pretrained(save_directory, **kwargs)`` with the weights of the unconverted
    model (no dropkit buffers: no unexpected keys on load), plus :data:`DROPOUT_FILE`."""
    if "state_dict" in kwargs:
        raise TypeError("save_pretrained: state_dict is computed from the model; do not pass it")
    state = dropout_state(model)
    model.save_pretrained(save_directory, state_dict=torch_state_dict(model), **kwargs)
    with open(os.path.join(save_directory, DROPOUT_FILE), "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1)


def from_pretrained(
    model_class: Any, pretrained_model_name_or_path: str | os.PathLike[str], **kwargs: Any
) -> Any:
    """``model_class.from_pretrained(...)``, then :func:`apply_dropout_state` from
    :data:`DROPOUT_FILE` when the directory has one (else the plain model, converted)."""
    model = model_class.from_pretrained(pretrained_model_name_or_path, **kwargs)
    path = os.path.join(os.fspath(pretrained_model_name_or_path), DROPOUT_FILE)
    if not os.path.exists(path):
        convert(model, strict=False)
        return model
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    return apply_dropout_state(model, state)
