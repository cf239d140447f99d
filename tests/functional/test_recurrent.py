"""Weight dropout (AWD-LSTM), zoneout and variational RNNs: masks, gradients, state_dict,
training on generated tasks, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import dropkit
import dropkit.functional as F
from dropkit import rng


def _sigma_bound(q: float, n: int) -> float:
    return 5 * math.sqrt(q * (1 - q) / n)


# ---------------------------------------------------------------- weight dropout (AWD-LSTM)


def test_weight_drop_gradient_reaches_the_raw_weight():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6)
    wrapped = dropkit.nn.WeightDrop(lstm, ["weight_hh_l0"], p=0.5, seed=1)
    out, _ = wrapped(torch.randn(7, 3, 4))
    out.sum().backward()
    # The known AWD bug re-wraps the weight in a new Parameter and cuts this gradient.
    grad = lstm.weight_hh_l0.grad
    assert grad is not None and bool((grad != 0).any())
    # The parameter is the module's own and is still what nn.LSTM runs at inference.
    assert dict(wrapped.named_parameters())["module.weight_hh_l0"] is lstm.weight_hh_l0
    assert lstm._flat_weights[1] is lstm.weight_hh_l0


def test_weight_drop_masks_once_per_call_and_equals_the_masked_lstm():
    torch.manual_seed(1)
    lstm = nn.LSTM(3, 5, num_layers=2)
    x = torch.randn(6, 2, 3)
    wrapped = dropkit.nn.WeightDrop(lstm, ["weight_hh_l0", "weight_hh_l1"], p=0.4, seed=7)
    step = int(wrapped.step)
    out, _ = wrapped(x)
    reference = nn.LSTM(3, 5, num_layers=2)
    reference.load_state_dict(lstm.state_dict())
    scale = 1 / (1 - rng.p_eff(0.4))
    first = rng.keep_mask(lstm.weight_hh_l0.shape, 0.4, seed=7, step=step)
    second = rng.keep_mask(
        lstm.weight_hh_l1.shape, 0.4, seed=7, step=step, offset=lstm.weight_hh_l0.numel()
    )
    with torch.no_grad():
        reference.weight_hh_l0.mul_(first * scale)
        reference.weight_hh_l1.mul_(second * scale)
    torch.testing.assert_close(out, reference(x)[0])
    # Inference runs the raw weights (nn.LSTM's cached flat weights are not left masked).
    wrapped.eval()
    plain = nn.LSTM(3, 5, num_layers=2)
    plain.load_state_dict(lstm.state_dict())
    torch.testing.assert_close(wrapped(x)[0], plain(x)[0])


def test_weight_drop_state_dict_round_trips_with_a_plain_lstm():
    torch.manual_seed(2)
    wrapped = dropkit.nn.WeightDrop(nn.LSTM(3, 4), "weight_hh_l0", p=0.3)
    plain = nn.LSTM(3, 4)
    plain.load_state_dict(wrapped.module.state_dict())
    assert torch.equal(plain.weight_hh_l0, wrapped.module.weight_hh_l0)
    other = nn.LSTM(3, 4)
    wrapped.module.load_state_dict(other.state_dict())
    assert torch.equal(wrapped.module.weight_hh_l0, other.weight_hh_l0)
    keys = set(wrapped.state_dict())
    assert {"module.weight_hh_l0", "rate", "seed", "step"} <= keys


def test_weight_drop_wrong_name_lists_available_names():
    with pytest.raises(ValueError, match="available weight names: weight_ih_l0, weight_hh_l0"):
        dropkit.nn.WeightDrop(nn.LSTM(3, 4), ["weight_hh"], p=0.5)


def test_weight_drop_silences_the_flatten_warning_only():
    wrapped = dropkit.nn.WeightDrop(nn.GRU(3, 4), ["weight_hh_l0"], p=0.5, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped(torch.randn(2, 1, 3))


class _LanguageModel(nn.Module):
    """AWD-LSTM in miniature: embedding dropout, locked dropout, weight-dropped LSTMs."""

    def __init__(self, vocab: int, size: int) -> None:
        super().__init__()
        self.embed = dropkit.nn.EmbeddingDropout(vocab, size, p=0.1)
        self.lock_in = dropkit.nn.LockedDropout(0.2, time_dim=0)
        self.rnn1 = dropkit.nn.WeightDrop(nn.LSTM(size, size), ["weight_hh_l0"], p=0.3)
        self.lock_mid = dropkit.nn.LockedDropout(0.2, time_dim=0)
        self.rnn2 = dropkit.nn.WeightDrop(nn.LSTM(size, size), ["weight_hh_l0"], p=0.3)
        self.lock_out = dropkit.nn.LockedDropout(0.2, time_dim=0)
        self.decoder = nn.Linear(size, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.lock_in(self.embed(tokens))
        h = self.lock_mid(self.rnn1(h)[0])
        return self.decoder(self.lock_out(self.rnn2(h)[0]))


def _generated_corpus(length: int, vocab: int) -> torch.Tensor:
    # A deterministic "grammar": token t+1 = (3 * t + 1) mod vocab, with a reset every 9 tokens
    # to a token chosen by the position: predictable from context, entropy ~0 once learnt.
    tokens = []
    current = 0
    for i in range(length):
        current = (i // 9 * 5) % vocab if i % 9 == 0 else (3 * current + 1) % vocab
        tokens.append(current)
    return torch.tensor(tokens)


def test_awd_lstm_language_model_trains_with_all_dropouts_on():
    torch.set_num_threads(1)  # small ops: threads only contend on a shared CI machine
    torch.manual_seed(0)
    vocab, seq_len, batch = 12, 12, 16
    corpus = _generated_corpus(4000, vocab)
    model = _LanguageModel(vocab, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    loss_fn = nn.CrossEntropyLoss()
    raw_weight = model.rnn1.module.weight_hh_l0
    for step in range(60):
        starts = torch.randint(0, len(corpus) - seq_len - 1, (batch,))
        window = torch.stack([corpus[s : s + seq_len + 1] for s in starts.tolist()], dim=1)
        logits = model(window[:-1])
        loss = loss_fn(logits.reshape(-1, vocab), window[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert raw_weight.grad is not None and bool((raw_weight.grad != 0).any())
        optimizer.step()
    model.eval()
    with torch.no_grad():
        window = corpus[:401].reshape(-1, 1)
        logits = model(window[:-1])
        eval_loss = float(loss_fn(logits.reshape(-1, vocab), window[1:].reshape(-1)))
    # Uniform guessing gives ln(12) = 2.48; the resets (1 in 9 tokens) are learnable from
    # the position only through context, so the bound leaves room for them.
    assert eval_loss < 0.6, eval_loss


# ---------------------------------------------------------------- zoneout


def test_zoneout_keeps_previous_units_with_rate_p():
    n, p = 50000, 0.3
    h_new, h_prev = torch.full((n,), 2.0), torch.full((n,), -1.0)
    h = F.zoneout(h_new, h_prev, p, seed=3, step=2)
    assert bool(((h == 2.0) | (h == -1.0)).all())
    kept_prev = float((h == -1.0).double().mean())
    assert abs(kept_prev - rng.p_eff(p)) <= _sigma_bound(p, n)
    expectation = F.zoneout(h_new, h_prev, p, training=False)
    torch.testing.assert_close(expectation, torch.full((n,), 2.0 * (1 - p) - p), rtol=1e-4, atol=0)
    assert F.zoneout(h_new, h_prev, 0.0) is h_new


def test_zoneout_gradcheck_and_no_saved_mask():
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: F.zoneout(x, y, 0.4, seed=1), (a, b))
    saved = []
    big_a = torch.randn(64, 32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.zoneout(big_a, torch.zeros(64, 32), 0.4, seed=1)
    assert all(t.numel() <= 1 for t in saved)


def test_zoneout_lstm_cell_train_and_eval():
    torch.manual_seed(0)
    cell = dropkit.nn.ZoneoutLSTMCell(3, 5, p=0.5, p_cell=0.2, seed=4)
    x, h0, c0 = torch.randn(8, 3), torch.randn(8, 5), torch.randn(8, 5)
    h_tilde, c_tilde = cell.cell(x, (h0, c0))
    h, c = cell(x, (h0, c0))
    for new, prev, out in ((h_tilde, h0, h), (c_tilde, c0, c)):
        is_new = torch.isclose(out, new, atol=1e-6, rtol=0)
        is_prev = out == prev
        assert bool((is_new | is_prev).all())
    cell.eval()
    h_eval, c_eval = cell(x, (h0, c0))
    torch.testing.assert_close(h_eval, 0.5 * h0 + 0.5 * h_tilde)
    torch.testing.assert_close(c_eval, 0.2 * c0 + 0.8 * c_tilde, rtol=1e-4, atol=1e-5)


def test_zoneout_bad_rates():
    with pytest.raises(ValueError, match="p_cell must be in"):
        dropkit.nn.ZoneoutLSTMCell(3, 4, p=0.1, p_cell=1.5)
    with pytest.raises(ValueError, match="p must be in"):
        dropkit.nn.ZoneoutGRUCell(3, 4, p=-0.1)
    with pytest.raises(ValueError, match="p_hidden must be in"):
        F.zoneout_cell(nn.GRUCell(3, 4), torch.ones(1, 3), None, 2.0)
    with pytest.raises(ValueError, match="h_prev must have the shape"):
        F.zoneout(torch.ones(2, 3), torch.ones(3, 2), 0.1)


# ---------------------------------------------------------------- variational RNNs


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize(("bidirectional", "batch_first"), [(False, False), (True, True)])
def test_unrolled_path_equals_pytorch_rnn(mode, bidirectional, batch_first):
    torch.manual_seed(3)
    cls = dropkit.nn.VariationalLSTM if mode == "lstm" else dropkit.nn.VariationalGRU
    model = cls(3, 4, num_layers=2, batch_first=batch_first, bidirectional=bidirectional,
                p=1e-9, p_input=0.0, p_layer=0.0, p_output=0.0)  # fmt: skip
    x = torch.randn(5, 2, 3)
    # p = 1e-9 rounds to threshold 0 (keeps every unit) but takes the unrolled path.
    out, state = model(x)
    ref_out, ref_state = model.rnn(x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(
        state if mode == "lstm" else (state,),
        ref_state if mode == "lstm" else (ref_state,),
        strict=True,
    ):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    model.eval()
    torch.testing.assert_close(model(x)[0], ref_out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p_hidden", [0.0, 0.3])
def test_variational_lstm_same_input_mask_at_every_step(p_hidden):
    model = dropkit.nn.VariationalLSTM(
        6, 5, num_layers=2, p=p_hidden, p_input=0.5, p_layer=0.3, p_output=0.3, seed=1
    )
    x = torch.randn(9, 4, 6, requires_grad=True)
    grads = []
    x.register_hook(grads.append)
    out, _ = model(x)
    out.sum().backward()
    (grad,) = grads
    dropped = grad == 0
    # One mask per sequence: the same units get no gradient at every time step.
    assert bool(dropped.any()) and bool((~dropped).any())
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))
    expected = ~rng.keep_mask((1, 4, 6), 0.5, seed=1, step=0)
    assert torch.equal(dropped[0], expected[0])


def test_variational_recurrent_mask_changes_the_output_and_is_reproducible():
    torch.manual_seed(0)
    model = dropkit.nn.VariationalGRU(3, 4, p=0.5, p_input=0.0, p_layer=0.0, p_output=0.0)
    x = torch.randn(6, 2, 3)
    first, _ = model(x)
    plain, _ = model.rnn(x)
    assert not torch.allclose(first, plain)
    model.step.zero_()
    again, _ = model(x)
    assert torch.equal(first, again)


def test_variational_gradcheck_small():
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3).double()
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def run(inp: torch.Tensor) -> torch.Tensor:
        return F.variational_rnn(inp, None, lstm.all_weights, hidden_size=3, p_input=0.3,
                                 p_hidden=0.4, p_output=0.2, seed=5)[0]  # fmt: skip

    assert torch.autograd.gradcheck(run, (x,))


def test_variational_lstm_trains_a_sequence_task():
    # Predict the next value of sine waves of random phase and frequency.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = dropkit.nn.VariationalLSTM(1, 16, num_layers=2, batch_first=True, p=0.1,
                                       p_input=0.0, p_layer=0.1, p_output=0.1)  # fmt: skip
    head = nn.Linear(16, 1)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=0.03)

    def batch(n: int) -> torch.Tensor:
        t = torch.arange(14, dtype=torch.float32)
        phase = torch.rand(n, 1) * 2 * math.pi
        freq = 0.2 + 0.3 * torch.rand(n, 1)
        return torch.sin(freq * t + phase).unsqueeze(-1)

    for _ in range(60):
        series = batch(32)
        pred = head(model(series[:, :-1])[0])
        loss = nn.functional.mse_loss(pred[:, 5:], series[:, 6:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        series = batch(256)
        pred = head(model(series[:, :-1])[0])
        eval_loss = float(nn.functional.mse_loss(pred[:, 5:], series[:, 6:]))
    # Predicting 0 gives 0.5; predicting the previous value gives about 0.15.
    assert eval_loss < 0.02, eval_loss


def test_variational_bad_input():
    model = dropkit.nn.VariationalLSTM(3, 4)
    with pytest.raises(ValueError, match="input must be 3-D"):
        model(torch.randn(5, 3))
    with pytest.raises(ValueError, match="h_0 must have shape"):
        model(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="p_output must be in"):
        dropkit.nn.VariationalGRU(3, 4, p_output=1.2)
