"""Philox4x32-10 reference: known answers, Triton bit-equality, mask and conversion rules."""

from __future__ import annotations

import math

import pytest
import torch

from dropkit import rng

KAT = [
    # counter (c0..c3), key (k0, k1), expected output words — Random123 kat_vectors.
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
    ((5, 7, 0, 0), (0xA4093822, 0x299F31D0), (0xC7A295F6, 0x5662F31A, 0xC090F30C, 0x6FEE9F9F)),
    ((5, 0, 3, 9), (0xA4093822, 0x299F31D0), (0x2F2DA57E, 0xCC42A86F, 0x1AECF427, 0x362E81E8)),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_known_answer_vectors(counter, key, expected):
    words = rng.philox4x32(*(torch.tensor([c], dtype=torch.int64) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected


def test_known_answers_through_seed_block_step():
    seed = 0x299F31D0A4093822
    words = rng.random_words(seed, 0, 7 * 2**32 + 5, 1)
    assert [int(w) for w in words[0]] == [0xC7A295F6, 0x5662F31A, 0xC090F30C, 0x6FEE9F9F]
    words = rng.random_words(seed, 9 * 2**32 + 3, 5, 1)
    assert [int(w) for w in words[0]] == [0x2F2DA57E, 0xCC42A86F, 0x1AECF427, 0x362E81E8]


def test_seed_at_or_above_2_63_is_two_complement():
    seed = 0xFFFFFFFFFFFFFFFF
    words = rng.random_words(seed, 0xFFFFFFFFFFFFFFFF >> 1, 0, 1)
    again = rng.random_words(rng.seed_tensor(seed), 2**63 - 1, 0, 1)
    assert torch.equal(words, again)
    assert int(rng.seed_tensor(seed)) == -1


def test_bernoulli_halves_layout():
    words = rng.random_words(123, 4, 0, 2)
    halves = rng._element_words(123, 4, 16, 0, rng.BERNOULLI_PER_BLOCK, None)
    for i in range(16):
        word = int(words[i // 8, (i % 8) // 2])
        expected = word & 0xFFFF if i % 2 == 0 else word >> 16
        assert int(halves[i]) == expected


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0, 1 / 3, 7.7e-6])
def test_threshold_and_p_eff(p):
    t = rng.threshold(p)
    assert t == round(float(torch.tensor(p, dtype=torch.float32)) * 65536)
    assert abs(rng.p_eff(p) - p) <= 0.5 / 65536 + 1e-9
    assert int(rng.threshold_tensor(torch.tensor(p))) == t


def test_p_zero_keeps_all_and_one_drops_all():
    assert bool(rng.keep_mask((1000,), 0.0, seed=5).all())
    assert not bool(rng.keep_mask((1000,), 1.0, seed=5).any())


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_keep_fraction_within_binomial_5_sigma(p):
    n = 1 << 20
    kept = rng.keep_mask((n,), p, seed=2024, step=3).double().mean().item()
    q = 1 - rng.p_eff(p)
    assert abs(kept - q) <= 5 * math.sqrt(q * (1 - q) / n)


def test_offset_slices_the_same_stream():
    whole = rng.keep_mask((1001,), 0.5, seed=9, step=2)
    for start, length in [(0, 7), (3, 100), (8, 9), (997, 4)]:
        part = rng.keep_mask((length,), 0.5, seed=9, step=2, offset=start)
        assert torch.equal(part, whole[start : start + length])
    u = rng.uniform((103,), seed=9, step=2)
    assert torch.equal(rng.uniform((10,), seed=9, step=2, offset=50), u[50:60])
    z = rng.normal((103,), seed=9, step=2)
    assert torch.equal(rng.normal((10,), seed=9, step=2, offset=51), z[51:61])


def test_uniform_range_and_moments():
    u = rng.uniform((1 << 18,), seed=1)
    assert u.dtype == torch.float32 and float(u.min()) >= 0 and float(u.max()) <= 1
    n = u.numel()
    assert abs(float(u.double().mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)


def test_normal_moments():
    z = rng.normal((1 << 18,), seed=1).double()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)


def test_steps_and_seeds_change_the_stream():
    a = rng.keep_mask((256,), 0.5, seed=1, step=0)
    assert not torch.equal(a, rng.keep_mask((256,), 0.5, seed=1, step=1))
    assert not torch.equal(a, rng.keep_mask((256,), 0.5, seed=2, step=0))


def test_draw_seed_follows_manual_seed():
    torch.manual_seed(7)
    first = rng.draw_seed()
    torch.manual_seed(7)
    assert rng.draw_seed() == first
    assert 0 <= first < 2**64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": -1}, ValueError, r"seed must be an integer in \[0, 18446744073709551615\]"),
        ({"seed": 2**64}, ValueError, r"seed must be an integer in"),
        ({"seed": 1.5}, TypeError, r"seed must be an int"),
        ({"seed": 1, "step": -1}, ValueError, r"step must be an integer in \[0, "),
        ({"seed": 1, "step": 0.5}, TypeError, r"step must be a non-negative int"),
        ({"seed": 1, "offset": -3}, ValueError, r"offset must be a non-negative int"),
    ],
)
def test_bad_seed_step_offset(kwargs, error, match):
    with pytest.raises(error, match=match):
        rng.keep_mask((4,), 0.5, **kwargs)


def test_device_independent_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cpu = rng.keep_mask((4099,), 0.3, seed=11, step=5)
    gpu = rng.keep_mask((4099,), 0.3, seed=11, step=5, device="cuda")
    assert torch.equal(cpu, gpu.cpu())
