"""Right-shift repair: keep the previous plan's sequence on every machine, push operations
later only as far as the new shop state forces (progress, downtimes, new jobs at the end); and
the frozen-horizon decoder (:func:`hold_frozen`), which times fixed machine orders the same way.

The cheap rescheduling baseline: no search, it costs one pass over the operations. Both time an
operation around blocked intervals by the one rule of :func:`baselines._timing.earliest_clear`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines._timing import BlockedIntervals
from baselines.deciders import DeciderError, MethodSpec, default_objective
from sched_env.schedule import Schedule, SolveResult, objective_value
from sched_env.snapshot import ShopState, plan_rest, residual


def right_shift(
    state: ShopState,
    previous: Schedule | None,
    previous_job_ids: np.ndarray | None = None,
    objective: str = "total_weighted_tardiness",
) -> SolveResult:
    """Repair ``previous`` (a plan whose job ``i`` is the scenario's job ``previous_job_ids[i]``;
    by default the state's own numbering) into a plan that fits ``state``. Operations the
    previous plan did not have (new arrivals) are slotted in at their earliest possible start
    (release + the work before them in their job), not after all other work. On a flexible
    shop an operation keeps the previous plan's machine (new work takes its shortest one)."""
    started = time.perf_counter()
    rest = residual(state)
    blocked = BlockedIntervals(rest.blocked)
    planned: dict[tuple[int, int], int] = {}
    machines: dict[tuple[int, int], int] = {}
    if previous is not None:
        ids = state.job_ids if previous_job_ids is None else np.asarray(previous_job_ids)
        for j, k, m, s in zip(previous.job.tolist(), previous.op.tolist(), previous.machine.tolist(),
                              previous.start.tolist()):  # fmt: skip
            planned[int(ids[j]), k] = s
            machines[int(ids[j]), k] = m
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
        table = inst.processing_table()
        for _, _, k, i in order:
            machine = machines.get((int(state.job_ids[rest.job[i]]), int(rest.first_op[i] + k)), -1)
            if not 0 <= machine < inst.n_machines or table[i, k, machine] < 0:
                machine = int(inst.machines[i, k])
            duration = int(table[i, k, machine])
            start = max(job_ready[i], machine_free.get(machine, state.time))
            start = blocked.earliest(start, duration, machine)
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
    plans_flexible = True

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


# ---------------------------------------------------------------------- fixed machine orders, timed
def hold_frozen(state, plan, previous: dict, keys: list[tuple[str, str]], horizon: int, method: str):
    """``plan`` (a full plan of ``state``) with every waiting operation that the previous plan
    started before ``now + horizon`` kept in its place in its equipment's sequence (before all
    others, in the previous order; on a flexible shop on its previous equipment); the rest follow
    in ``plan``'s order on ``plan``'s equipment, each at its earliest time. ``previous`` maps
    (work order, operation) -> previous start, or (previous start, machine); ``keys`` lists them
    per (job, op) of the state. Returns (plan, number of operations held)."""
    rest = residual(state)
    if rest.instance is None:
        return plan, 0
    limit = state.time + horizon
    table = rest.instance.processing_table()
    held: list[tuple[int, int, int, int | None]] = []  # (previous start, residual job, op, previous machine)
    for i, job in enumerate(rest.job.tolist()):
        for k in range(int(rest.instance.n_ops[i])):
            before = previous.get(keys[job][int(rest.first_op[i]) + k])
            start, machine = before if isinstance(before, tuple) else (before, None)
            if start is None or start >= limit:
                break  # a job's held operations are a prefix of its waiting ones
            held.append((start, i, k, machine))
    if not held:
        return plan, 0
    new = rest.restrict(plan)
    new_start = {(int(j), int(k)): (int(s), int(m)) for j, k, m, s in zip(new.job, new.op, new.machine, new.start)}
    held_set = {(i, k) for _, i, k, _m in held}
    sequences: dict[int, list[tuple[int, int]]] = {}
    for _, i, k, machine in sorted(held, key=lambda h: h[:3]):
        if machine is None or not 0 <= machine < rest.instance.n_machines or table[i, k, machine] < 0:
            machine = new_start[i, k][1]
        sequences.setdefault(int(machine), []).append((i, k))
    for (i, k), (_start, machine) in sorted(new_start.items(), key=lambda item: (item[1][0], item[0])):
        if (i, k) not in held_set:
            sequences.setdefault(machine, []).append((i, k))
    rows = _time_sequences(rest, sequences)
    if rows is None:
        return plan, 0
    timed = Schedule(*np.array(rows, dtype=np.int64).reshape(-1, 5).T, instance_name=rest.instance.name)
    return plan_rest(state, timed, f"{method} with the frozen horizon"), len(held)


def _time_sequences(rest, sequences: dict[int, list[tuple[int, int]]]) -> list | None:
    """Each operation at its earliest start given its job's order, its equipment's sequence and the
    blocked intervals (semi-active timing); None if the sequences deadlock (they cannot, when made
    as :func:`hold_frozen` makes them)."""
    instance, blocked = rest.instance, BlockedIntervals(rest.blocked)
    table = instance.processing_table()
    job_ready = instance.release_dates.astype(np.int64).tolist()
    job_next = [0] * instance.n_jobs
    machine_free = {m: 0 for m in sequences}
    position = {m: 0 for m in sequences}
    rows, left = [], sum(len(s) for s in sequences.values())
    while left:
        progressed = False
        for m, sequence in sequences.items():
            while position[m] < len(sequence):
                i, k = sequence[position[m]]
                if job_next[i] != k:
                    break
                duration = int(table[i, k, m])
                start = blocked.earliest(max(job_ready[i], machine_free[m]), duration, m)
                rows.append((i, k, m, start, start + duration))
                job_ready[i] = machine_free[m] = start + duration
                job_next[i], position[m], left, progressed = k + 1, position[m] + 1, left - 1, True
        if not progressed:
            return None
    return rows
