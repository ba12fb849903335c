"""Learning-rate schedules against their closed forms, written here."""
import math
import re

import pytest

from mlp.schedule import Schedule


def test_constant_is_lr_at_every_step():
    s = Schedule(0.1)
    assert [s(k) for k in (0, 1, 1000)] == [0.1, 0.1, 0.1]


def test_warm_up_climbs_linearly_to_lr_then_the_schedule_takes_over():
    s = Schedule(0.2, "constant", total_steps=100, warmup_steps=4)
    assert [s(k) for k in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])


def test_step_multiplies_by_gamma_every_step_size_steps_after_the_warm_up():
    s = Schedule(1.0, "step", total_steps=100, warmup_steps=2, step_size=3, gamma=0.5)
    expected = [0.5, 1.0] + [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert [s(k) for k in range(9)] == pytest.approx(expected)


@pytest.mark.parametrize("warmup", [0, 5])
def test_cosine_runs_half_a_cosine_from_lr_to_min_lr_at_the_last_step(warmup):
    total, lr, low = 25, 0.3, 0.01
    s = Schedule(lr, "cosine", total_steps=total, warmup_steps=warmup, min_lr=low)
    span = total - 1 - warmup
    for k in range(warmup, total):
        assert s(k) == pytest.approx(low + (lr - low) * (1 + math.cos(math.pi * (k - warmup) / span)) / 2)
    assert s(warmup) == pytest.approx(lr) and s(total - 1) == pytest.approx(low)
    assert s(total + 10) == pytest.approx(low)  # past the end (a resumed run given more epochs)


@pytest.mark.parametrize("kwargs, words", [
    (dict(lr=0.1, kind="linear"), "unknown schedule 'linear'"),
    (dict(lr=0.0), "expected a positive finite number, got 0.0"),
    (dict(lr=math.inf), "got inf"),
    (dict(lr=0.1, step_size=0), "step_size >= 1"),
    (dict(lr=0.1, gamma=0.0), "gamma in (0, 1]"),
    (dict(lr=0.1, min_lr=0.2), "min_lr in [0, lr]"),
])
def test_bad_settings_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        Schedule(**kwargs)


@pytest.mark.parametrize("after", [1, 2])
def test_cosine_with_one_or_two_steps_after_the_warm_up(after):
    """The cosine's span is its steps after the warm-up, less one: with one step it stays at
    lr, with two it goes from lr to min_lr in one."""
    s = Schedule(0.4, "cosine", total_steps=4 + after, warmup_steps=4, min_lr=0.1)
    assert [s(k) for k in range(4 + after)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.1][: 4 + after])
