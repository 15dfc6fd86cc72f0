"""One door to every decider: a protocol, a method-spec language and a registry.

A *decider* turns a problem into a :class:`~sched_env.schedule.SolveResult` within a budget::

    decider.solve(problem, budget_s=None, seed=0, hint=None) -> SolveResult

where ``problem`` is a :class:`~instances.JobShopInstance` (static: minimise the makespan) or
a :class:`~sched_env.snapshot.ShopState` (rescheduling: plan the rest of a running shop, done
and running work untouched), and ``hint`` an optional plan of the same problem to start from
(rescheduling: the previous plan in the state's job numbering; operations may be missing).

Deciders are named by *method specs* ``NAME[:ARG...][@QUALIFIER]``::

    mwkr  mwkr@giffler_thompson  atc  random:128  cpsat:10  cpsat:10:hint  right-shift
    policy  policy:128  policy@PATH  hybrid:10          (the last ones from sched-env's agents)

Names come from the registry: the built-ins below, anything added with :func:`register`,
and every entry point of the group ``sched_env.deciders`` of any installed package (the
packaging convention pytest and gymnasium plugins use), so a new decider appears in the CLI,
the benchmark, the replanner and the service without ``baselines`` importing it. An entry
point names a factory ``factory(spec: MethodSpec, **options) -> Decider``; options are
``objective`` (None: makespan for instances, total weighted tardiness for shop states) and
``workers`` (CP-SAT threads).

:func:`solve` is what every caller uses: it builds the decider (imports and model loads, the
cold start, before the clock starts), runs it, measures the wall time of the solve and records
the budget, so over-runs are visible (``result.over_budget``). CP-SAT counts model building
inside its limit; rules cannot stop early but report an over-run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from instances import JobShopInstance, SchedEnvError
from sched_env.schedule import Schedule, SolveResult, objective_value
from sched_env.snapshot import ShopState

ENTRY_POINT_GROUP = "sched_env.deciders"
Problem = JobShopInstance | ShopState
#: Rules tried for a ``:hint`` warm start; the best schedule is the hint.
HINT_RULES = ("mwkr", "mopnr", "spt", "fifo", "lwkr", "lpt")
DEFAULT_CPSAT_SECONDS = 10.0
#: sched-env's deciders that live above ``baselines`` (in ``agents``) and join through entry points,
#: so this layer never imports them: name -> (summary, quick example spec).
OWN_ENTRY_POINTS = {
    "policy": ("learned policy: policy (greedy), policy:K (best of K samples), policy@PATH (a model file)", "policy"),
    "hybrid": ("policy plans as CP-SAT's hint, hybrid:SECONDS (static solve or rescheduling)", "hybrid:1"),
}


class DeciderError(SchedEnvError, ValueError):
    """A method spec that names no decider, or a decider that cannot take this problem."""


@runtime_checkable
class Decider(Protocol):
    """Anything with this ``solve`` is a decider."""

    spec: str

    def solve(
        self, problem: Problem, *, budget_s: float | None = None, seed: int = 0, hint: Schedule | None = None
    ) -> SolveResult: ...


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec ``NAME[:ARG...][@QUALIFIER]``."""

    text: str
    name: str
    args: tuple[str, ...] = ()
    qualifier: str | None = None

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        if not isinstance(text, str) or not text.strip():
            raise DeciderError(f"a method spec must be a non-empty string like 'mwkr' or 'cpsat:10', got {text!r}")
        head, at, qualifier = text.strip().partition("@")
        name, *args = head.split(":")
        if at and not qualifier:
            raise DeciderError(f"method {text!r}: nothing after '@'")
        return cls(text.strip(), name.lower(), tuple(args), qualifier or None)

    def number(self, index: int, what: str, *, integer: bool = False, default: float | None = None) -> float | None:
        """The ``index``-th argument as a positive number (or ``default`` when absent)."""
        if index >= len(self.args):
            return default
        try:
            value = int(self.args[index]) if integer else float(self.args[index])
        except ValueError:
            value = 0
        if value <= 0:
            kind = "a positive integer" if integer else "a positive number"
            raise DeciderError(f"method {self.text!r}: {what} must be {kind}, got {self.args[index]!r}")
        return value

    def no_more_than(self, n_args: int, usage: str) -> None:
        if len(self.args) > n_args:
            raise DeciderError(f"method {self.text!r}: too many ':' arguments; write {usage}")


@dataclass(frozen=True)
class Registration:
    name: str
    factory: Callable[..., Decider]
    summary: str
    example: str  # a spec that runs quickly, e.g. for tests and --list-methods
    origin: str  # "sched-env", "entry point (PACKAGE)" or "register()"


_REGISTRY: dict[str, Registration] = {}
_entry_points_loaded = False


def register(
    name: str,
    factory: Callable[..., Decider],
    *,
    summary: str = "",
    example: str | None = None,
    origin: str = "register()",
) -> None:
    """Add a decider under ``name`` (lower case, no ':' or '@'). ``factory(spec, **options)``
    returns a :class:`Decider`; ``example`` is a spec that runs it quickly."""
    if not name or any(c in name for c in ":@ ") or name != name.lower():
        raise DeciderError(f"decider names are lower case without ':', '@' or spaces, got {name!r}")
    _REGISTRY[name] = Registration(name, factory, summary, example or name, origin)


def _load_entry_points() -> None:
    """Register every ``sched_env.deciders`` entry point (its factory loads when first used)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _REGISTRY and _REGISTRY[point.name].origin == "sched-env":
            continue  # our own built-ins, also declared as entry points in pyproject.toml
        package = point.dist.name if point.dist is not None else point.value.split(":")[0]
        if package == "sched-env" and point.name in OWN_ENTRY_POINTS:  # ours, from a layer above baselines
            summary, example = OWN_ENTRY_POINTS[point.name]
            register(point.name, _LazyFactory(point), summary=summary, example=example, origin="sched-env")
            continue
        register(point.name, _LazyFactory(point), summary=f"from {package}", origin=f"entry point ({package})")


class _LazyFactory:
    """Imports an entry point's factory only when its decider is first built."""

    def __init__(self, point) -> None:
        self.point = point

    def __call__(self, spec: MethodSpec, **options: Any) -> Decider:
        try:
            factory = self.point.load()
        except Exception as error:  # a broken plugin must say which one, not crash the CLI
            raise DeciderError(
                f"decider {self.point.name!r} (entry point {self.point.value}) failed to load: {error}"
            ) from error
        return factory(spec, **options)


def registered() -> dict[str, Registration]:
    """Every decider name known now (built-ins, ``register()`` calls, entry points)."""
    _load_entry_points()
    return dict(_REGISTRY)


def make(spec: str, **options: Any) -> Decider:
    """Build the decider a method spec names, or say which names exist."""
    parsed = MethodSpec.parse(spec)
    known = registered()
    rule_names = _rule_names()
    registration = known.get(parsed.name)
    if registration is None:
        others = ", ".join(n for n in known if n not in rule_names)
        raise DeciderError(
            f"unknown method {spec!r}; rules: {', '.join(rule_names)} (RULE@ACTION_SET, random:N); others: {others}"
            " (see `sched-env solve --list-methods`)"
        )
    return registration.factory(parsed, **options)


def solve(
    problem: Problem,
    method: str | Decider,
    *,
    budget_s: float | None = None,
    seed: int = 0,
    hint: Schedule | None = None,
    **options: Any,
) -> SolveResult:
    """Run a decider (a spec or a built one) on a problem; the result records the wall time of
    the solve and the budget. Building the decider (imports, model loads: the cold start) comes
    before the clock starts, so that no budget pays for it."""
    if budget_s is not None and not budget_s > 0:
        raise DeciderError(f"budget_s must be > 0 seconds, got {budget_s}")
    if not isinstance(problem, (JobShopInstance, ShopState)):
        raise DeciderError(f"a decider solves a JobShopInstance or a ShopState, got {type(problem).__name__}")
    decider = make(method, **options) if isinstance(method, str) else method  # imports and model loads: no budget pays
    started = time.perf_counter()
    result = decider.solve(problem, budget_s=budget_s, seed=seed, hint=hint)
    return dataclasses.replace(result, wall_time_s=time.perf_counter() - started, budget_s=budget_s)


# ---------------------------------------------------------------------- built-in deciders
def _rule_names() -> tuple[str, ...]:
    from baselines.rules import RULES

    return tuple(RULES)


def _objective(problem: Problem, objective: str | None) -> str:
    if objective is not None:
        return objective
    return "makespan" if isinstance(problem, JobShopInstance) else "total_weighted_tardiness"


@dataclass
class RuleDecider:
    """A dispatching rule in the compiled simulator; ``random:N`` keeps the best of N samples.
    On a shop state it dispatches the rest of the work around the known downtimes."""

    spec: str
    rule: str
    action_set: str = "non_delay"
    samples: int = 1
    objective: str | None = None

    def solve(self, problem: Problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        from baselines import rules

        if isinstance(problem, JobShopInstance):
            if self.samples > 1:
                result = rules.best_of_random(problem, self.samples, action_set=self.action_set, seed=seed)
            else:
                result = rules.dispatch(problem, self.rule, action_set=self.action_set, seed=seed)
            return dataclasses.replace(result, method=self.spec)
        return rules.dispatch_state(
            problem, self.rule, objective=_objective(problem, self.objective), samples=self.samples, seed=seed,
            method=self.spec,
        )  # fmt: skip


def _rule_factory(spec: MethodSpec, *, objective: str | None = None, **_: Any) -> Decider:
    from sched_env.shop import ACTION_SETS

    action_set = spec.qualifier or "non_delay"
    if action_set not in ACTION_SETS:
        raise DeciderError(
            f"method {spec.text!r}: unknown action set {action_set!r}; choose one of {', '.join(ACTION_SETS)}"
        )
    samples = 1
    if spec.name == "random":
        spec.no_more_than(1, "random or random:N")
        samples = int(spec.number(0, "the sample count N", integer=True, default=1))
    else:
        spec.no_more_than(0, f"{spec.name} or {spec.name}@ACTION_SET (only random takes :N)")
    return RuleDecider(spec.text, spec.name, action_set, samples, objective)


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
    lowers it), ``:hint`` warm-starts from the best rule schedule. On a shop state: CP-SAT
    rescheduling, warm-started from the given plan repaired by right-shift (or the rule hint)."""

    spec: str
    time_limit_s: float
    hinted: bool = False
    objective: str | None = None
    workers: int = 2

    def __post_init__(self) -> None:
        self._cpsat = import_cpsat(self.spec)

    def solve(self, problem: Problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        cpsat = self._cpsat
        started = time.perf_counter()
        limit = self.time_limit_s if budget_s is None else min(self.time_limit_s, budget_s)
        if isinstance(problem, JobShopInstance):
            if _objective(problem, self.objective) != "makespan":
                raise DeciderError(f"{self.spec}: a static instance is solved for the makespan only")
            if hint is None and self.hinted:
                hint = _best_rule_schedule(problem)
            result = cpsat.solve(
                problem, time_limit_s=cpsat._search_time(limit, started),
                workers=self.workers, seed=seed, hint=hint,
            )  # fmt: skip
            return dataclasses.replace(result, method=self.spec)
        from baselines.repair import right_shift

        objective = _objective(problem, self.objective)
        start_plan = None
        if hint is not None:
            start_plan = right_shift(problem, hint, objective=objective).schedule
        elif self.hinted:
            start_plan = _best_rule_plan(problem, objective).schedule
        result = cpsat.reschedule(
            problem, time_limit_s=cpsat._search_time(limit, started), workers=self.workers, seed=seed,
            hint=start_plan, objective=objective,
        )  # fmt: skip
        if result.schedule is None and start_plan is not None:  # no better plan in time: keep the start
            value = objective_value(problem.jobs, start_plan, objective)
            result = dataclasses.replace(result, schedule=start_plan, objective=value, status="feasible")
        return dataclasses.replace(result, method=self.spec)


def _cpsat_factory(spec: MethodSpec, *, objective: str | None = None, workers: int = 2, **_: Any) -> Decider:
    spec.no_more_than(2, "cpsat, cpsat:SECONDS or cpsat:SECONDS:hint")
    if len(spec.args) == 2 and spec.args[1] != "hint":
        raise DeciderError(f"method {spec.text!r}: write cpsat:SECONDS or cpsat:SECONDS:hint, e.g. cpsat:10")
    if spec.qualifier:
        raise DeciderError(f"method {spec.text!r}: cpsat takes no '@' qualifier")
    seconds = spec.number(0, "SECONDS", default=DEFAULT_CPSAT_SECONDS)
    return CpSatDecider(spec.text, float(seconds), len(spec.args) == 2, objective, int(workers))


@dataclass
class RightShiftDecider:
    """Right-shift repair of the given plan (rescheduling only): each machine keeps the plan's
    order, operations move later only as far as the shop forces; new work goes last."""

    spec: str
    objective: str | None = None

    def solve(self, problem: Problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        from baselines.repair import right_shift

        if not isinstance(problem, ShopState):
            raise DeciderError(
                "right-shift repairs a plan of a running shop (a ShopState); for a static instance use a rule or cpsat"
            )
        result = right_shift(problem, hint, objective=_objective(problem, self.objective))
        return dataclasses.replace(result, method=self.spec, seed=seed)


def _right_shift_factory(spec: MethodSpec, *, objective: str | None = None, **_: Any) -> Decider:
    spec.no_more_than(0, "right-shift")
    return RightShiftDecider(spec.text, objective)


def _best_rule_schedule(instance: JobShopInstance) -> Schedule:
    from baselines import rules

    return min(rules.dispatch_many([instance] * len(HINT_RULES), list(HINT_RULES)), key=lambda r: r.objective).schedule


def _best_rule_plan(state: ShopState, objective: str) -> SolveResult:
    from baselines import rules

    candidates = [rules.dispatch_state(state, rule, objective=objective) for rule in ("atc", "edd", "spt", "mwkr")]
    return min(candidates, key=lambda r: (r.objective, r.method))


def _register_builtins() -> None:
    from baselines.rules import RULES

    for name, summary in RULES.items():
        example = "random:4" if name == "random" else name
        register(name, _rule_factory, summary=f"dispatching rule: {summary}", example=example, origin="sched-env")
    register(
        "cpsat", _cpsat_factory, summary="OR-Tools CP-SAT, cpsat:SECONDS[:hint] (static solve or rescheduling)",
        example="cpsat:1", origin="sched-env",
    )  # fmt: skip
    register(
        "right-shift", _right_shift_factory, summary="right-shift repair of the previous plan (rescheduling only)",
        example="right-shift", origin="sched-env",
    )  # fmt: skip


_register_builtins()


def describe() -> list[tuple[str, str, str, str]]:
    """(name, example spec, summary, origin) of every registered decider, for listings."""
    return [(r.name, r.example, r.summary, r.origin) for r in registered().values()]


def as_plan(state: ShopState, plan: Schedule, plan_job_ids: np.ndarray) -> Schedule:
    """A plan made for an earlier state (job ``i`` = scenario job ``plan_job_ids[i]``) in the
    numbering of ``state``; operations of jobs no longer in the state are dropped."""
    local = {int(job): i for i, job in enumerate(state.job_ids.tolist())}
    keep = [
        (local[int(plan_job_ids[j])], k, m, s, e)
        for j, k, m, s, e in zip(plan.job, plan.op, plan.machine, plan.start, plan.end)
        if int(plan_job_ids[j]) in local
    ]
    rows = np.array(keep, dtype=np.int64).reshape(-1, 5)
    return Schedule(*rows.T, instance_name=state.jobs.name)


__all__ = [
    "ENTRY_POINT_GROUP",
    "Decider",
    "DeciderError",
    "MethodSpec",
    "RuleDecider",
    "CpSatDecider",
    "RightShiftDecider",
    "as_plan",
    "describe",
    "make",
    "register",
    "registered",
    "solve",
]
