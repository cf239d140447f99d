"""Acceptance of the learned-rate techniques on small real problems (CPU, fixed seeds).

Numbers in the comments were measured on the 2-core CPU box with
``PYTHONPATH=src python -m pytest tests/nn/test_learned_acceptance.py -q -s``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as torch_f

import dropkit
from dropkit import nn as dn

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


def _lenet_300_100(linear=nn.Linear) -> nn.Sequential:
    return nn.Sequential(linear(64, 300), nn.ReLU(), linear(300, 100), nn.ReLU(), linear(100, 10))


def _train(net, data, *, epochs, lr, warmup=0, regularize=True, batch=100):
    """Adam on minibatches; the regulariser's weight ramps linearly from 0 to 1 over
    ``warmup`` epochs (Molchanov et al.'s KL warm-up)."""
    x_train, x_test, y_train, y_test = data
    n = len(x_train)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        net.train()
        beta = min(1.0, epoch / warmup) if warmup else 1.0
        perm = torch.randperm(n, generator=order)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            loss = torch_f.cross_entropy(net(x_train[idx]), y_train[idx])
            if regularize:
                loss = loss + beta * dropkit.regularization(net, dataset_size=n)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return float((net(x_test).argmax(1) == y_test).float().mean())


def test_sparse_vd_lenet_300_100_on_digits_prunes_90_percent_within_2_points(digits):
    # Measured: dense 98.0% test accuracy; sparse VD 97.1% with 99.3% of weights pruned.
    torch.manual_seed(0)
    dense = _train(_lenet_300_100(), digits, epochs=30, lr=1e-3, regularize=False)
    torch.manual_seed(0)
    net = _lenet_300_100(dn.LinearSVDO)
    sparse = _train(net, digits, epochs=100, lr=5e-3, warmup=30)
    report = dropkit.sparsity(net)
    print(f"dense {dense:.4f}  sparse VD {sparse:.4f}  pruned {report.fraction:.4f}")
    assert report.fraction >= 0.90
    assert sparse >= dense - 0.02
    # The exported model (plain and sparse) predicts exactly as the sparse-VD model.
    x_test = digits[1]
    with torch.no_grad():
        reference = net(x_test)
        torch.testing.assert_close(dropkit.export_pruned(net)(x_test), reference)
        torch.testing.assert_close(dropkit.export_pruned(net, sparse=True)(x_test), reference)


@pytest.mark.parametrize("alpha_shape", ["weight", "unit"])
def test_kingma_vd_mlp_on_digits(digits, alpha_shape):
    # Measured: 98.4% test accuracy for both alpha shapes; dense baseline 98.0%.
    torch.manual_seed(0)

    def layer(i, o):
        return dn.VariationalDropoutLinear(i, o, alpha_shape=alpha_shape)

    accuracy = _train(_lenet_300_100(layer), digits, epochs=30, lr=3e-3)
    print(f"Kingma VD ({alpha_shape}) {accuracy:.4f}")
    assert accuracy >= 0.95


@pytest.mark.parametrize("own_weights", [False, True])
def test_standout_mlp_on_digits(digits, own_weights):
    # Measured: 96.9% test accuracy for both variants.
    torch.manual_seed(0)
    net = nn.Sequential(
        dn.Standout(nn.Linear(64, 300), own_weights=own_weights),
        dn.Standout(nn.Linear(300, 100), own_weights=own_weights),
        nn.Linear(100, 10),
    )
    accuracy = _train(net, digits, epochs=30, lr=1e-3, regularize=False)
    rates = [entry.mean for entry in dropkit.learned_rates(net)]
    print(f"standout (own weights {own_weights}) {accuracy:.4f}, drop rates {rates}")
    assert accuracy >= 0.95
    assert all(0.0 < r < 1.0 for r in rates)


def _concrete_toy_rate(n: int, steps: int = 500) -> float:
    """Gal et al.'s toy: y = 2x + 8 + N(0, 1); a 3-layer net with concrete dropout before
    every layer predicts mean and log-variance (heteroscedastic loss). Returns the mean rate."""
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, generator=data)
    y = 2 * x + 8 + torch.randn(n, 1, generator=data)
    net = nn.Sequential(
        dn.ConcreteDropout(nn.Linear(1, 64)),
        nn.ReLU(),
        dn.ConcreteDropout(nn.Linear(64, 64)),
        nn.ReLU(),
        dn.ConcreteDropout(nn.Linear(64, 2)),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, n, (min(n, 64),))
        out = net(x[idx])
        mean, log_var = out[:, :1], out[:, 1:]
        nll = (0.5 * torch.exp(-log_var) * (y[idx] - mean) ** 2 + 0.5 * log_var).mean()
        loss = nll + dropkit.regularization(net, dataset_size=n)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rates = [entry.mean for entry in dropkit.learned_rates(net)]
    return sum(rates) / len(rates)


def test_concrete_rate_grows_as_the_training_set_shrinks():
    # Measured mean rate: N=10 -> 0.337, N=1000 -> 0.025 (N=100 -> 0.254, N=10000 -> 0.021).
    small, large = _concrete_toy_rate(10), _concrete_toy_rate(1000)
    print(f"concrete toy: mean rate N=10 {small:.3f}, N=1000 {large:.3f}")
    assert small > large + 0.1
    assert small > 3 * large


def test_dropout_feature_ranking_finds_the_informative_features():
    # Chang et al. 2017 with concrete dropout on the inputs: make_classification with
    # shuffle=False puts the 5 informative features first. Measured precision@5 = 1.0
    # (informative drop rates 0.02-0.33, uninformative 0.38-0.46).
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=1000, n_features=20, n_informative=5, n_redundant=0, n_repeated=0,
        shuffle=False, random_state=0,
    )  # fmt: skip
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(0)
    gate = dn.ConcreteDropout(nn.Linear(20, 64), rate_shape=(20,), length_scale=1.0, precision=0.1)
    net = nn.Sequential(gate, nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    order = torch.Generator().manual_seed(0)
    for _ in range(60):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), 100):
            idx = perm[i : i + 100]
            loss = torch_f.cross_entropy(net(x[idx]), y[idx])
            loss = loss + dropkit.regularization(net, dataset_size=len(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
    (entry,) = dropkit.learned_rates(net)
    top = set(entry.ranking()[:5].tolist())
    precision_at_5 = len(top & set(range(5))) / 5
    print(f"feature ranking precision@5 {precision_at_5}, rates {entry.feature_rates}")
    assert precision_at_5 == 1.0


def test_meta_learned_rates_beat_a_fixed_rate():
    # Linear regression with little noise: a fixed rate of 0.5 underfits (test MSE 4.94);
    # the hypergradient lowers the rates (to 0.03 and 0.08) and reaches test MSE 0.075.
    data = torch.Generator().manual_seed(0)
    w = torch.randn(10, 1, generator=data)

    def sample(n):
        x = torch.randn(n, 10, generator=data)
        return x, x @ w + 0.1 * torch.randn(n, 1, generator=data)

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = sample(200), sample(200), sample(1000)

    def run(meta: bool) -> tuple[float, list[float]]:
        torch.manual_seed(0)
        net = nn.Sequential(
            dn.ConcreteDropout(nn.Linear(10, 32), init_p=0.5),
            nn.ReLU(),
            dn.ConcreteDropout(nn.Linear(32, 1), init_p=0.5),
        )
        tuner = dropkit.MetaRateTuner(net, torch_f.mse_loss, inner_lr=0.05, rate_lr=0.05)
        opt = torch.optim.SGD(tuner.weight_parameters(), lr=0.05)  # rates fixed unless tuned
        batches = torch.Generator().manual_seed(1)
        for _ in range(300):
            idx = torch.randint(0, 200, (32,), generator=batches)
            if meta:
                vidx = torch.randint(0, 200, (64,), generator=batches)
                tuner.step((x_train[idx], y_train[idx]), (x_val[vidx], y_val[vidx]))
            loss = torch_f.mse_loss(net(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            mse = float(torch_f.mse_loss(net(x_test), y_test))
        return mse, [entry.mean for entry in dropkit.learned_rates(net)]

    fixed_mse, fixed_rates = run(meta=False)
    meta_mse, meta_rates = run(meta=True)
    print(f"fixed p=0.5: MSE {fixed_mse:.4f}; meta: MSE {meta_mse:.4f}, rates {meta_rates}")
    assert fixed_rates == pytest.approx([0.5, 0.5])
    assert all(r < 0.25 for r in meta_rates)
    assert meta_mse < 0.5 * fixed_mse
