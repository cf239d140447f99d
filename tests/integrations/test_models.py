"""convert / to_torch / functional routing on real model families: torchvision VGG and ResNet,
a Hugging Face BERT from a tiny config, timm ViT and ResNet. Random weights; nothing is
downloaded. Each test skips with a reason when its package is absent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
from dropkit import surgery


def _torch_dropouts(model: nn.Module) -> list[str]:
    # dropkit's drop-ins derive from the torch classes (isinstance works): count only torch's own.
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.dropout._DropoutNd)
        and not isinstance(m, dropkit.nn.DropoutModule)
    ]


def _dropkit_sites(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, dropkit.nn.DropoutModule)]


def _outputs(model: nn.Module, inputs: dict | torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out


def _train_step(model: nn.Module, inputs: dict | torch.Tensor) -> None:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    out = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
    out.float().square().mean().backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def _check_round_trip(model: nn.Module, inputs: dict | torch.Tensor) -> None:
    """Every torch dropout converted, same eval outputs, a training step, to_torch back."""
    model.eval()
    expected = _outputs(model, inputs)
    sites = _torch_dropouts(model)
    assert sites, "the fixture model should contain dropout"
    reference = {path: (type(model.get_submodule(path)), model.get_submodule(path).p)
                 for path in sites}  # fmt: skip
    report = surgery.convert(model, seed=0)
    assert sorted(p for p, _, _ in report.converted) == sorted(sites)
    assert _torch_dropouts(model) == [] and sorted(_dropkit_sites(model)) == sorted(sites)
    assert torch.equal(_outputs(model, inputs), expected)
    for path in sites:
        assert model.get_submodule(path).p == pytest.approx(reference[path][1])

    back = surgery.to_torch(model)
    assert sorted(p for p, _, _ in back.converted) == sorted(sites)
    assert _dropkit_sites(model) == []
    for path in sites:
        assert type(model.get_submodule(path)) is reference[path][0]
    assert torch.equal(_outputs(model, inputs), expected)
    surgery.convert(model)
    _train_step(model, inputs)


def test_torchvision_vgg():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vgg11(num_classes=4)
    _check_round_trip(model, torch.randn(1, 3, 32, 32))


def test_torchvision_resnet_has_nothing_to_convert():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)
    report = surgery.convert(model)
    assert report.converted == [] and report.unsupported == []


def test_torchvision_stochastic_depth_is_converted():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(num_classes=4, stochastic_depth_prob=0.2)
    report = surgery.convert(model)
    kinds = {kind for _, kind, _ in report.converted}
    assert kinds == {"Dropout", "StochasticDepth"}
    assert report.unsupported == []
    depth = [m for m in model.modules() if isinstance(m, dropkit.nn.DropPath)]
    assert len(depth) == 16 and max(m.p for m in depth) == pytest.approx(0.2 * 15 / 16)


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=32, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_hugging_face_bert_convert_round_trip():
    model, inputs = _tiny_bert()
    _check_round_trip(model, inputs)


def test_hugging_face_bert_functional_attention_dropout_is_routed():
    first, inputs = _tiny_bert()
    second, _ = _tiny_bert()
    for model in (first, second):
        surgery.convert(model, seed=1)
        surgery.route_functional(model, seed=2)
        model.train()
    torch.manual_seed(10)
    out_first = _outputs(first, inputs)
    torch.manual_seed(20)  # the global generator plays no part any more
    assert torch.equal(_outputs(second, inputs), out_first)
    assert not torch.equal(_outputs(first, inputs), out_first)  # a new step, new masks
    router = first.dropkit_functional
    attention_sites = [s for s in router.sites if "attention.self:dropout" in s]
    assert len(attention_sites) == 2 and router.unrouted == {}
    # A converted, routed BERT follows the practices; the summary places every site.
    assert len(dropkit.audit(first, inputs)) == 0
    rows = dropkit.summary(first, inputs, print_table=False)
    assert len(rows) == 9 and rows[1].path == "encoder.layer.0.attention.self:dropout#0"
    # BERT's attention-probability Dropout modules only lend their p to F.dropout.
    assert [r.path for r in rows if r.after == "(not run)"] == [
        "encoder.layer.0.attention.self.dropout",
        "encoder.layer.1.attention.self.dropout",
    ]
    assert first.training  # audit and summary restored the mode
    # MC mode: every dropout module (and the router) samples while the rest is in eval.
    first.eval()
    for module in first.modules():
        if isinstance(module, dropkit.nn.DropoutModule):
            module.train()
    assert not torch.equal(_outputs(first, inputs), _outputs(first, inputs))
    with pytest.raises(surgery.ConversionError, match="unroute_functional"):
        surgery.to_torch(first)
    surgery.unroute_functional(first)
    surgery.to_torch(first)
    assert _dropkit_sites(first) == []


def _timm():
    return pytest.importorskip("timm")


def test_timm_vit_round_trip_and_droppath_converted():
    timm = _timm()
    torch.manual_seed(0)
    kwargs = dict(pretrained=False, img_size=32, patch_size=8, num_classes=5, depth=2,
                  drop_rate=0.1, attn_drop_rate=0.1, proj_drop_rate=0.1)  # fmt: skip
    model = timm.create_model("vit_tiny_patch16_224", **kwargs)
    x = torch.randn(2, 3, 32, 32)
    _check_round_trip(model, x)

    with_drop_path = timm.create_model("vit_tiny_patch16_224", drop_path_rate=0.1, **kwargs)
    with_drop_path.eval()
    expected = with_drop_path(x)
    report = surgery.convert(with_drop_path)
    # timm's linear depth rule gives block 0 rate 0 (an Identity): only block 1 has DropPath.
    converted = sorted(p for p, kind, _ in report.converted if kind == "DropPath")
    assert converted == ["blocks.1.drop_path1", "blocks.1.drop_path2"]
    assert report.unsupported == []
    assert torch.equal(with_drop_path(x), expected)
    # Fused attention dropout cannot be routed: the router says so after a training forward.
    router = surgery.route_functional(with_drop_path, seed=0)
    with_drop_path.train()
    with_drop_path(x)
    assert sorted(router.unrouted) == [
        "blocks.0.attn:scaled_dot_product_attention#0",
        "blocks.1.attn:scaled_dot_product_attention#0",
    ]


def test_timm_resnet_functional_head_dropout_is_routed():
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=5, drop_rate=0.5)
    assert _torch_dropouts(model) == []  # timm's ResNet calls F.dropout in forward_head
    router = surgery.route_functional(model, seed=3)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    expected = _outputs(model, x)
    assert list(router.sites) == [":dropout#0"] and router.sites[":dropout#0"] == 0.5
    router.train()  # MC mode
    mc = [_outputs(model, x) for _ in range(2)]
    assert not torch.equal(mc[0], mc[1]) and not torch.equal(mc[0], expected)
    router.eval()
    assert torch.equal(_outputs(model, x), expected)
    _train_step(model, x)
