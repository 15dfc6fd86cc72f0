"""Right-shift repair: keep the previous plan's sequence on every machine, push operations
later only as far as the new shop state forces (progress, downtimes, new jobs at the end).

The cheap rescheduling baseline: no search, it costs one pass over the operations.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.deciders import DeciderError, MethodSpec, default_objective
from sched_env.schedule import Schedule, SolveResult, objective_value
from sched_env.snapshot import ShopState, plan_rest, residual


def _earliest_free(start: int, duration: int, blocked: list[tuple[int, int]]) -> int:
    """First t >= start with [t, t + duration) clear of the blocked intervals (sorted, disjoint)."""
    t = start
    for a, b in blocked:
        if t < b and a < t + duration or (duration == 0 and a <= t < b):
            t = max(t, b)
    return t


def right_shift(
    state: ShopState,
    previous: Schedule | None,
    previous_job_ids: np.ndarray | None = None,
    objective: str = "total_weighted_tardiness",
) -> SolveResult:
    """Repair ``previous`` (a plan whose job ``i`` is the scenario's job ``previous_job_ids[i]``;
    by default the state's own numbering) into a plan that fits ``state``. Operations the
    previous plan did not have (new arrivals) are slotted in at their earliest possible start
    (release + the work before them in their job), not after all other work."""
    started = time.perf_counter()
    rest = residual(state)
    planned: dict[tuple[int, int], int] = {}
    if previous is not None:
        ids = state.job_ids if previous_job_ids is None else np.asarray(previous_job_ids)
        for j, k, s in zip(previous.job.tolist(), previous.op.tolist(), previous.start.tolist()):
            planned[int(ids[j]), k] = s
    rows = []
    if rest.instance is not None:
        inst = rest.instance
        earliest = inst.release_dates[:, None] + np.cumsum(inst.durations, axis=1) - inst.durations
        order = sorted(
            (planned.get((int(state.job_ids[rest.job[i]]), int(rest.first_op[i] + k)), int(earliest[i, k])),
             int(rest.job[i]), k, i)
            for i in range(inst.n_jobs) for k in range(int(inst.n_ops[i]))
        )  # fmt: skip
        job_ready = {i: int(inst.release_dates[i]) for i in range(inst.n_jobs)}
        machine_free: dict[int, int] = {}
        for _, _, k, i in order:
            machine, duration = int(inst.machines[i, k]), int(inst.durations[i, k])
            start = max(job_ready[i], machine_free.get(machine, state.time))
            start = _earliest_free(start, duration, rest.blocked.get(machine, []))
            rows.append((i, k, machine, start, start + duration))
            job_ready[i] = machine_free[machine] = start + duration
    array = np.array(rows, dtype=np.int64).reshape(-1, 5)
    schedule = plan_rest(state, Schedule(*array.T) if rows else None, "right-shift")
    return SolveResult(
        schedule=schedule,
        objective=objective_value(state.jobs, schedule, objective),
        status="feasible",
        method="right-shift",
        wall_time_s=time.perf_counter() - started,
        instance_name=state.jobs.name,
        params={"objective": objective},
    )


@dataclass
class RightShiftDecider:
    """``right-shift``: repair of the given plan (rescheduling only): each machine keeps the plan's
    order, operations move later only as far as the shop forces; new work goes last."""

    spec: str
    objective: str | None = None
    time_limit_s = None
    dispatches = False
    reads_files = False

    def solve(self, problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        if not isinstance(problem, ShopState):
            raise DeciderError(
                "right-shift repairs a plan of a running shop (a ShopState); for a static instance use a rule or cpsat"
            )
        result = right_shift(problem, hint, objective=default_objective(problem, self.objective))
        return dataclasses.replace(result, method=self.spec, seed=seed)


def right_shift_factory(spec: MethodSpec, *, objective: str | None = None, **_: Any) -> RightShiftDecider:
    """Build ``right-shift``."""
    spec.no_more_than(0, "right-shift")
    return RightShiftDecider(spec.text, objective)
