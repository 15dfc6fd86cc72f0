"""``hybrid:SECONDS``: the best start plans (dispatching rules, the learned policy's greedy and
sampled plans, a running shop's previous plan repaired) feed the tabu search, which improves
them until the budget ends; on small shops CP-SAT, hinted with the tabu plan, gets the last part
of the budget, where it can still improve a plan or prove it optimal. Anytime: a plan exists
within milliseconds, and the answer is never worse than the best start plan.

Works on a static :class:`JobShopInstance` (makespan) and on a running shop's
:class:`ShopState` (rescheduling the rest, done and running work untouched)::

    deciders.solve(instances.load("ta41"), "hybrid:10")
    deciders.solve(env.snapshot(), "hybrid:1")

The split comes from measurements (``experiments/results/taillard_tabu.md``, ``hybrid_split.md``):
at 1-10 s the tabu search beats CP-SAT on every Taillard size (15x15 and up), so CP-SAT joins
only on shops of at most ``CPSAT_MAX_OPS`` operations to plan; the two tabu searches start from
the two best distinct start plans (the policy's and a rule's), which diversifies them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from baselines.budget import HYBRID_POLISH, MIN_SEARCH_S
from baselines.deciders import default_objective
from instances import JobShopInstance
from sched_env.schedule import SolveResult, objective_value
from sched_env.warmup import warm_up

#: Share of the budget for sampling policy plans (after the greedy one).
SAMPLE_SHARE = 0.05
#: The greedy policy plan must come within this share, else the rule plans are the starts.
GREEDY_SHARE = 0.25
#: CP-SAT polishes the tabu plan (last share of the budget) on shops of at most this many operations to plan.
CPSAT_MAX_OPS = 120
CPSAT_SHARE = 0.4
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
    plans_flexible = True  # the pair policies' plans join the rules' as starts on flexible shops

    @property
    def time_limit_s(self) -> float:
        return self.seconds

    def __post_init__(self) -> None:
        from agents.deciders import PolicyDecider
        from baselines import tabu  # noqa: F401  (registers the "tabu" kernel group)

        try:
            from baselines import cpsat
        except ImportError:  # without OR-Tools the hybrid is the policy and the tabu search
            cpsat = None
        self._cpsat = cpsat
        self._policy = PolicyDecider(self.spec)
        warm_up("tabu")

    def use(self, policies) -> None:
        """Plan with these loaded policies (see :meth:`PolicyDecider.use`)."""
        self._policy.use(policies)

    def _starts(self, problem, objective: str, limit: float, seed: int, hint) -> list[SolveResult]:
        """The rule plans, the policy's plan (if it comes in time) and the repaired hint."""
        from agents.loading import PolicyLoadError
        from agents.rollouts import DeadlineError, solve_with_policy
        from baselines.tabu import start_plans

        starts = start_plans(problem, objective, None if isinstance(problem, JobShopInstance) else hint)
        with contextlib.suppress(DeadlineError, PolicyLoadError):  # no greedy plan in time, or no policy: rules
            policy = self._policy.policy_for(problem)
            starts.append(solve_with_policy(
                policy, problem, samples=self.samples, seed=seed, budget_s=SAMPLE_SHARE * limit,
                objective=objective, method="policy", greedy_budget_s=GREEDY_SHARE * limit,
            ))  # fmt: skip
        distinct = {}
        for start in sorted(starts, key=lambda r: r.objective):
            distinct.setdefault(start.objective, start)
        return list(distinct.values())[: max(1, self.workers)]

    def solve(self, problem, *, budget_s: float | None = None, seed: int = 0, hint=None) -> SolveResult:
        from baselines.tabu import improve, search_seconds

        started = time.perf_counter()
        limit = self.seconds if budget_s is None else min(self.seconds, budget_s)
        static = isinstance(problem, JobShopInstance)
        objective = default_objective(problem, self.objective)
        starts = self._starts(problem, objective, limit, seed, hint)
        size = problem.n_operations if static else len(problem.waiting())
        polish = self._cpsat is not None and size <= CPSAT_MAX_OPS
        tabu_limit = limit * (1 - CPSAT_SHARE) if polish else limit
        result = improve(problem, starts, spec=self.spec, objective=objective,
                         seconds=search_seconds(tabu_limit, started), seed=seed, workers=self.workers)  # fmt: skip
        result.params.update(policy_objective=next((s.objective for s in starts if s.method == "policy"), None))
        if polish and result.status != "optimal" and not result.params.get("interrupted"):
            result = self._polish(problem, result, objective, size, limit, started, seed)
        return dataclasses.replace(result, method=self.spec, wall_time_s=time.perf_counter() - started)

    def _polish(self, problem, best: SolveResult, objective: str, size: int, limit: float, started: float, seed: int):
        """CP-SAT hinted with the tabu plan for what is left of ``limit``; kept when better (or
        proven optimal). ``size``: the operations to plan."""
        remaining = HYBRID_POLISH.left(limit, started)
        static = isinstance(problem, JobShopInstance)
        if remaining <= MIN_SEARCH_S or not self._cpsat.worth_searching(size, remaining):
            return best
        if static:
            improved = self._cpsat.solve(problem, time_limit_s=remaining, workers=self.workers, seed=seed,
                                         hint=best.schedule)  # fmt: skip
        else:
            improved = self._cpsat.reschedule(problem, time_limit_s=remaining, workers=self.workers, seed=seed,
                                              hint=best.schedule, objective=objective)  # fmt: skip
        params: dict[str, Any] = {**best.params, "cpsat_status": improved.status}
        if improved.schedule is None:
            return dataclasses.replace(best, params=params)
        value = improved.objective if static else objective_value(problem.jobs, improved.schedule, objective)
        params["cpsat_objective"] = value
        if value < best.objective or improved.status == "optimal" and value == best.objective:
            return dataclasses.replace(improved, objective=value, params=params, seed=seed,
                                       status="optimal" if improved.status == "optimal" else "feasible")  # fmt: skip
        return dataclasses.replace(best, params=params)


def hybrid_factory(spec, *, objective: str | None = None, workers: int = 2, **_: Any) -> HybridDecider:
    """Entry point of the ``hybrid`` decider (group ``sched_env.deciders``)."""
    from agents.loading import PolicyLoadError
    from baselines.deciders import MAX_SECONDS, DeciderError

    spec.no_more_than(1, "hybrid or hybrid:SECONDS")
    if spec.qualifier:
        raise DeciderError(f"method {spec.text!r}: hybrid takes no '@' qualifier (it uses the shipped policies)")
    seconds = float(spec.number(0, "SECONDS", default=DEFAULT_SECONDS, maximum=MAX_SECONDS))
    try:
        return HybridDecider(spec.text, seconds, objective=objective, workers=int(workers))
    except PolicyLoadError as error:
        raise DeciderError(f"method {spec.text!r}: {error}") from None
