"""Hugging Face round trip and attention dropout (issue 14 item 6; issue 15 drop-in fidelity).

Transformers' documented behaviour: ``save_pretrained``/``from_pretrained`` reload a model's
weights and report unexpected keys; BERT's eager attention applies
``nn.functional.dropout(attn_weights, p=self.dropout.p, training=self.training)`` (or a
``Dropout`` module) to the attention probabilities; the SDPA path passes
``dropout_p=self.dropout.p if self.training else 0.0`` into the fused kernel; models return a
``ModelOutput`` (an ordered dict with attribute access) holding ``logits``.
"""

from __future__ import annotations

import logging

import pytest
import torch

import dropkit
from dropkit import surgery
from dropkit.integrations import huggingface
from tests.compat import models


def _sites(model: torch.nn.Module) -> dict[str, tuple[str, float, int, int]]:
    return {
        path: (type(m).__name__, m.p, int(m.seed), int(m.step))
        for path, m in model.named_modules()
        if isinstance(m, dropkit.nn.DropoutModule)
    }


def test_save_then_from_pretrained_gives_back_dropkit_with_rates_seeds_steps(tmp_path, caplog):
    model, inputs = models.bert(head=True)
    surgery.convert(model, seed=0)
    surgery.set_rates(model, {"bert.embeddings.dropout": 0.05, "dropout": 0.3})
    model.bert.encoder.layer[0].output.dropout = dropkit.nn.GaussianDropout(0.2, seed=5)
    model.train()
    model(**inputs)  # advance the steps
    expected = _sites(model)
    assert expected["bert.embeddings.dropout"][1] == 0.05 and expected["dropout"][3] == 1
    huggingface.save_pretrained(model, tmp_path)
    transformers = pytest.importorskip("transformers")
    caplog.set_level(logging.WARNING)
    transformers.logging.enable_propagation()
    try:
        loaded = huggingface.from_pretrained(type(model), tmp_path)
    finally:
        transformers.logging.disable_propagation()
    assert "UNEXPECTED" not in caplog.text and "unexpected" not in caplog.text.lower()
    assert _sites(loaded) == expected
    assert not any(
        isinstance(m, torch.nn.modules.dropout._DropoutNd)
        and not isinstance(m, dropkit.nn.DropoutModule)
        for m in loaded.modules()
    )
    # Same weights, same masks: a training forward of both gives the same bits (the global
    # generator is reset only for the attention dropout SDPA draws itself).
    model.train(), loaded.train()
    torch.manual_seed(7)
    expected_logits = model(**inputs).logits
    torch.manual_seed(7)
    assert torch.equal(loaded(**inputs).logits, expected_logits)


def test_plain_from_pretrained_of_a_helper_checkpoint_has_no_unexpected_keys(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    model, _ = models.bert()
    surgery.convert(model, seed=0)
    huggingface.save_pretrained(model, tmp_path)
    caplog.set_level(logging.WARNING)
    transformers.logging.enable_propagation()
    try:
        plain = type(model).from_pretrained(tmp_path)
    finally:
        transformers.logging.disable_propagation()
    assert "UNEXPECTED" not in caplog.text
    assert isinstance(plain.embeddings.dropout, torch.nn.Dropout)


def test_router_travels_with_the_checkpoint(tmp_path):
    model, inputs = models.bert(attn="eager")
    surgery.convert(model, seed=1)
    router = surgery.route_functional(model, seed=2)
    model.train()
    model(**inputs)
    huggingface.save_pretrained(model, tmp_path)
    loaded = huggingface.from_pretrained(type(model), tmp_path, attn_implementation="eager")
    assert int(loaded.dropkit_functional.seed) == int(router.seed)
    assert int(loaded.dropkit_functional.step) == int(router.step) == 1
    loaded.train()
    assert torch.equal(model(**inputs).last_hidden_state, loaded(**inputs).last_hidden_state)


def test_inserted_dropout_is_refused_with_the_reason(tmp_path):
    model, _ = models.bert()
    surgery.insert(model, after="pooler.dense", p=0.1)
    with pytest.raises(ValueError, match="insert"):
        huggingface.save_pretrained(model, tmp_path)


def test_eager_attention_probability_dropout_runs_through_dropkit():
    model, inputs = models.bert(attn="eager")
    surgery.convert(model, seed=0)
    router = surgery.route_functional(model, seed=3)
    model.train()
    calls = []
    original = dropkit.functional.dropout

    def spy(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return original(*args, **kwargs)

    import dropkit.surgery._functional as routing

    routes = dict(routing._ROUTES)
    routing._ROUTES[torch.nn.functional.dropout] = spy
    try:
        model(**inputs)
    finally:
        routing._ROUTES.clear()
        routing._ROUTES.update(routes)
    attention = [s for s in router.sites if "attention.self" in s]
    assert attention and len(calls) >= len(attention) and router.unrouted == {}
    assert "unreachable-dropout" not in dropkit.audit(model, inputs).codes


def test_audit_reports_attention_dropout_fused_into_sdpa():
    model, inputs = models.bert(attn="sdpa")
    surgery.convert(model, seed=0)
    model.eval()
    rng = torch.get_rng_state()
    report = dropkit.audit(model, inputs)
    assert torch.equal(torch.get_rng_state(), rng) and not model.training
    unreachable = [f for f in report if f.code == "unreachable-dropout"]
    assert [f.path for f in unreachable] == [
        "encoder.layer.0.attention.self:scaled_dot_product_attention#0"
    ]
    assert unreachable[0].severity == "warning" and "eager" in unreachable[0].fix


def test_audit_reports_timm_vit_fused_attention_dropout():
    model, x = models.vit()
    surgery.convert(model, seed=0)
    report = dropkit.audit(model, x)
    assert {f.path for f in report if f.code == "unreachable-dropout"} == {
        "blocks.0.attn:scaled_dot_product_attention#0"
    }


def test_uncertainty_sample_picks_logits_of_a_model_output():
    model, inputs = models.bert(head=True)
    surgery.convert(model, seed=0)
    ids = inputs["input_ids"]
    samples = dropkit.uncertainty.sample(model, ids, samples=4, seed=1)
    assert samples.shape == (4, 2, 3)
    assert not torch.equal(samples[0], samples[1])
    by_key = dropkit.uncertainty.sample(model, ids, samples=4, seed=1, output="logits")
    by_index = dropkit.uncertainty.sample(model, ids, samples=4, seed=1, output=0)
    by_call = dropkit.uncertainty.sample(model, ids, samples=4, seed=1, output=lambda o: o.logits)
    assert torch.equal(by_key, samples) and torch.equal(by_index, samples)
    assert torch.equal(by_call, samples)
    summary = dropkit.uncertainty.sample(
        model, ids, samples=4, seed=1, reduce=dropkit.uncertainty.ClassificationReducer(
            from_logits=True
        ),
    )  # fmt: skip
    assert summary.mean.shape == (2, 3)


def test_uncertainty_sample_output_selector_errors_name_the_entries():
    model, inputs = models.bert()
    surgery.convert(model, seed=0)
    with pytest.raises(TypeError, match="last_hidden_state"):
        dropkit.uncertainty.sample(model, inputs["input_ids"], samples=2)
    with pytest.raises(KeyError, match="nope"):
        dropkit.uncertainty.sample(model, inputs["input_ids"], samples=2, output="nope")
    hidden = dropkit.uncertainty.sample(
        model, inputs["input_ids"], samples=2, output="last_hidden_state"
    )
    assert hidden.shape == (2, 2, 8, 16)
