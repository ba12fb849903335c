"""Learning-rate schedules: the rate of each optimizer step, as a function of the step.

A schedule starts with an optional linear warm-up (the rate climbs from lr / warm-up steps to
lr), then keeps lr (constant), multiplies it by `gamma` every `step_size` steps (step), or
follows half a cosine from lr down to `min_lr` at the last step (cosine, Loshchilov and
Hutter's SGDR without restarts). It depends on the step count alone, so a resumed run, which
keeps the optimizer's count, continues on the same curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    lr: float
    kind: str = "constant"
    total_steps: int = 1  # the run's last step (cosine)
    warmup_steps: int = 0
    step_size: int = 1  # steps between decays (step)
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; known: {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"Schedule(lr): expected a positive finite number, got {self.lr!r}")
        if self.total_steps < 1 or self.warmup_steps < 0 or self.step_size < 1:
            raise ValueError(f"Schedule: expected total_steps >= 1, warmup_steps >= 0 and step_size >= 1, got "
                             f"{self.total_steps}, {self.warmup_steps} and {self.step_size}")
        if not 0 < self.gamma <= 1 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"Schedule: expected gamma in (0, 1] and min_lr in [0, lr], got {self.gamma!r} and {self.min_lr!r}")

    def __call__(self, step: int) -> float:
        """The learning rate of step `step` (0 for the run's first)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        after = step - self.warmup_steps
        if self.kind == "step":
            return self.lr * self.gamma ** (after // self.step_size)
        if self.kind == "cosine":
            progress = min(1.0, after / max(1, self.total_steps - 1 - self.warmup_steps))
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr
