"""Right-shift repair: keep the previous plan's sequence on every machine, push operations
later only as far as the new shop state forces (progress, downtimes, new jobs at the end).

The cheap rescheduling baseline: no search, it costs one pass over the operations.
"""

from __future__ import annotations

import time

import numpy as np

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
