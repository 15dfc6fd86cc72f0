"""Predictive-reactive scheduling of a dynamic shop: keep a plan, carry it out, replan when
the shop changes (a job arrives, a machine breaks down or comes back).

Plans come from any decider (``baselines.deciders``: ``cpsat:1``, ``right-shift``, ``atc``,
later ``policy``, ``hybrid:10``): each replan passes the shop's :class:`ShopState` and the
previous plan (as a warm start / the plan to repair). Three ways to carry a plan out:

* ``exact`` (default): with the env's wait action, each machine runs its planned operations
  in the planned order, each no earlier than its planned start (later only where the shop
  forces it: a late predecessor, a longer real duration);
* ``sequence``: the planned order on each machine, each operation as soon as the order and
  the shop allow (an operation whose predecessors finished early starts early);
* ``priority``: the plan as a priority list in the non-delay env (among the jobs that can
  start now, the one planned first), as the env without the wait action must.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from baselines.deciders import Decider, as_plan, make
from baselines.deciders import solve as run_decider
from sched_env.schedule import Schedule, SolveResult, objectives
from sched_env.snapshot import ShopState

EXECUTIONS = ("exact", "sequence", "priority")


@dataclass
class Replanner:
    """Drive a :class:`~sched_env.dynamic.DynamicJobShopEnv` (made with ``allow_wait=True``
    for exact execution) to the end of its episode. ``method`` makes every plan, ``initial``
    (default: ``method``) the first one."""

    method: str | Decider = "cpsat:1"  # a spec, or a decider built already
    initial: str | Decider | None = None
    objective: str = "total_weighted_tardiness"
    workers: int = 2
    seed: int = 0
    execution: str = "exact"
    planning_times: list[float] = field(default_factory=list)
    #: Response time of every plan of the last run: from the event (the snapshot taken) to a new
    #: valid plan in hand (the decider's time plus the snapshot's).
    response_times: list[float] = field(default_factory=list)
    #: Each plan's budget over-run (``SolveResult.over_budget``) in the last run.
    overruns: list[bool] = field(default_factory=list)
    #: Budget given to every decider call (None: the decider's own limit).
    budget_s: float | None = None
    #: Every plan of the last run: (time, plan, scenario job index of each plan job).
    plans: list[tuple[int, Schedule, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.execution not in EXECUTIONS:
            raise ValueError(f"unknown execution {self.execution!r}; choose one of: {', '.join(EXECUTIONS)}")
        options = {"objective": self.objective, "workers": self.workers}

        def build(method):  # fails now on an unknown spec
            return make(method, **options) if isinstance(method, str) else method

        self._decider = build(self.method)
        self._first = build(self.initial) if self.initial else self._decider
        self.method = self._decider.spec
        self.initial = None if self.initial is None else self._first.spec

    def _plan(self, state: ShopState, previous: Schedule | None, previous_ids: np.ndarray | None) -> Schedule:
        decider = self._decider if previous is not None else self._first
        hint = as_plan(state, previous, previous_ids) if previous is not None else None
        result = run_decider(state, decider, seed=self.seed, hint=hint, budget_s=self.budget_s)
        self.planning_times.append(result.wall_time_s)
        self.overruns.append(result.over_budget)
        plan = result.schedule
        if plan is None:  # the decider found nothing in its budget: repair the previous plan
            plan = run_decider(state, "right-shift", hint=hint, objective=self.objective).schedule
        self.plans.append((state.time, plan, state.job_ids))
        return plan

    def run(self, env, *, seed: int | None = None, options: dict | None = None) -> SolveResult:
        """Reset ``env`` and run its episode; the result's params hold every objective, the
        number of plans made and the planning times."""
        if self.execution != "priority" and not env.allow_wait:
            raise ValueError(
                f"{self.execution!r} plan execution needs an env made with allow_wait=True (or use execution='priority')"
            )
        started = time.perf_counter()
        self.planning_times, self.plans, self.response_times, self.overruns = [], [], [], []
        obs, _ = env.reset(seed=seed, options=options)
        arrivals = env.scenario.jobs.release_dates
        plan, plan_ids, signature, done, info = None, None, None, False, {}
        follower = None
        while not done:
            now_signature = (int((arrivals <= env.time).sum()), tuple(sorted(_down_machines(env).items())))
            if plan is None or now_signature != signature:
                event_at = time.perf_counter()
                state = env.snapshot()
                plan, plan_ids, signature = self._plan(state, plan, plan_ids), state.job_ids, now_signature
                self.response_times.append(time.perf_counter() - event_at)
                follower = _PlanFollower(plan, plan_ids)
            action, until = follower.choose(env, obs["action_mask"], self.execution)
            if action is None:
                obs, _, done, _, info = env.wait(until)
            else:
                obs, _, done, _, info = env.step(action)
        times = self.planning_times
        values = objectives(env.scenario.jobs, info["schedule"])
        return SolveResult(
            schedule=info["schedule"],
            objective=values[self.objective],
            status="feasible",
            method=self.method if self.initial in (None, self.method) else f"{self.initial}+{self.method}",
            wall_time_s=time.perf_counter() - started,
            instance_name=env.scenario.name,
            seed=self.seed,
            params={
                "objective": self.objective, "workers": self.workers, "execution": self.execution, **values,
                "plans": len(times), "mean_plan_s": float(np.mean(times)) if times else 0.0,
                "max_plan_s": float(np.max(times)) if times else 0.0,
            },
        )  # fmt: skip


def _down_machines(env) -> dict[int, int]:
    """Machines down now (revealed breakdowns and running maintenance) and until when."""
    windows = env.scenario.downtimes
    now = env.time
    down = windows[(windows[:, 1] <= now) & (now < windows[:, 2])]
    return {int(m): int(e) for m, _s, e, _k in down.tolist()}


class _PlanFollower:
    """Which action to take now (or how long to wait) to carry out a plan: a slot to start, or on a
    flexible shop (pair actions) a slot with the machine the plan gave its operation."""

    def __init__(self, plan: Schedule, plan_ids: np.ndarray) -> None:
        ids = np.asarray(plan_ids)[plan.job]
        self.start = {(int(j), int(k)): int(s) for j, k, s in zip(ids, plan.op, plan.start)}
        self.machine = {(int(j), int(k)): int(m) for j, k, m in zip(ids, plan.op, plan.machine)}
        self.sequence: dict[int, list[tuple[int, int, int]]] = {}
        rows = zip(ids.tolist(), plan.op.tolist(), plan.machine.tolist(), plan.start.tolist())
        for j, k, m, s in sorted(rows, key=lambda r: (r[3], r[0], r[1])):
            self.sequence.setdefault(m, []).append((s, j, k))
        self.position = dict.fromkeys(self.sequence, 0)

    def choose(self, env, mask: np.ndarray, execution: str) -> tuple[int | None, int | None]:
        """(action to take, None), or (None, time to wait until; None = the next event)."""
        slots, next_op = env.slot_jobs(), env.next_operations()
        actions = self._actions(env, mask, slots, next_op)
        if not actions:  # no operation can start on its planned machine now
            if env.allow_wait and mask[-1]:  # one will be free at an event to come: wait for it
                return None, None
            actions = self._actions(env, mask, slots, next_op, planned=False)  # the shop must go on
        allowed = list(actions)
        planned = {s: self.start.get((int(slots[s]), int(next_op[s])), math.inf) for s in allowed}
        by_plan = min(allowed, key=lambda s: (planned[s], s))
        if execution == "priority":
            return actions[by_plan], None
        progress = env.progress()
        due = [s for s in allowed if self._first_on_machine(int(slots[s]), int(next_op[s]), progress, env)]
        ready = due if execution == "sequence" else [s for s in due if planned[s] <= env.time]
        if ready:
            return actions[min(ready, key=lambda s: (planned[s], s))], None
        waits = [planned[s] for s in due if planned[s] < math.inf]
        if waits:
            return None, int(min(waits))
        if env.allow_wait and mask[-1]:  # an event is still to come: wait for it
            return None, None
        return actions[by_plan], None

    def _actions(self, env, mask: np.ndarray, slots: np.ndarray, next_op: np.ndarray, *,
                 planned: bool = True) -> dict[int, int]:  # fmt: skip
        """The action that starts each startable slot: the slot itself, or with pair actions the
        slot on its planned machine, when that one can take it now (an operation the plan does not
        hold, or any with ``planned=False``, takes the first machine that can). An operation whose
        planned machine is busy is not started elsewhere: moving work off its machine is the
        planner's call, made at the next replan."""
        n = len(slots)
        if not env.pair_actions:
            return {int(s): int(s) for s in np.flatnonzero(mask[:n])}
        width = env.layout.M
        free = mask[: n * width].reshape(n, width)
        actions = {}
        for s in np.flatnonzero(free.any(axis=1)).tolist():
            machine = self.machine.get((int(slots[s]), int(next_op[s]))) if planned else None
            if machine is None:
                machine = int(np.flatnonzero(free[s])[0])
            if machine < width and free[s, machine]:
                actions[s] = s * width + machine
        return actions

    def _first_on_machine(self, job: int, op: int, progress: dict[int, int], env) -> bool:
        """Is (job, op) the first operation not yet started in its machine's planned order?
        (A job missing from ``progress`` is complete: all its operations have started.)"""
        machine = self.machine.get((job, op), int(env.scenario.jobs.machines[job, op]))
        sequence = self.sequence.get(machine, [])
        i = self.position.get(machine, 0)
        while i < len(sequence) and sequence[i][2] < progress.get(sequence[i][1], math.inf):
            i += 1
        self.position[machine] = i
        return i == len(sequence) or (sequence[i][1], sequence[i][2]) == (job, op)
