"""Predictive-reactive scheduling of a dynamic shop: keep a plan, dispatch by it, replan when
the shop changes (a job arrives, a machine breaks down or comes back).

The env dispatches non-delay (when a job can start, one must), so a plan is followed as a
priority: among the jobs allowed now, start the one whose next operation the plan starts
first. Two replanning methods:

* ``cpsat``: CP-SAT :func:`~baselines.cpsat.reschedule` at every change, warm-started from
  the previous plan repaired by right-shift;
* ``right-shift``: one CP-SAT plan at the start, then only :func:`~baselines.repair.right_shift`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sched_env.schedule import Schedule, SolveResult, objectives
from sched_env.snapshot import ShopState

METHODS = ("cpsat", "right-shift")


@dataclass
class Replanner:
    """Drive a :class:`~sched_env.dynamic.DynamicJobShopEnv` to the end of its episode."""

    method: str = "cpsat"
    time_limit_s: float = 1.0
    workers: int = 2
    seed: int = 0
    objective: str = "tardiness"
    planning_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown replanning method {self.method!r}; choose one of {', '.join(METHODS)}")

    def _plan(self, state: ShopState, previous: Schedule | None, previous_ids: np.ndarray | None) -> Schedule:
        from baselines import cpsat
        from baselines.repair import right_shift

        started = time.perf_counter()
        repaired = right_shift(state, previous, previous_ids, self.objective) if previous is not None else None
        if self.method == "cpsat" or previous is None:
            result = cpsat.reschedule(
                state, time_limit_s=self.time_limit_s, workers=self.workers, seed=self.seed,
                hint=None if repaired is None else repaired.schedule, objective=self.objective,
            )  # fmt: skip
            plan = result.schedule if result.schedule is not None else repaired.schedule
        else:
            plan = repaired.schedule
        self.planning_times.append(time.perf_counter() - started)
        return plan

    def run(self, env, *, seed: int | None = None, options: dict | None = None) -> SolveResult:
        """Reset ``env`` and run its episode; the result's params hold every objective, the
        number of plans made and the planning times."""
        started = time.perf_counter()
        self.planning_times = []
        obs, _ = env.reset(seed=seed, options=options)
        plan, plan_ids, signature, done = None, None, None, False
        while not done:
            state = env.snapshot()
            now_signature = (len(state.job_ids), tuple(sorted(state.down_until().items())))
            if plan is None or now_signature != signature:
                plan, plan_ids, signature = self._plan(state, plan, plan_ids), state.job_ids, now_signature
            planned = {
                (int(plan_ids[j]), k): s for j, k, s in zip(plan.job.tolist(), plan.op.tolist(), plan.start.tolist())
            }
            next_op = env.layout.views(env._state_row)["job_next_op"]
            allowed = np.flatnonzero(obs["action_mask"])
            job = min(allowed.tolist(), key=lambda j: (planned.get((j, int(next_op[j])), np.inf), j))
            obs, _, done, _, info = env.step(job)
        times = self.planning_times
        values = objectives(env.scenario.jobs, info["schedule"])
        return SolveResult(
            schedule=info["schedule"],
            objective=values[self.objective],
            status="feasible",
            method=self.method if self.method == "right-shift" else f"cpsat:{self.time_limit_s:g}",
            wall_time_s=time.perf_counter() - started,
            instance_name=env.scenario.name,
            seed=self.seed,
            params={
                "objective": self.objective, "time_limit_s": self.time_limit_s, "workers": self.workers,
                **values, "plans": len(times),
                "mean_plan_s": float(np.mean(times)) if times else 0.0, "max_plan_s": float(np.max(times)) if times else 0.0,
            },
        )  # fmt: skip
