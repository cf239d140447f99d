"""Learned-rate layers: math against reference formulas, float64 gradcheck, reproducibility by
seed and step, state_dict round trip, MC sampling, the regulariser API and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

import dropkit
from dropkit import rng
from dropkit.functional import _learned as FL

LAYERS = {
    "concrete": (lambda: dropkit.nn.ConcreteDropout(nn.Linear(5, 3), seed=1), (4, 5)),
    "concrete_features": (
        lambda: dropkit.nn.ConcreteDropout(nn.Linear(5, 3), rate_shape=(5,), seed=1),
        (4, 5),
    ),
    "spatial_concrete": (
        lambda: dropkit.nn.SpatialConcreteDropout(nn.Conv2d(2, 3, 3), seed=2),
        (2, 2, 5, 5),
    ),
    "vd_weight": (lambda: dropkit.nn.VariationalDropoutLinear(5, 3, seed=3), (4, 5)),
    "vd_unit": (
        lambda: dropkit.nn.VariationalDropoutLinear(5, 3, alpha_shape="unit", seed=3),
        (4, 5),
    ),
    "vd_layer": (
        lambda: dropkit.nn.VariationalDropoutLinear(5, 3, alpha_shape="layer", seed=3),
        (4, 5),
    ),
    "vd_conv": (
        lambda: dropkit.nn.VariationalDropoutConv2d(2, 3, 3, padding=1, seed=4),
        (2, 2, 4, 4),
    ),
    "svd": (lambda: dropkit.nn.LinearSVDO(5, 3, seed=5), (4, 5)),
    "svd_conv": (lambda: dropkit.nn.Conv2dSVDO(2, 3, 3, seed=6), (2, 2, 5, 5)),
    "standout": (lambda: dropkit.nn.Standout(nn.Linear(5, 3), nn.Tanh(), seed=7), (4, 5)),
    "standout_own": (
        lambda: dropkit.nn.Standout(nn.Linear(5, 3), nn.Tanh(), own_weights=True, seed=7),
        (4, 5),
    ),
}


def _gal_concrete_reference(x, p_logit, u, temperature):
    """The paper's reference formula (its PyTorch notebook) written with torch ops."""
    eps = 1e-7
    p = torch.sigmoid(p_logit)
    drop_prob = torch.sigmoid(
        (torch.log(p) - torch.log(1 - p) + torch.log(u + eps) - torch.log(1 - u + eps))
        / temperature
    )
    return x * (1 - drop_prob) / (1 - p)


# ----------------------------------------------------------------------------- math


def test_concrete_matches_reference_formula_and_its_gradients():
    x = torch.randn(6, 7, requires_grad=True)
    logit = torch.tensor(-1.2, requires_grad=True)
    y = FL.concrete_dropout(x, logit, seed=11, step=3, temperature=0.1)
    u = rng.uniform((6, 7), seed=11, step=3)
    x_ref = x.detach().clone().requires_grad_()
    logit_ref = logit.detach().clone().requires_grad_()
    y_ref = _gal_concrete_reference(x_ref, logit_ref, u, 0.1)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    g = torch.randn(6, 7)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logit.grad, logit_ref.grad, rtol=1e-4, atol=1e-5)


def test_concrete_saves_no_mask_for_backward():
    x = torch.randn(64, 32, requires_grad=True)
    logit = torch.tensor(-1.0, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        FL.concrete_dropout(x, logit, seed=0)
    big = [t for t in saved if t.numel() > 1]
    assert len(big) == 1 and big[0] is x  # only the input itself; 0-d logit, seed, step


def test_spatial_concrete_shares_the_mask_over_space():
    layer = dropkit.nn.SpatialConcreteDropout(init_p=0.5, seed=0)
    x = torch.ones(3, 4, 5, 6)
    y = layer(x)
    assert torch.equal(y, y[:, :, :1, :1].expand_as(y))
    assert int(layer.input_dim) == 4  # D = channels


def test_concrete_mask_is_nearly_binary_and_keeps_the_mean():
    # At t = 0.1 the relaxed keep mask is close to Bernoulli(1 - p): mean 1 - p, mostly 0 or 1.
    x = torch.ones(200_000)
    logit = torch.tensor(math.log(0.3 / 0.7))
    y = FL.concrete_dropout(x, logit, seed=5)
    keep = y * 0.7
    n = x.numel()
    sigma = math.sqrt(0.3 * 0.7 / n)
    assert abs(float(keep.mean()) - 0.7) < 5 * sigma + 0.01  # relaxation bias well under 0.01
    assert float(((keep < 0.05) | (keep > 0.95)).float().mean()) > 0.85


def test_local_reparam_matches_sampled_weights_in_distribution():
    # Mean and variance of the pre-activations equal those of x Wᵀ with W ~ N(θ, var).
    torch.manual_seed(0)
    x = torch.randn(1, 6)
    theta = torch.randn(3, 6)
    var = torch.rand(3, 6)
    xs = x.expand(40_000, 6)
    b = FL.local_reparam_linear(xs, theta, var, seed=9)
    torch.testing.assert_close(b.mean(0), (x @ theta.t())[0], atol=0.05, rtol=0)
    torch.testing.assert_close(b.var(0), (x**2 @ var.t())[0], rtol=0.05, atol=0)


def _exact_neg_kl(log_alpha: float) -> float:
    """-KL(N(θ, αθ²) || log-uniform) = 0.5 log α - E log|ε| - (γ + log 2)/2, ε ~ N(1, α), by
    quadrature; the constant makes it 0 as α → ∞ (Molchanov et al.'s normalisation)."""
    from scipy import integrate, stats

    s = math.exp(0.5 * log_alpha)
    density = stats.norm(loc=1.0, scale=s).pdf

    def integrand(e: float) -> float:
        return math.log(abs(e)) * density(e) if e != 0 else 0.0

    lo, hi = 1 - 14 * s, 1 + 14 * s
    parts = [(lo, 0.0), (0.0, hi)] if lo < 0 else [(lo, hi)]
    value = sum(integrate.quad(integrand, a, b, limit=400)[0] for a, b in parts)
    return 0.5 * log_alpha - value - (0.5772156649015329 + math.log(2.0)) / 2


def test_kl_molchanov_matches_the_exact_kl():
    # The paper's fit: measured max deviation 0.0085 (at log α = -4) on this grid.
    for log_alpha in (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0):
        approx = -float(FL.kl_molchanov(torch.tensor(log_alpha, dtype=torch.float64)))
        assert abs(approx - _exact_neg_kl(log_alpha)) < 0.01, log_alpha


def test_kl_kingma_matches_the_exact_kl_up_to_a_constant_for_alpha_at_most_one():
    # Kingma et al. fit -KL up to a constant for α <= 1; measured spread 0.04 on this grid.
    grid = (-6.0, -4.0, -2.0, -1.0, -0.5, 0.0)
    offsets = [
        -float(FL.kl_kingma(torch.tensor(la, dtype=torch.float64))) - _exact_neg_kl(la)
        for la in grid
    ]
    assert max(offsets) - min(offsets) < 0.05
    # The paper's coefficients at α = 1: 0.5·0 + c1 + c2 + c3.
    assert float(FL.kl_kingma(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(
        -(1.16145124 - 1.50204118 + 0.58629921), abs=1e-12
    )


# ----------------------------------------------------------------------------- gradcheck


def _module_function(module: nn.Module):
    names = [name for name, p in module.named_parameters() if p.requires_grad]

    def call(x, *params):
        module.step.zero_()  # the same noise in every evaluation
        return functional_call(module, dict(zip(names, params, strict=True)), (x,))

    return call, [dict(module.named_parameters())[n] for n in names]


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "standout_own"])
def test_gradcheck_float64(name):
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    module = factory().double().train()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    call, params = _module_function(module)
    assert torch.autograd.gradcheck(call, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_standout_straight_through_gradient():
    # d out / d keep_logit is h ⊙ σ'(logit): the mask's gradient is that of its mean.
    h = torch.randn(4, 3)
    logit = torch.randn(4, 3, requires_grad=True)
    out = FL.standout(h, logit, seed=3)
    out.sum().backward()
    s = torch.sigmoid(logit.detach())
    torch.testing.assert_close(logit.grad, h * s * (1 - s))


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("name", list(LAYERS))
def test_reproducible_by_seed_and_step(name):
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    a = factory()
    b = factory()
    b.load_state_dict(a.state_dict())
    x = torch.randn(shape)
    first = a(x)
    assert torch.equal(first, b(x))  # same seed, same step
    assert int(a.step) == 1
    assert not torch.equal(a(x), first)  # the next step draws new noise
    a.step.zero_()
    assert torch.equal(a(x), first)  # step 0 again: the same noise


@pytest.mark.parametrize("name", list(LAYERS))
def test_state_dict_round_trip_keeps_learned_rates(name):
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    a = factory()
    x = torch.randn(shape)
    opt = torch.optim.SGD(a.parameters(), lr=0.5)
    for _ in range(3):  # move the rates away from their initial values
        loss = a(x).pow(2).mean() + dropkit.regularization(a, dataset_size=10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a(x)
    torch.manual_seed(123)
    b = factory()
    b.load_state_dict(a.state_dict())
    for ra, rb in zip(dropkit.learned_rates(a), dropkit.learned_rates(b), strict=True):
        torch.testing.assert_close(ra.rates, rb.rates, equal_nan=True)
    assert torch.equal(a(x), b(x))
    a.eval()
    b.eval()
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", list(LAYERS))
def test_eval_is_deterministic_and_mc_mode_samples(name):
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    module = factory()
    x = torch.randn(shape)
    module(x)  # one training forward (standout's rate report)
    module.eval()
    assert torch.equal(module(x), module(x))
    with dropkit.mc_mode(module):
        assert not module.training
        assert not torch.equal(module(x), module(x))
    assert torch.equal(module(x), module(x))


def test_uncertainty_sample_draws_per_sample_noise():
    torch.manual_seed(0)
    net = nn.Sequential(
        dropkit.nn.ConcreteDropout(nn.Linear(4, 8), init_p=0.3, seed=1),
        dropkit.nn.LinearSVDO(8, 2, seed=2),
    )
    x = torch.randn(5, 4)
    samples = dropkit.uncertainty.sample(net, x, samples=6, seed=0)
    assert samples.shape == (6, 5, 2)
    assert not torch.equal(samples[0], samples[1])
    again = dropkit.uncertainty.sample(net, x, samples=6, seed=0, batch_budget=1 << 12)
    torch.testing.assert_close(samples, again)  # any chunking gives the same samples


def test_svd_pruning_and_export():
    torch.manual_seed(0)
    layer = dropkit.nn.LinearSVDO(6, 4, seed=0)
    with torch.no_grad():
        layer.log_sigma2[:2] = 5.0  # rows 0 and 1: log α > 3, pruned
    net = nn.Sequential(layer, nn.ReLU()).eval()
    report = dropkit.sparsity(net)
    assert report.layers["0"] == (12, 24) and report.fraction == 0.5
    x = torch.randn(3, 6)
    dense, sparse = dropkit.export_pruned(net), dropkit.export_pruned(net, sparse=True)
    assert isinstance(dense[0], nn.Linear) and isinstance(sparse[0], dropkit.nn.SparseLinear)
    assert torch.equal(dense[0].weight[:2], torch.zeros(2, 6))
    torch.testing.assert_close(dense(x), net(x))
    torch.testing.assert_close(sparse(x), net(x))
    assert sparse[0].weight._nnz() == 12


def test_regularization_sums_each_technique_scaled_by_dataset_size():
    torch.manual_seed(0)
    concrete = dropkit.nn.ConcreteDropout(nn.Linear(4, 3), length_scale=0.1, seed=1)
    svd = dropkit.nn.LinearSVDO(3, 2, seed=2)
    vd = dropkit.nn.VariationalDropoutLinear(2, 2, seed=3)
    net = nn.Sequential(concrete, svd, vd)
    net(torch.randn(2, 4))
    n = 50
    p = concrete.p_logit.sigmoid()
    layer = concrete.layer
    expected_concrete = 0.01 / n * (
        layer.weight.pow(2).sum() / (1 - p) + layer.bias.pow(2).sum()
    ) + 2.0 / n * 4 * (p * p.log() + (1 - p) * (1 - p).log())
    total = dropkit.regularization(net, dataset_size=n)
    expected = expected_concrete + svd.kl() / n + vd.kl() / n
    torch.testing.assert_close(total, expected)
    half = dropkit.regularization(net, dataset_size=2 * n)
    torch.testing.assert_close(half, expected / 2)


def test_learned_rates_ranks_features():
    layer = dropkit.nn.ConcreteDropout(nn.Linear(4, 1), rate_shape=(4,), seed=0)
    with torch.no_grad():
        layer.p_logit.copy_(torch.tensor([0.0, -3.0, 2.0, -1.0]))
    (entry,) = dropkit.learned_rates(nn.Sequential(layer))
    assert entry.technique == "concrete" and entry.name == "0"
    assert entry.ranking().tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="no rate per input feature"):
        dropkit.learned_rates(dropkit.nn.ConcreteDropout(seed=0))[0].ranking()


def test_p_reads_the_mean_learned_rate():
    assert dropkit.nn.ConcreteDropout(init_p=0.25, seed=0).p == pytest.approx(0.25)
    assert dropkit.nn.VariationalDropoutLinear(3, 2, init_p=0.2, seed=0).p == pytest.approx(0.2)


def test_temperature_is_a_buffer_that_can_be_annealed():
    layer = dropkit.nn.ConcreteDropout(seed=0)
    layer.temperature = 0.5
    assert layer.state_dict()["temperature_t"] == 0.5
    assert layer.temperature == 0.5


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
        dropkit.nn.ConcreteDropout(temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        FL.concrete_dropout(torch.ones(2), torch.tensor(0.0), temperature=temperature)
    layer = dropkit.nn.ConcreteDropout(seed=0)
    with pytest.raises(ValueError, match="temperature"):
        layer.temperature = temperature


@pytest.mark.parametrize("init_p", [0.0, 1.0, -0.1, 1.5])
def test_bad_initial_rate(init_p):
    with pytest.raises(ValueError, match=r"init_p must be in \(0, 1\)"):
        dropkit.nn.ConcreteDropout(init_p=init_p)
    with pytest.raises(ValueError, match=r"init_p must be in \(0, 1\)"):
        dropkit.nn.VariationalDropoutLinear(3, 2, init_p=init_p)


@pytest.mark.parametrize("dataset_size", [0, -5])
def test_bad_dataset_size(dataset_size):
    net = dropkit.nn.LinearSVDO(3, 2, seed=0)
    with pytest.raises(ValueError, match="dataset_size must be an int > 0"):
        dropkit.regularization(net, dataset_size=dataset_size)
    with pytest.raises(TypeError, match="dataset_size"):
        dropkit.regularization(net, dataset_size=10.0)  # type: ignore[arg-type]


def test_regularization_without_learned_layer_is_an_error():
    with pytest.raises(ValueError, match="model has no learned-rate dropout module"):
        dropkit.regularization(
            nn.Sequential(nn.Linear(2, 2), dropkit.nn.Dropout(0.1)), dataset_size=3
        )


@pytest.mark.parametrize("threshold", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_log_alpha_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be a finite float"):
        dropkit.nn.LinearSVDO(3, 2, threshold=threshold)
    with pytest.raises(ValueError, match="threshold must be a finite float"):
        dropkit.sparsity(dropkit.nn.LinearSVDO(3, 2, seed=0), threshold=threshold)
    with pytest.raises(ValueError, match="max_log_alpha must be a finite float"):
        dropkit.nn.VariationalDropoutLinear(3, 2, max_log_alpha=threshold)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="alpha_shape must be one of"):
        dropkit.nn.VariationalDropoutLinear(3, 2, alpha_shape="row")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p_logit of shape"):
        FL.concrete_dropout(torch.ones(2, 3), torch.zeros(4))
    with pytest.raises(RuntimeError, match="run one training-mode forward first"):
        dropkit.nn.ConcreteDropout(nn.Linear(2, 2), seed=0).regularization(10)
    with pytest.raises(TypeError, match=r"layer must be a torch\.nn\.Module"):
        dropkit.nn.Standout("linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must be a finite float"):
        dropkit.nn.Standout(nn.Linear(2, 2), alpha=float("nan"))
    with pytest.raises(ValueError, match="log_alpha_clip"):
        dropkit.nn.LinearSVDO(3, 2, log_alpha_clip=(8.0, -8.0))
