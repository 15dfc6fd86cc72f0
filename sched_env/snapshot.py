"""``ShopState``: a snapshot of a running dynamic shop, the input of every rescheduler.

It holds only what a planner can know at ``time``: the jobs that have arrived and are not yet
complete (with their release and due dates, weights and *planned* durations), the operations done (real times),
the operations running (start and expected end), and the machine downtimes known now: the
breakdowns in progress (with their repair time) and the planned maintenance windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from instances import InvalidPlanError, InvalidScenarioError, JobShopInstance
from instances.jsonfile import JsonFile
from sched_env.events import MAINTENANCE, OPEN_STREAM, Scenario
from sched_env.schedule import INTERRUPTIONS, Schedule


def _rows(values: Any, width: int, what: str) -> np.ndarray:
    array = np.asarray(values if values is not None and len(values) else np.zeros((0, width)), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidScenarioError(f"{what} must be rows of {width} integers, got shape {array.shape}")
    array = array.copy()
    array.setflags(write=False)
    return array


@dataclass(frozen=True, init=False, eq=False)
class ShopState(JsonFile):
    """The shop at ``time``. ``jobs`` are the active jobs (arrived, not yet complete), numbered
    0..n-1; ``job_ids`` maps them to the scenario's numbering. ``done`` rows are (job, op, machine, start, end);
    ``running`` rows (job, op, machine, start, expected_end); ``downtimes`` rows (machine,
    start, end, kind) that end after ``time``. ``interruption`` is the shop's policy."""

    json_error = InvalidScenarioError
    json_what = "shop state"

    time: int
    jobs: JobShopInstance
    job_ids: np.ndarray
    done: np.ndarray
    running: np.ndarray
    downtimes: np.ndarray
    interruption: str

    def __init__(self, time, jobs, job_ids, done, running, downtimes, interruption="resume") -> None:
        if int(time) < 0:
            raise InvalidScenarioError(f"time must be >= 0, got {time}")
        if interruption not in INTERRUPTIONS:
            raise InvalidScenarioError(f"interruption must be one of {INTERRUPTIONS}, got {interruption!r}")
        ids = _rows(np.asarray(job_ids).reshape(-1, 1), 1, "job_ids")[:, 0]
        if len(ids) != jobs.n_jobs:
            raise InvalidScenarioError(f"job_ids has {len(ids)} entries for {jobs.n_jobs} jobs")
        object.__setattr__(self, "time", int(time))
        object.__setattr__(self, "jobs", jobs)
        object.__setattr__(self, "job_ids", ids)
        object.__setattr__(self, "done", _rows(done, 5, "done"))
        object.__setattr__(self, "running", _rows(running, 5, "running"))
        object.__setattr__(self, "downtimes", _rows(downtimes, 4, "downtimes"))
        object.__setattr__(self, "interruption", interruption)
        for what, rows in (("done", self.done), ("running", self.running)):
            for job, op, machine, *_ in rows.tolist():
                inside = 0 <= job < jobs.n_jobs and 0 <= op < jobs.n_ops[job]
                if not inside or machine not in {m for m, _ in jobs.alternatives(job, op)}:
                    raise InvalidScenarioError(
                        f"{what} operation (job {job}, op {op}, machine {machine}) is not in the jobs"
                        + (" (that machine cannot run it)" if inside else "")
                    )

    def waiting(self) -> list[tuple[int, int]]:
        """(job, op) of every operation neither done nor running, in job order."""
        started = {(j, k) for j, k in self.done[:, :2].tolist()} | {(j, k) for j, k in self.running[:, :2].tolist()}
        return [
            (j, k) for j in range(self.jobs.n_jobs) for k in range(int(self.jobs.n_ops[j])) if (j, k) not in started
        ]

    def down_until(self) -> dict[int, int]:
        """Machines down at ``time`` and when they come back."""
        return {m: e for m, s, e, _ in self.downtimes.tolist() if s <= self.time < e}

    def maintenance(self) -> np.ndarray:
        return self.downtimes[self.downtimes[:, 3] == MAINTENANCE]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShopState):
            return NotImplemented
        return (
            self.time == other.time
            and self.jobs == other.jobs
            and self.interruption == other.interruption
            and all(
                np.array_equal(getattr(self, k), getattr(other, k)) for k in ("job_ids", "done", "running", "downtimes")
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ShopState(time={self.time}, {self.jobs.n_jobs} jobs, {len(self.done)} ops done, {len(self.running)} running,"
            f" {len(self.waiting())} waiting, down: {self.down_until() or 'none'})"
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "interruption": self.interruption,
            "jobs": self.jobs.to_dict(),
            "job_ids": self.job_ids.tolist(),
            "done": [dict(zip(("job", "op", "machine", "start", "end"), r)) for r in self.done.tolist()],
            "running": [dict(zip(("job", "op", "machine", "start", "expected_end"), r)) for r in self.running.tolist()],
            "downtimes": [
                {"machine": m, "start": s, "end": e, "kind": "maintenance" if k == MAINTENANCE else "breakdown"}
                for m, s, e, k in self.downtimes.tolist()
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "shop state") -> ShopState:
        try:
            jobs = JobShopInstance.from_dict(data["jobs"])
            done = [[r["job"], r["op"], r["machine"], r["start"], r["end"]] for r in data.get("done", [])]
            running = [
                [r["job"], r["op"], r["machine"], r["start"], r["expected_end"]] for r in data.get("running", [])
            ]
            downtimes = [
                [r["machine"], r["start"], r["end"], MAINTENANCE if r.get("kind") == "maintenance" else 0]
                for r in data.get("downtimes", [])
            ]
            return cls(
                data["time"], jobs, data["job_ids"], done, running, downtimes, data.get("interruption", "resume")
            )
        except (KeyError, TypeError) as error:
            raise InvalidScenarioError(f"{source}: malformed shop state (missing or wrong field: {error})") from None
        except (InvalidScenarioError, ValueError) as error:
            raise InvalidScenarioError(f"{source}: {error}") from None


def snapshot(env) -> ShopState:
    """What a planner knows of a :class:`~sched_env.dynamic.DynamicJobShopEnv` now: the active
    jobs (in a slot or queueing for one) with their done and running operations."""
    scenario = env.scenario
    if scenario is None:
        raise InvalidScenarioError("reset the env before taking a snapshot")
    now, rows = env.time, env._rows
    views = rows.views(env._state_row)
    start = views["op_start"].reshape(rows.J, rows.O)
    end = views["op_end"].reshape(rows.J, rows.O)
    used = views["op_machine_used"].reshape(rows.J, rows.O)
    all_jobs, order = scenario.jobs, env._order
    planned = all_jobs.processing_table()
    known = scenario.downtimes
    seen = (known[:, 1] <= now) | (known[:, 3] == MAINTENANCE)  # begun by now, or planned in advance
    slot_of = {int(order[n]): j for j, n in enumerate(views["slot_job"].tolist()) if n >= 0}
    queued = order[int(views["n_admitted"][0]) : int(views["n_arrived"][0])].tolist()
    ids = np.array(sorted([*slot_of, *queued]), dtype=np.int64)
    done, running = [], []
    for local, job in enumerate(ids.tolist()):
        slot = slot_of.get(job)
        if slot is None:  # queueing: nothing of it has run
            continue
        for k in range(int(all_jobs.n_ops[job])):
            if start[slot, k] >= 0 and end[slot, k] <= now:
                done.append([local, k, int(used[slot, k]), int(start[slot, k]), int(end[slot, k])])
        began = int(views["job_started"][slot])
        if 0 <= began <= now < views["job_ready"][slot]:  # busy: an op (or an attempt) is running
            k = int(views["job_next_op"][slot]) - 1
            if not (k >= 0 and start[slot, k] == began):
                k += 1  # an attempt that will be aborted is still, to a planner, the op running
            machine = int(views["job_started_on"][slot])
            expected = int(views["job_expected"][slot])
            if scenario.interruption == "resume":  # known downtimes met on the way push the end out
                expected = planned_end(began, int(planned[job, k, machine]), known[seen & (known[:, 0] == machine)])
            running.append([local, k, machine, began, max(expected, now)])
    jobs = all_jobs.select_jobs(ids, name=f"{scenario.name}@{now}", metadata={})
    return ShopState(now, jobs, ids, done, running, known[seen & (known[:, 2] > now)], scenario.interruption)


def planned_end(start: int, work: int, windows: np.ndarray) -> int:
    """When ``work`` planned time units started at ``start`` end, resuming around ``windows``."""
    t, remaining = start, work
    for _m, a, b, _k in sorted(windows.tolist(), key=lambda w: w[1]):
        if b <= t:
            continue
        if a >= t + remaining:
            break
        remaining -= max(0, a - t)
        t = b
    return t + remaining


@dataclass(frozen=True)
class Residual:
    """The rest of the work as a plain instance: one job per arrived job with operations left
    (``first_op[i]`` is where job ``job[i]`` of the state resumes), released at the earliest time
    it can go on; ``blocked`` holds, per machine, the disjoint intervals no new operation may
    touch (downtimes known now, operations running now)."""

    instance: JobShopInstance
    job: np.ndarray
    first_op: np.ndarray
    blocked: dict[int, list[tuple[int, int]]]

    def blocked_rows(self) -> np.ndarray:
        rows = [(m, s, e, 0) for m, intervals in self.blocked.items() for s, e in intervals]
        return np.array(rows, dtype=np.int64).reshape(-1, 4)

    def restrict(self, schedule: Schedule) -> Schedule:
        """The rows of a plan of the state that plan this residual, in its numbering (job ``i``,
        operation ``k`` from where the job resumes)."""
        local = {
            (int(j), int(self.first_op[i] + k)): (i, k)
            for i, j in enumerate(self.job)
            for k in range(int(self.instance.n_ops[i]))
        }
        rows = [
            (*local[j, k], m, s, e)
            for j, k, m, s, e in zip(schedule.job.tolist(), schedule.op.tolist(), schedule.machine.tolist(),
                                     schedule.start.tolist(), schedule.end.tolist())
            if (j, k) in local
        ]  # fmt: skip
        return Schedule(*np.array(rows, dtype=np.int64).reshape(-1, 5).T, instance_name=self.instance.name)

    def as_scenario(self, interruption: str = "restart") -> Scenario:
        """The residual as a dynamic scenario with known durations, whose downtimes are the
        blocked intervals (as maintenance): simulating it with a dispatching rule gives a plan
        of the rest (restart: an operation a window would cut waits until after it). More work may
        arrive after it, so it is an open stream: a plan never reads as a draining shop."""
        blocked = self.blocked_rows()
        blocked[:, 3] = MAINTENANCE
        return Scenario(self.instance, downtimes=blocked, interruption=interruption, name=self.instance.name,
                        metadata={OPEN_STREAM: True})  # fmt: skip


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def residual(state: ShopState) -> Residual:
    """Cut the state down to the work still to plan (see :class:`Residual`); computed once per
    state (a state is immutable), however many planners and checks ask for it."""
    cached = state.__dict__.get("_residual")
    if cached is None:
        cached = _cut_residual(state)
        object.__setattr__(state, "_residual", cached)
    return cached


def _cut_residual(state: ShopState) -> Residual:
    jobs, now = state.jobs, state.time
    first_op = np.zeros(jobs.n_jobs, dtype=np.int64)
    earliest = np.maximum(jobs.release_dates, now)
    for job, op, _m, _s, _e in state.done.tolist():
        first_op[job] = max(first_op[job], op + 1)
    blocked: dict[int, list[tuple[int, int]]] = {}
    for job, op, machine, _start, expected in state.running.tolist():
        first_op[job] = max(first_op[job], op + 1)
        earliest[job] = max(earliest[job], expected)
        blocked.setdefault(machine, []).append((now, expected))
    for machine, start, end, _kind in state.downtimes.tolist():
        blocked.setdefault(machine, []).append((max(start, now), end))
    blocked = {m: _merge(v) for m, v in blocked.items()}
    left = [j for j in range(jobs.n_jobs) if first_op[j] < jobs.n_ops[j]]
    if not left:
        return Residual(None, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), blocked)
    ops = [[jobs.alternatives(j, k) for k in range(int(first_op[j]), int(jobs.n_ops[j]))] for j in left]
    instance = JobShopInstance.from_alternatives(
        ops, n_machines=jobs.n_machines, name=f"{jobs.name}/rest", release_dates=earliest[left],
        due_dates=jobs.due_dates[left], weights=jobs.weights[left],
    )  # fmt: skip
    return Residual(instance, np.array(left, dtype=np.int64), first_op[left], blocked)


def full_plan(state: ShopState, rest: Residual, plan) -> Schedule:
    """Done and running operations of ``state`` plus a schedule of its residual: one schedule
    of every known operation (running ones end at their expected end)."""
    rows = [list(r) for r in state.done.tolist()] + [list(r) for r in state.running.tolist()]
    if plan is not None:
        for i, k, m, s, e in zip(plan.job, plan.op, plan.machine, plan.start, plan.end):
            rows.append([int(rest.job[i]), int(rest.first_op[i] + k), int(m), int(s), int(e)])
    array = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return Schedule(*array.T, instance_name=state.jobs.name)


def plan_rest(state: ShopState, rest_plan: Schedule | None, method: str) -> Schedule:
    """The one way to plan the rest of a running shop: done and running work of ``state`` plus
    ``rest_plan`` (a schedule of ``residual(state).instance``, None when nothing is left), checked
    once against the state. A plan that breaks it is ``method``'s fault: :class:`InvalidPlanError`."""
    plan = full_plan(state, residual(state), rest_plan)
    problems = plan_violations(state, plan)
    if problems:
        raise InvalidPlanError(f"{method} produced a plan that breaks the shop state: {problems[0]}", problems)
    return plan


def plan_violations(state: ShopState, schedule: Schedule) -> list:
    """What a plan of ``state`` breaks: done and running operations must be as in the state;
    every other operation must start at or after ``time`` (and its job's release / running op),
    follow its job's order, keep its planned duration and touch no blocked interval."""
    from sched_env.schedule import Violation, find_violations

    rest = residual(state)
    found = []
    by_op = {
        (int(j), int(k)): (int(s), int(e), int(m))
        for j, k, m, s, e in zip(schedule.job, schedule.op, schedule.machine, schedule.start, schedule.end)
    }
    for what, rows in (("done", state.done), ("running", state.running)):
        for job, op, machine, start, end in rows.tolist():
            if by_op.get((job, op)) != (start, end, machine):
                found.append(
                    Violation(
                        "changed",
                        f"{what} operation (job {job}, op {op}) must stay on machine {machine} at [{start}, {end})",
                        job,
                        op,
                    )
                )
    if rest.instance is None:
        return found
    sub = rest.restrict(schedule)
    return found + find_violations(rest.instance, sub, downtimes=rest.blocked_rows(), interruption="restart")
