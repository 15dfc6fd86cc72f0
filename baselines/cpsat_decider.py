"""OR-Tools CP-SAT as a decider: ``cpsat:SECONDS[:hint]``, a static solve or the rescheduling of a
running shop, anytime (OR-Tools is imported when the decider is built, never by the registry)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from baselines import rules
from baselines.budget import time_left
from baselines.deciders import MAX_SECONDS, DeciderError, MethodSpec, Problem, default_objective
from instances import JobShopInstance
from sched_env.schedule import SolveResult, objective_value

DEFAULT_CPSAT_SECONDS = 10.0


def import_cpsat(spec: str):
    """``baselines.cpsat``, imported when a decider is built (so that no budget pays for
    importing OR-Tools), or a clear error naming the extra to install."""
    try:
        from baselines import cpsat
    except ImportError:
        raise DeciderError(f"method {spec!r} needs OR-Tools: pip install 'sched-env[cp]'") from None
    return cpsat


@dataclass
class CpSatDecider:
    """OR-Tools CP-SAT: ``cpsat:SECONDS`` (the limit covers building the model; a budget
    lowers it; the model's horizon is the sum of all durations: bounding it by the best rule's
    makespan was measured worse on Brandimarte at 10 s, mk09 320-328 against 307), ``:hint``
    warm-starts from the best rule schedule. On a shop state: CP-SAT
    rescheduling, warm-started from the given plan repaired by right-shift (or the rule hint).

    Anytime: when the search ends without a solution, or with one worse than the plan it started
    from (the hint, or the best rule's plan: on the 100-job ``bv`` instances a 10 s search can end
    4x above the rule), the answer is that plan with status ``start-plan``."""

    spec: str
    time_limit_s: float
    hinted: bool = False
    objective: str | None = None
    workers: int = 2
    dispatches = False
    reads_files = False
    plans_flexible = True

    def __post_init__(self) -> None:
        self._cpsat = import_cpsat(self.spec)

    def solve(self, problem: Problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        started = time.perf_counter()
        limit = self.time_limit_s if budget_s is None else min(self.time_limit_s, budget_s)
        objective = default_objective(problem, self.objective)
        static = isinstance(problem, JobShopInstance)
        size = problem.n_operations if static else len(problem.waiting())
        if not self._cpsat.worth_searching(size, limit):  # no time to build a model: a rule's plan, at once
            fallback = rules.quick_rule_plan(problem, objective)
            params = {"search_status": "skipped", "time_limit_s": limit, "fallback": fallback.method}
            return dataclasses.replace(fallback, method=self.spec, status="start-plan", seed=seed, params=params)
        if static:
            result, start_plan = self._solve_instance(problem, objective, limit, started, seed, hint)
        else:
            result, start_plan = self._solve_state(problem, objective, limit, started, seed, hint)
        if result.schedule is None:  # no solution in time: the plan it started from stands
            if start_plan is None:
                start_plan = rules.best_rule_plan(problem, objective).schedule
            jobs = problem if static else problem.jobs
            value = objective_value(jobs, start_plan, objective)
            params = {**(result.params or {}), "search_status": result.status}
            result = dataclasses.replace(
                result, schedule=start_plan, objective=value, status="start-plan", params=params
            )
        return dataclasses.replace(result, method=self.spec)

    def _search_s(self, limit: float, started: float) -> float:
        return time_left(limit, started, floor=self._cpsat.MIN_SEARCH_S)

    def _solve_instance(self, problem, objective, limit, started, seed, hint):
        if objective != "makespan":
            raise DeciderError(f"{self.spec}: a static instance is solved for the makespan only")
        if hint is None:  # milliseconds: the plan it starts from, which no answer may be worse than
            fallback = rules.best_rule_plan(problem).schedule
            hint = fallback if self.hinted else None
        else:
            fallback = hint
        result = self._cpsat.solve(problem, time_limit_s=self._search_s(limit, started), workers=self.workers,
                                   seed=seed, hint=hint)  # fmt: skip
        if result.schedule is not None and result.objective > fallback.makespan:  # the search fell short of it
            params = {**(result.params or {}), "search_makespan": result.objective}
            result = dataclasses.replace(result, schedule=None, objective=None, params=params)
        return result, fallback

    def _solve_state(self, problem, objective, limit, started, seed, hint):
        from baselines.repair import right_shift

        start_plan = None
        if hint is not None:
            start_plan = right_shift(problem, hint, objective=objective).schedule
        elif self.hinted:
            start_plan = rules.best_rule_plan(problem, objective).schedule
        result = self._cpsat.reschedule(problem, time_limit_s=self._search_s(limit, started), workers=self.workers, seed=seed,
                                        hint=start_plan, objective=objective)  # fmt: skip
        return result, start_plan


def cpsat_factory(spec: MethodSpec, *, objective: str | None = None, workers: int = 2, **_: Any) -> CpSatDecider:
    """Build ``cpsat``, ``cpsat:SECONDS`` or ``cpsat:SECONDS:hint``."""
    spec.no_more_than(2, "cpsat, cpsat:SECONDS or cpsat:SECONDS:hint")
    if len(spec.args) == 2 and spec.args[1] != "hint":
        raise DeciderError(f"method {spec.text!r}: write cpsat:SECONDS or cpsat:SECONDS:hint, e.g. cpsat:10")
    if spec.qualifier:
        raise DeciderError(f"method {spec.text!r}: cpsat takes no '@' qualifier")
    seconds = spec.number(0, "SECONDS", default=DEFAULT_CPSAT_SECONDS, maximum=MAX_SECONDS)
    return CpSatDecider(spec.text, float(seconds), len(spec.args) == 2, objective, int(workers))
