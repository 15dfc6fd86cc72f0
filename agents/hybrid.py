"""``hybrid:SECONDS``: the learned policy's plans warm-start CP-SAT, which improves the best one
until the budget ends. Anytime: a plan exists within milliseconds, and the answer is never
worse than the best hint CP-SAT was given (its result is kept only if better).

Works on a static :class:`JobShopInstance` (makespan) and on a running shop's
:class:`ShopState` (rescheduling the rest, done and running work untouched)::

    deciders.solve(instances.load("ta41"), "hybrid:10")
    deciders.solve(env.snapshot(), "hybrid:1")

Time split: a dispatching rule's plan (milliseconds), the greedy policy plan if it comes within
``GREEDY_SHARE`` of the budget, sampled plans until ``SAMPLE_SHARE`` of it (on large shops one
sample costs as much as the greedy plan, so only the greedy plan fits), then CP-SAT with
everything left, hinted with the best plan so far. Measured on ta41-ta52 (learning notes): a policy hint is worth
more to CP-SAT than more seconds on big shops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from instances import JobShopInstance
from sched_env.schedule import SolveResult, objective_value

#: Share of the budget for sampling plans (after the greedy one); CP-SAT gets the rest.
SAMPLE_SHARE = 0.25
#: The greedy policy plan must come within this share, else a dispatching rule's plan is the hint.
GREEDY_SHARE = 0.5
DEFAULT_SECONDS = 10.0


@dataclass
class HybridDecider:
    spec: str
    seconds: float
    samples: int = 4096  # an upper bound: the time share decides how many run
    objective: str | None = None
    workers: int = 2
    dispatches = False
    reads_files = False

    @property
    def time_limit_s(self) -> float:
        return self.seconds

    def __post_init__(self) -> None:
        from agents.deciders import PolicyDecider
        from baselines.deciders import import_cpsat

        self._cpsat = import_cpsat(self.spec)
        self._policy = PolicyDecider(self.spec)

    def use(self, policies) -> None:
        """Plan with these loaded policies (see :meth:`PolicyDecider.use`)."""
        self._policy.use(policies)

    def solve(self, problem, *, budget_s: float | None = None, seed: int = 0, hint=None) -> SolveResult:
        from agents.rollouts import DeadlineError, solve_with_policy
        from baselines.deciders import quick_rule_plan

        started = time.perf_counter()
        limit = self.seconds if budget_s is None else min(self.seconds, budget_s)
        policy = self._policy.policy_for(problem)
        static = isinstance(problem, JobShopInstance)
        objective = "makespan" if static else (self.objective or "total_weighted_tardiness")
        # a dispatching rule's plan first (milliseconds): the answer if even the greedy policy plan cannot fit
        best = quick_rule_plan(problem, objective)
        planned = None
        with contextlib.suppress(DeadlineError):  # the greedy plan did not fit: the rule's plan is the hint
            planned = solve_with_policy(
                policy, problem, samples=self.samples, seed=seed, budget_s=SAMPLE_SHARE * limit, objective=objective,
                method=self.spec, greedy_budget_s=GREEDY_SHARE * limit,
            )  # fmt: skip
        if planned is not None and planned.objective <= best.objective:
            best = planned
        if hint is not None and not static:  # a previous plan, repaired, is one more candidate
            from baselines.repair import right_shift

            repaired = right_shift(problem, hint, objective=objective)
            if repaired.objective < best.objective:
                best = repaired
        # CP-SAT gets what is left, less a little for reading and validating its answer
        remaining = 0.97 * (limit - (time.perf_counter() - started)) - 0.01
        improved = None
        size = problem.n_operations if static else len(problem.waiting())
        if remaining > self._cpsat.MIN_SEARCH_S and self._cpsat.worth_searching(size, remaining):
            if static:
                improved = self._cpsat.solve(
                    problem, time_limit_s=remaining, workers=self.workers, seed=seed, hint=best.schedule
                )
            else:
                improved = self._cpsat.reschedule(
                    problem, time_limit_s=remaining, workers=self.workers, seed=seed, hint=best.schedule,
                    objective=objective,
                )  # fmt: skip
        params: dict[str, Any] = {
            "objective": objective, "policy": policy.name, "backend": policy.backend,
            "policy_objective": None if planned is None else planned.objective,
            "samples_run": 0 if planned is None else planned.params["samples_run"],
            "hint_objective": best.objective, "hint": best.method,
            "cpsat_status": None if improved is None else improved.status,
        }  # fmt: skip
        if improved is not None and improved.schedule is not None:
            value = improved.objective if static else objective_value(problem.jobs, improved.schedule, objective)
            if value < best.objective:
                return dataclasses.replace(
                    improved, objective=value, method=self.spec, seed=seed, params=params,
                    status=improved.status if improved.status == "optimal" else "feasible",
                )  # fmt: skip
            params["cpsat_objective"] = value
        lower = None if improved is None else improved.lower_bound
        return dataclasses.replace(best, method=self.spec, seed=seed, params=params, lower_bound=lower,
                                   status="optimal" if lower is not None and lower == best.objective else "feasible")  # fmt: skip


def hybrid_factory(spec, *, objective: str | None = None, workers: int = 2, **_: Any) -> HybridDecider:
    """Entry point of the ``hybrid`` decider (group ``sched_env.deciders``)."""
    from agents.loading import PolicyLoadError
    from baselines.deciders import DeciderError

    spec.no_more_than(1, "hybrid or hybrid:SECONDS")
    if spec.qualifier:
        raise DeciderError(f"method {spec.text!r}: hybrid takes no '@' qualifier (it uses the shipped policies)")
    seconds = float(spec.number(0, "SECONDS", default=DEFAULT_SECONDS))
    try:
        return HybridDecider(spec.text, seconds, objective=objective, workers=int(workers))
    except PolicyLoadError as error:
        raise DeciderError(f"method {spec.text!r}: {error}") from None
