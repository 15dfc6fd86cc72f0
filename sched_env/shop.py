"""Python side of the compiled simulator: option names, instance sources, and the array layout.

Holds what ``env.py`` (one shop) and ``vector.py`` (N shops) share, so neither repeats it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import instances
from instances import InvalidInstanceError, JobShopInstance, RandomInstanceGenerator
from sched_env import _kernels as K
from sched_env.schedule import Schedule

PLACEMENTS = {"active": K.PLACEMENT_ACTIVE, "append": K.PLACEMENT_APPEND}
ACTION_SETS = {
    "any": K.ACTIONS_ANY,
    "giffler_thompson": K.ACTIONS_GT,
    "non_delay": K.ACTIONS_NON_DELAY,
}
REWARDS = {"dense": K.REWARD_DENSE, "sparse": K.REWARD_SPARSE}

#: Column names of the per-job feature matrix, in order (see ``JobShopEnv``).
FEATURE_NAMES = (
    "allowed",
    "next_duration",
    "remaining_work",
    "remaining_ops",
    "earliest_start",
    "ready_time",
    "machine_remaining_work",
    "machine_free_time",
    "machine_contention",
    "done",
)
assert len(FEATURE_NAMES) == K.N_FEATURES

InstanceSpec = (
    JobShopInstance | str | os.PathLike | Sequence[JobShopInstance | str] | Callable[..., JobShopInstance] | None
)


def option(value: str, choices: dict[str, int], what: str) -> int:
    """Map an option name to its kernel constant, or say which names are valid."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return choices[value]


class InstanceSource:
    """Where a shop's instances come from: one instance, a list (one drawn per reset), a
    catalogue name or file, or a generator ``gen(rng) -> JobShopInstance`` (a new one per reset)."""

    def __init__(self, spec: InstanceSpec, *, directory: str | os.PathLike | None = None) -> None:
        if spec is None:
            spec = RandomInstanceGenerator(10, 10)
        self.generator: Callable[..., JobShopInstance] | None = None
        self.fixed: list[JobShopInstance] = []
        if isinstance(spec, JobShopInstance):
            self.fixed = [spec]
        elif isinstance(spec, (str, os.PathLike)):
            self.fixed = [instances.load(spec, directory=directory)]
        elif callable(spec):
            self.generator = spec
        elif isinstance(spec, Sequence) and len(spec) > 0:
            self.fixed = [
                item if isinstance(item, JobShopInstance) else instances.load(item, directory=directory)
                for item in spec
            ]
        else:
            raise InvalidInstanceError(
                "instance must be a JobShopInstance, a catalogue name or file, a non-empty list of"
                f" those, or a generator callable(rng) -> JobShopInstance; got {spec!r}"
            )

    def limits(self) -> tuple[int | None, int | None, int | None]:
        """Largest (jobs, machines, ops per job) this source produces, None where unknown."""
        if self.fixed:
            return (
                max(i.n_jobs for i in self.fixed),
                max(i.n_machines for i in self.fixed),
                max(i.max_ops for i in self.fixed),
            )
        jobs = getattr(self.generator, "max_jobs", None)
        machines = getattr(self.generator, "max_machines", None)
        ops = getattr(self.generator, "max_ops", machines)
        return jobs, machines, ops

    @property
    def changes(self) -> bool:
        """True when different resets can give different instances."""
        return self.generator is not None or len(self.fixed) > 1

    def draw(self, rng: np.random.Generator) -> JobShopInstance:
        if self.generator is not None:
            instance = self.generator(rng)
            if not isinstance(instance, JobShopInstance):
                raise InvalidInstanceError(
                    f"the instance generator returned {type(instance).__name__}, not a JobShopInstance"
                )
            return instance
        if len(self.fixed) == 1:
            return self.fixed[0]
        return self.fixed[int(rng.integers(len(self.fixed)))]


def final_info(dones: np.ndarray, final_features: np.ndarray, final_masks: np.ndarray) -> dict[str, Any]:
    """The autoreset part of a batch's ``info``: which shops finished and their last observations."""
    done = np.flatnonzero(dones)
    return {
        "_final": dones.copy(),
        "final_index": done,
        "final_obs": {"jobs": final_features[done], "action_mask": final_masks[done]},
    }


class ShopOptions:
    """Options shared by the single and the batched env, checked in one place."""

    def _set_options(
        self,
        instance: InstanceSpec,
        *,
        max_jobs: int | None,
        max_machines: int | None,
        max_ops: int | None,
        placement: str,
        action_set: str,
        reward: str,
        strict: bool,
        instance_dir: str | os.PathLike | None,
    ) -> None:
        self.placement, self.action_set, self.reward_mode = placement, action_set, reward
        self._placement = option(placement, PLACEMENTS, "placement")
        self._action_set = option(action_set, ACTION_SETS, "action_set")
        self._reward = option(reward, REWARDS, "reward")
        self.strict = bool(strict)
        self._source = InstanceSource(instance, directory=instance_dir)
        self.layout = ShopLayout.for_source(self._source, max_jobs, max_machines, max_ops)


@dataclass(frozen=True)
class ShopLayout:
    """Padded sizes of a shop's flat rows: J jobs, M machines, O operations per job."""

    J: int
    M: int
    O: int  # noqa: E741

    @classmethod
    def for_source(
        cls, source: InstanceSource, max_jobs: int | None, max_machines: int | None, max_ops: int | None
    ) -> ShopLayout:
        jobs, machines, ops = source.limits()
        J, M = max_jobs or jobs, max_machines or machines
        O = max_ops or ops or M  # noqa: E741
        if J is None or M is None:
            raise ValueError(
                "with an instance generator that has no max_jobs/max_machines, pass max_jobs= and max_machines="
            )
        for name, asked, needed in (("max_jobs", J, jobs), ("max_machines", M, machines), ("max_ops", O, ops)):
            if needed is not None and asked < needed:
                raise ValueError(f"{name}={asked} is smaller than the instances need ({needed})")
        return cls(int(J), int(M), int(O))

    @property
    def instance_length(self) -> int:
        return K.instance_row_length(self.J, self.M, self.O)

    @property
    def state_length(self) -> int:
        return K.state_row_length(self.J, self.M, self.O)

    def encode(self, instance: JobShopInstance, row: np.ndarray) -> None:
        """Write ``instance`` into an instance row, or explain why it does not fit."""
        J, M, O = self.J, self.M, self.O  # noqa: E741
        if instance.n_jobs > J or instance.n_machines > M or instance.max_ops > O:
            raise InvalidInstanceError(
                f"{instance.name!r} ({instance.n_jobs} jobs, {instance.n_machines} machines, up to"
                f" {instance.max_ops} ops per job) does not fit this env (max_jobs={J},"
                f" max_machines={M}, max_ops={O}); create the env with larger limits"
            )
        row[:] = 0
        row[K.IN_N_JOBS] = instance.n_jobs
        row[K.IN_N_MACHINES] = instance.n_machines
        row[K.IN_TIME_SCALE] = max(1, instance.simple_lower_bound())
        row[K.IN_DUR_SCALE] = max(1, int(instance.durations.max()))
        OP_MACHINE, OP_DURATION, N_OPS, RELEASE, DUE = K.instance_offsets(J, O)
        machines = np.full((J, O), K.NONE, dtype=np.int64)
        machines[: instance.n_jobs, : instance.max_ops] = instance.machines
        durations = np.zeros((J, O), dtype=np.int64)
        durations[: instance.n_jobs, : instance.max_ops] = instance.durations
        row[OP_MACHINE : OP_MACHINE + J * O] = machines.ravel()
        row[OP_DURATION : OP_DURATION + J * O] = durations.ravel()
        row[N_OPS : N_OPS + instance.n_jobs] = instance.n_ops
        if instance.release_dates is not None:
            row[RELEASE : RELEASE + instance.n_jobs] = instance.release_dates
        if instance.due_dates is not None:
            row[DUE : DUE + instance.n_jobs] = instance.due_dates

    def views(self, state_row: np.ndarray) -> dict[str, np.ndarray]:
        """Named numpy views of a state row (the same layout the kernels use)."""
        names = (
            "job_next_op", "job_machine", "job_duration", "job_ready", "job_est", "job_remaining", "machine_end",
            "machine_head", "machine_tail", "machine_remaining", "machine_waiting", "op_start", "op_end", "op_next",
            "op_previous",
        )  # fmt: skip
        J, M, O = self.J, self.M, self.O  # noqa: E741
        sizes = (J, J, J, J, J, J, M, M, M, M, M, J * O, J * O, J * O, J * O)
        offsets = K.state_offsets(J, M, O)
        return {name: state_row[a : a + n] for name, a, n in zip(names, offsets, sizes)}

    def schedule(self, instance: JobShopInstance, state_row: np.ndarray) -> Schedule:
        """The (partial) schedule held in a state row."""
        views = self.views(state_row)
        start = views["op_start"].reshape(self.J, self.O)
        end = views["op_end"].reshape(self.J, self.O)
        return Schedule.from_matrices(instance, start, end)
