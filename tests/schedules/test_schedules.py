"""Each schedule against hand-computed values; the paper shapes; bad arguments."""

from __future__ import annotations

import itertools
import math

import pytest

from dropkit import schedules as S


def test_constant():
    assert [S.constant(0.3)(t) for t in (0, 1, 10**6)] == [0.3, 0.3, 0.3]


def test_linear_hand_values():
    schedule = S.linear(0.1, 0.5, 4, begin=2)
    assert [schedule(t) for t in range(8)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5]
    )


def test_cosine_hand_values():
    schedule = S.cosine(0.5, 0.1, 4)
    # 0.1 + 0.4 * (1 + cos(pi t / 4)) / 2
    expected = [
        0.5,
        0.1 + 0.2 * (1 + math.cos(math.pi / 4)),
        0.3,
        0.1 + 0.2 * (1 - math.cos(math.pi / 4)),
        0.1,
        0.1,
    ]
    assert [schedule(t) for t in range(6)] == pytest.approx(expected)


def test_step_hand_values():
    schedule = S.step([0.5, 0.3, 0.1], [10, 20])
    assert [schedule(t) for t in (0, 9, 10, 19, 20, 1000)] == [0.5, 0.5, 0.3, 0.3, 0.1, 0.1]


def test_warmup_hand_values():
    schedule = S.warmup(0.4, 4, start=0.2)
    assert [schedule(t) for t in range(6)] == pytest.approx([0.2, 0.25, 0.3, 0.35, 0.4, 0.4])


def test_exponential_hand_values():
    decaying = S.exponential(0.4, 0.5, 10, end=0.06)
    assert [decaying(t) for t in (0, 10, 20, 30, 40)] == pytest.approx([0.4, 0.2, 0.1, 0.06, 0.06])
    growing = S.exponential(0.1, 2.0, 1, end=0.5)
    assert [growing(t) for t in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_curriculum_matches_morerio_retain_probability():
    target, gamma = 0.5, 0.01
    schedule = S.curriculum(target, gamma)
    theta_bar = 1 - target
    for t in (0, 1, 50, 100, 1000, 10_000):
        retain = (1 - theta_bar) * math.exp(-gamma * t) + theta_bar
        assert schedule(t) == pytest.approx(1 - retain, abs=1e-12)
    # Shape: starts with no dropout, rises monotonically, approaches but never passes the target.
    values = [schedule(t) for t in range(0, 2000, 10)]
    assert values[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-1] < target and values[-1] == pytest.approx(target, abs=1e-6)


def test_early_dropout_shape():
    constant = S.early(0.1, 100)
    assert [constant(t) for t in (0, 50, 99, 100, 10**5)] == [0.1, 0.1, 0.1, 0.0, 0.0]
    linear = S.early(0.2, 4, shape="linear")
    assert [linear(t) for t in range(6)] == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0, 0.0])


def test_late_dropout_shape():
    schedule = S.late(0.3, 100)
    assert [schedule(t) for t in (0, 99, 100, 10**5)] == [0.0, 0.0, 0.3, 0.3]


def test_join_restarts_each_piece_at_zero():
    schedule = S.join([S.warmup(0.2, 10), S.constant(0.2), S.linear(0.2, 0.0, 10)], [10, 50])
    assert [schedule(t) for t in (0, 5, 10, 49, 50, 55, 60, 99)] == pytest.approx(
        [0.0, 0.1, 0.2, 0.2, 0.2, 0.1, 0.0, 0.0]
    )


def test_piecewise_linear_interpolation():
    schedule = S.piecewise([(10, 0.0), (20, 0.5), (40, 0.1)])
    assert [schedule(t) for t in (0, 10, 15, 20, 30, 40, 100)] == pytest.approx(
        [0.0, 0.0, 0.25, 0.5, 0.3, 0.1, 0.1]
    )


def test_depth_schedules_hand_values():
    assert S.linear_by_depth(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert S.linear_by_depth(0.2, 1) == [0.2]
    assert S.stagewise(0.5, [2, 1, 3]) == [[0.0, 0.1], [0.2], [0.3, 0.4, 0.5]]
    assert S.stagewise(0.4, [2, 1, 3], per_block=False) == [[0.0, 0.0], [0.2], [0.4, 0.4, 0.4]]


def test_repr_describes_schedule():
    assert repr(S.curriculum(0.5, 0.01)) == "curriculum(target=0.5, gamma=0.01)"
    assert "warmup" in repr(S.warmup(0.1, 5))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        # The rate argument is p (issue 14 item 7); rate= stays as its alias.
        (lambda: S.constant(1.5), r"p must be in \[0, 1\]"),
        (lambda: S.constant(rate=1.5), r"p must be in \[0, 1\]"),
        (lambda: S.linear(0.1, -0.1, 10), r"end must be in \[0, 1\]"),
        (lambda: S.linear(0.1, 0.2, 0), r"steps must be a positive int"),
        (
            lambda: S.warmup(0.1, 200, total_steps=100),
            r"warmup_steps \(200\) is longer than the run",
        ),
        (lambda: S.early(0.1, 200, total_steps=100), r"until \(200\) is longer than the run"),
        (lambda: S.late(0.1, 200, total_steps=100), r"start \(200\) is longer than the run"),
        (lambda: S.early(0.1, 10, shape="cosine"), r"shape must be one of"),
        (lambda: S.step([0.1, 0.2], [5, 10]), r"rates needs one more entry than boundaries"),
        (lambda: S.step([0.1, 0.2, 0.3], [10, 5]), r"boundaries must strictly increase"),
        (lambda: S.exponential(0.4, -1.0), r"decay must be a positive float"),
        (lambda: S.exponential(0.1, 0.5, end=0.3), r"end=0.3 lies on the wrong side"),
        (lambda: S.curriculum(0.5, 0.0), r"gamma must be a positive float"),
        (lambda: S.join([S.constant(0.1)], [10]), r"schedules needs one more entry"),
        (lambda: S.piecewise([]), r"points must hold at least one"),
        (lambda: S.piecewise([(5, 0.1), (5, 0.2)]), r"points' steps must strictly increase"),
        (lambda: S.linear_by_depth(0.1, 0), r"num_blocks must be a positive int"),
        (lambda: S.stagewise(0.1, []), r"stage_depths must be a non-empty list"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match=r"step must be a non-negative int"):
        S.constant(0.1)(-1)
