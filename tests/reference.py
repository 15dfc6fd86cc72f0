"""Plain-Python twins of the compiled kernels in ``sched_env/_kernels.py``: slow, obviously correct.

They share no code with the kernels: a shop is a few lists and a dict of machine intervals,
and the earliest start is found by trying every candidate time instead of walking a linked
list. Tests drive both with the same actions and compare everything observable.
"""

from __future__ import annotations

import numpy as np

from instances import JobShopInstance

PLACEMENTS = ("append", "active")
ACTION_SETS = ("any", "giffler_thompson", "non_delay")


class ReferenceShop:
    """One shop: reset, earliest start, dispatch, mask, features, lower bound, step."""

    def __init__(
        self, instance: JobShopInstance, max_jobs: int, max_ops: int, placement: str, action_set: str, reward: str
    ):
        self.instance = instance
        self.J, self.O = max_jobs, max_ops
        self.placement, self.action_set, self.reward = placement, action_set, reward
        self.time_scale = max(1, instance.simple_lower_bound())
        self.duration_scale = max(1, int(instance.durations.max()))
        self.reset()

    # -------------------------------------------------------------- helpers
    def n_ops(self, j: int) -> int:
        return int(self.instance.n_ops[j]) if j < self.instance.n_jobs else 0

    def op(self, j: int, k: int) -> tuple[int, int]:
        return int(self.instance.machines[j, k]), int(self.instance.durations[j, k])

    def unfinished(self) -> list[int]:
        return [j for j in range(self.J) if self.next_op[j] < self.n_ops(j)]

    # -------------------------------------------------------------- kernels' twins
    def reset(self) -> None:
        inst = self.instance
        self.next_op = [0] * self.J
        release = inst.release_dates if inst.release_dates is not None else np.zeros(inst.n_jobs, dtype=int)
        self.ready = [int(release[j]) if j < inst.n_jobs else 0 for j in range(self.J)]
        self.intervals: dict[int, list[tuple[int, int]]] = {m: [] for m in range(inst.n_machines)}
        self.start = np.full((self.J, self.O), -1, dtype=np.int64)
        self.end = np.full((self.J, self.O), -1, dtype=np.int64)
        self.makespan = 0
        self.bound = self.lower_bound()

    def earliest_start(self, j: int) -> int:
        machine, duration = self.op(j, self.next_op[j])
        busy = self.intervals[machine]
        ready = self.ready[j]
        if self.placement == "append":
            return max([ready] + [e for _, e in busy])
        # Try every candidate start (the ready time, or when something on the machine ends)
        # and keep the earliest one that overlaps nothing: [t, t+d) vs [s, e) overlap iff
        # t < e and s < t + d, the validator's rule.
        candidates = sorted({ready} | {e for _, e in busy if e >= ready})
        for t in candidates:
            if all(not (t < e and s < t + duration) for s, e in busy):
                return t
        raise AssertionError("unreachable: the latest end is always free")

    def remaining_work(self, j: int) -> int:
        return sum(self.op(j, k)[1] for k in range(self.next_op[j], self.n_ops(j)))

    def est(self, j: int) -> int:
        return self.earliest_start(j) if self.next_op[j] < self.n_ops(j) else self.ready[j]

    def lower_bound(self) -> int:
        bound = self.makespan
        for j in range(self.J):
            if self.n_ops(j) > 0:
                bound = max(bound, self.est(j) + self.remaining_work(j))
        return bound

    def dispatch(self, j: int) -> int:
        k = self.next_op[j]
        machine, duration = self.op(j, k)
        start = self.earliest_start(j)
        self.start[j, k], self.end[j, k] = start, start + duration
        self.intervals[machine].append((start, start + duration))
        self.ready[j] = start + duration
        self.next_op[j] += 1
        self.makespan = max(self.makespan, start + duration)
        return start

    def mask(self) -> np.ndarray:
        mask = np.zeros(self.J, dtype=np.int8)
        jobs = self.unfinished()
        if not jobs:
            return mask
        if self.action_set == "any":
            mask[jobs] = 1
        elif self.action_set == "non_delay":
            t = min(self.est(j) for j in jobs)
            mask[[j for j in jobs if self.est(j) == t]] = 1
        else:  # Giffler-Thompson, ties to the lowest job index
            completion = {j: self.est(j) + self.op(j, self.next_op[j])[1] for j in jobs}
            best = min(jobs, key=lambda j: (completion[j], j))
            machine = self.op(best, self.next_op[best])[0]
            for j in jobs:
                if self.op(j, self.next_op[j])[0] == machine and (self.est(j) < completion[best] or j == best):
                    mask[j] = 1
        return mask

    def features(self, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((self.J, 10), dtype=np.float64)
        jobs = self.unfinished()
        now = min((self.est(j) for j in jobs), default=self.makespan)
        n_jobs = max(self.instance.n_jobs, 1)
        for j in range(self.J):
            if self.n_ops(j) == 0:
                continue
            if self.next_op[j] >= self.n_ops(j):
                out[j, 9] = 1
                continue
            machine, duration = self.op(j, self.next_op[j])
            machine_left = sum(
                self.op(i, k)[1]
                for i in range(self.instance.n_jobs)
                for k in range(self.next_op[i], self.n_ops(i))
                if self.op(i, k)[0] == machine
            )
            waiting = sum(1 for i in jobs if self.op(i, self.next_op[i])[0] == machine)
            machine_end = max([0] + [e for _, e in self.intervals[machine]])
            out[j] = [
                mask[j],
                duration / self.duration_scale,
                self.remaining_work(j) / self.time_scale,
                (self.n_ops(j) - self.next_op[j]) / self.O,
                (self.est(j) - now) / self.time_scale,
                (self.ready[j] - now) / self.time_scale,
                machine_left / self.time_scale,
                (machine_end - now) / self.time_scale,
                waiting / n_jobs,
                0,
            ]
        return np.clip(out, -1000.0, 1000.0)

    def step(self, action: int, mask: np.ndarray) -> tuple[float, bool, bool]:
        """Same contract as ``step_shop``: an action outside the mask becomes the lowest allowed job."""
        invalid = not (0 <= action < self.J and mask[action])
        if invalid:
            allowed = np.flatnonzero(mask)
            if allowed.size == 0:
                return 0.0, True, True
            action = int(allowed[0])
        before = self.bound
        self.dispatch(action)
        self.bound = self.lower_bound()
        done = not self.unfinished()
        if self.reward == "dense":
            reward = (before - self.bound) / self.time_scale
        else:
            reward = -self.makespan / self.time_scale if done else 0.0
        return reward, done, invalid


RULE_KEYS = {
    "spt": lambda shop, j: shop.op(j, shop.next_op[j])[1],
    "lpt": lambda shop, j: -shop.op(j, shop.next_op[j])[1],
    "mwkr": lambda shop, j: -shop.remaining_work(j),
    "lwkr": lambda shop, j: shop.remaining_work(j),
    "mopnr": lambda shop, j: -(shop.n_ops(j) - shop.next_op[j]),
    "fifo": lambda shop, j: shop.ready[j],
    "edd": lambda shop, j: int(shop.instance.due_dates[j]),
}


def choose_by_rule(shop: ReferenceShop, mask: np.ndarray, rule: str, uniform: float) -> int:
    """Twin of the kernel: the allowed job with the smallest rule key (ties: lowest index)."""
    allowed = [int(j) for j in np.flatnonzero(mask)]
    if not allowed:
        return -1
    if rule == "random":
        return allowed[int(uniform * len(allowed))]
    return min(allowed, key=lambda j: (RULE_KEYS[rule](shop, j), j))


def sample_valid_actions(masks: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Twin of the kernel: the floor(u * count)-th allowed job of each row, -1 if none."""
    actions = np.full(masks.shape[0], -1, dtype=np.int64)
    for i, row in enumerate(masks):
        allowed = np.flatnonzero(row)
        if allowed.size:
            actions[i] = allowed[int(uniforms[i] * allowed.size)]
    return actions


def random_test_instance(rng: np.random.Generator, max_jobs: int = 6, max_machines: int = 4, max_ops: int = 6):
    """Small instances that stress the kernels: revisited machines, zero durations, jobs of
    different lengths, release dates."""
    n_jobs = int(rng.integers(1, max_jobs + 1))
    n_machines = int(rng.integers(1, max_machines + 1))
    width = int(rng.integers(1, max_ops + 1))
    n_ops = rng.integers(1, width + 1, size=n_jobs)
    n_ops[rng.integers(n_jobs)] = width
    machines = rng.integers(0, n_machines, size=(n_jobs, width))
    durations = rng.integers(0, 10, size=(n_jobs, width)) * (rng.random((n_jobs, width)) > 0.1)
    release = rng.integers(0, 15, size=n_jobs) if rng.random() < 0.4 else None
    return JobShopInstance(
        machines, durations, n_machines=n_machines, n_ops=n_ops, release_dates=release, name="random-test"
    )
