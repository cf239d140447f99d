"""Tiny models of the upstream families, built from configs (random weights, nothing
downloaded). Each builder skips its test when the package is absent."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn


def gpt2(attn: str = "sdpa") -> tuple[nn.Module, dict[str, Any]]:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2, attn_implementation=attn
    )
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1))
    return transformers.GPT2Model(config), {"input_ids": ids, "use_cache": False}


def bert(attn: str = "sdpa", head: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, attn_implementation=attn,
        num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1))
    cls = transformers.BertForSequenceClassification if head else transformers.BertModel
    return cls(config), {"input_ids": ids}


def vit() -> tuple[nn.Module, torch.Tensor]:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8, num_classes=3,
        depth=1, embed_dim=16, num_heads=2, drop_rate=0.1, attn_drop_rate=0.1,
        proj_drop_rate=0.1, drop_path_rate=0.1,
    )  # fmt: skip
    return model, torch.randn(2, 3, 16, 16)


def efficientnet() -> tuple[nn.Module, torch.Tensor]:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(num_classes=3, stochastic_depth_prob=0.2)
    return model, torch.randn(2, 3, 32, 32)
