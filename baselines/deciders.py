"""One door to every decider: a protocol, a method-spec language and a registry.

A *decider* turns a problem into a :class:`~sched_env.schedule.SolveResult` within a budget::

    decider.solve(problem, budget_s=None, seed=0, hint=None) -> SolveResult

where ``problem`` is a :class:`~instances.JobShopInstance` (static: minimise the makespan) or
a :class:`~sched_env.snapshot.ShopState` (rescheduling: plan the rest of a running shop, done
and running work untouched), and ``hint`` an optional plan of the same problem to start from
(rescheduling: the previous plan in the state's job numbering; operations may be missing).

Deciders are named by *method specs* ``NAME[:ARG...][@QUALIFIER]``::

    mwkr  mwkr@giffler_thompson  atc  random:128  cpsat:10  cpsat:10:hint  tabu:10  tabu:iters=20000  right-shift
    policy  policy:128  policy@PATH  hybrid:10          (the last ones from sched-env's agents)

Every number a spec sets has a range, checked when the decider is built (NaN, infinities and
values out of range are refused, naming the argument): SECONDS in (0, 86 400], sample counts
N and K from 1 to 10 000, tabu ``iters`` from 1 to 10^9.

Names come from the registry: the built-ins (each in its own module: ``rule_decider``,
``cpsat_decider``, ``tabu``, ``repair``, loaded only when first built), anything added with :func:`register`,
and every entry point of the group ``sched_env.deciders`` of any installed package (the
packaging convention pytest and gymnasium plugins use), so a new decider appears in the CLI,
the benchmark, the replanner and the service without ``baselines`` importing it. An entry
point names a factory ``factory(spec: MethodSpec, **options) -> Decider``; options are
``objective`` (None: makespan for instances, total weighted tardiness for shop states) and
``workers`` (CP-SAT threads).

:func:`solve` is what every caller uses: it builds the decider (imports and model loads, the
cold start, before the clock starts), runs it, measures the wall time of the solve and records
the budget, so over-runs are visible (``result.over_budget``). CP-SAT counts model building
inside its limit; rules cannot stop early but report an over-run. Ctrl-C stops a search at once
and :func:`solve` raises :class:`SolveInterrupted` carrying the best plan found so far.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np

from instances import JobShopInstance, SchedEnvError
from sched_env._names import RULES, split_machine_rule
from sched_env.schedule import Schedule, SolveResult
from sched_env.snapshot import ShopState
from sched_env.warmup import warm_up

ENTRY_POINT_GROUP = "sched_env.deciders"
Problem = JobShopInstance | ShopState
#: The range of every number a method spec can set, checked when the decider is built, so that
#: no spec asks for unbounded work or memory (a host may bound time further with its budget).
MAX_SECONDS = 86_400.0  # cpsat:S, tabu:S, hybrid:S: at most a day
MAX_SAMPLES = 10_000  # random:N, policy:K: sampled rollouts (run in bounded chunks, the best kept)
MAX_ITERATIONS = 10**9  # tabu:iters=N
#: sched-env's deciders that live above ``baselines`` (in ``agents``) and join through entry points,
#: so this layer never imports them: name -> (summary, quick example spec).
OWN_ENTRY_POINTS = {
    "policy": (
        "learned policy: policy (greedy), policy:K (best of K samples), policy@PATH (a model file)",
        "policy",
        "file",
    ),
    "hybrid": (
        "rule and policy plans improved by the tabu search (CP-SAT on small shops), hybrid:SECONDS",
        "hybrid:1",
        "none",
    ),
}
#: What an ``@QUALIFIER`` names, per registration: an action set, a file, nothing allowed, or
#: unknown (a third party's decider: it may read a file, so a host that allows none refuses it).
QUALIFIER_KINDS = ("action-set", "file", "none", "unknown")


class DeciderError(SchedEnvError, ValueError):
    """A method spec that names no decider, or a decider that cannot take this problem."""


class SolveInterrupted(KeyboardInterrupt):
    """Ctrl-C cut a search short: ``result`` holds the best plan it had (valid, as any result;
    ``result.params["interrupted"]`` is True). A KeyboardInterrupt, so whoever does not look for
    the plan stops as on any Ctrl-C."""

    def __init__(self, result: SolveResult) -> None:
        super().__init__(f"{result.method}: interrupted; the best plan so far is kept")
        self.result = result


def wait_interruptibly(done: threading.Event, stop: Callable[[], None]) -> bool:
    """Wait until ``done`` is set; each Ctrl-C meanwhile calls ``stop`` (the work then ends at once,
    keeping its best plan). Whether Ctrl-C came. On an Event, not ``Thread.join``: an interrupted
    join marks the still-running thread stopped."""
    interrupted = False
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            interrupted = True
            stop()
    return interrupted


@runtime_checkable
class Decider(Protocol):
    """Anything with a ``spec`` and this ``solve`` is a decider.

    A decider may also declare what callers would otherwise have to guess (read through
    :func:`traits`; one that declares nothing gets the defaults in brackets):

    * ``time_limit_s``: its own time limit in seconds, None for an instant decider [None];
    * ``dispatches``: it decides one operation at a time, online, and has
      ``choose(batch, observation) -> actions`` for a batched dynamic env [False: it plans];
    * ``reads_files``: it reads a file its spec names (``policy@PATH``) [False];
    * ``plans_flexible``: it plans flexible shops (operations with alternative machines) and
      running flexible shops; :func:`solve` refuses a flexible problem to one that does not [False];
    * ``use(models)``: take the loaded policies a host hands it (``{"static": ..., "dynamic": ...}``)
      instead of loading its own [no such method: it needs none].
    """

    spec: str

    def solve(
        self, problem: Problem, *, budget_s: float | None = None, seed: int = 0, hint: Schedule | None = None
    ) -> SolveResult: ...


@dataclass(frozen=True)
class DeciderTraits:
    """What a built decider declares about itself (see :class:`Decider`)."""

    family: str  # the registered name it was built under (a bounded label: ``cpsat`` for any ``cpsat:S``)
    time_limit_s: float | None
    dispatches: bool
    reads_files: bool
    takes_models: bool
    plans_flexible: bool


def traits(decider: Decider) -> DeciderTraits:
    """What ``decider`` declares, with the defaults for whatever it leaves out."""
    limit = getattr(decider, "time_limit_s", None)
    return DeciderTraits(
        family=MethodSpec.parse(decider.spec).name,
        time_limit_s=None if limit is None else float(limit),
        dispatches=bool(getattr(decider, "dispatches", False)) and callable(getattr(decider, "choose", None)),
        reads_files=bool(getattr(decider, "reads_files", False)),
        takes_models=callable(getattr(decider, "use", None)),
        plans_flexible=bool(getattr(decider, "plans_flexible", False)),
    )


def is_flexible(problem: Problem) -> bool:
    """Has the problem (an instance, or a running shop's jobs) operations with alternative machines?"""
    return (problem if isinstance(problem, JobShopInstance) else problem.jobs).is_flexible


def require_flexible_support(decider: Decider, problem: Problem) -> None:
    """Refuse, with what to use instead, a flexible problem to a decider that plans classic shops only."""
    if is_flexible(problem) and not traits(decider).plans_flexible:
        able = [name for name in ("cpsat", "tabu", "hybrid") if name in _REGISTRY]
        raise DeciderError(
            f"method {decider.spec!r} plans classic shops only (one machine per operation), and"
            f" {'this instance' if isinstance(problem, JobShopInstance) else 'this shop'} has operations with"
            f" alternative machines; use a rule with a machine rule (mwkr+eet, spt+spt, ...){' or ' if able else ''}"
            + ", ".join(f"{name}:S" for name in able)
        )


def give_models(decider: Decider, models: dict[str, Any]) -> None:
    """Hand a host's loaded policies to a decider that takes them (:meth:`Decider.use`)."""
    use = getattr(decider, "use", None)
    if callable(use):
        use(models)


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

    def number(
        self,
        index: int,
        what: str,
        *,
        integer: bool = False,
        default: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        """The ``index``-th argument as a positive number (or ``default`` when absent), at most
        ``maximum`` (every number a spec can set has a range: :data:`MAX_SECONDS`, :data:`MAX_SAMPLES`,
        :data:`MAX_ITERATIONS`)."""
        if index >= len(self.args):
            return default
        text = self.args[index].removeprefix(f"{what}=") if what.isidentifier() else self.args[index]
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = 0
        if not math.isfinite(value) or value <= 0 or (maximum is not None and value > maximum):
            kind = "a positive integer" if integer else "a positive number"
            bound = f" (at most {maximum:,.0f})" if maximum is not None else ""
            raise DeciderError(f"method {self.text!r}: {what} must be {kind}{bound}, got {self.args[index]!r}")
        return value

    def refuse_args_after_qualifier(self) -> None:
        """Refuse, saying what to write, a spec whose ':' arguments were put after '@'
        (``policy@press:16`` for ``policy:16@press``); any other spec passes."""
        where, colon, tail = (self.qualifier or "").rpartition(":")
        if colon and where and tail.replace(".", "", 1).isdigit():
            head = self.text.partition("@")[0]
            raise DeciderError(f"method {self.text!r}: ':' arguments go before '@': {head}:{tail}@{where}")

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
    qualifier: str = "unknown"  # what '@...' names (QUALIFIER_KINDS)


_REGISTRY: dict[str, Registration] = {}
_entry_points_loaded = False


def register(
    name: str,
    factory: Callable[..., Decider],
    *,
    summary: str = "",
    example: str | None = None,
    origin: str = "register()",
    qualifier: str = "unknown",
) -> None:
    """Add a decider under ``name`` (lower case, no ':' or '@'). ``factory(spec, **options)``
    returns a :class:`Decider`; ``example`` is a spec that runs it quickly; ``qualifier`` says
    what ``NAME@...`` names (one of :data:`QUALIFIER_KINDS`)."""
    if not name or any(c in name for c in ":@ ") or name != name.lower():
        raise DeciderError(f"decider names are lower case without ':', '@' or spaces, got {name!r}")
    if qualifier not in QUALIFIER_KINDS:
        raise DeciderError(f"qualifier must be one of {', '.join(QUALIFIER_KINDS)}, got {qualifier!r}")
    _REGISTRY[name] = Registration(name, factory, summary, example or name, origin, qualifier)


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
            summary, example, qualifier = OWN_ENTRY_POINTS[point.name]
            register(point.name, _LazyFactory(point), summary=summary, example=example, origin="sched-env",
                     qualifier=qualifier)  # fmt: skip
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


def make(spec: str, *, allow_files: bool = True, **options: Any) -> Decider:
    """Build the decider a method spec names, or say which names exist. ``allow_files=False``
    (a service) refuses, before anything is read, a spec that may name a file (``policy@PATH``,
    or any ``@...`` of a third party's decider), and any built decider that declares it reads one."""
    parsed = MethodSpec.parse(spec)
    known = registered()
    rule_names = tuple(RULES)
    registration = known.get(split_machine_rule(parsed.name)[0])
    if registration is None:
        others = ", ".join(n for n in known if n not in rule_names)
        raise DeciderError(
            f"unknown method {spec!r}; rules: {', '.join(rule_names)} (RULE@ACTION_SET, random:N, RULE+MACHINE_RULE"
            f" on flexible shops: mwkr+eet, spt+spt, ...); others: {others} (see `sched-env solve --list-methods`)"
        )
    if not allow_files and parsed.qualifier is not None and registration.qualifier not in ("action-set", "none"):
        raise DeciderError(
            f"method {spec!r}: '@{parsed.qualifier}' may name a file, and this host reads none; drop '@...'"
        )
    decider = registration.factory(parsed, **options)
    if not allow_files and traits(decider).reads_files:
        raise DeciderError(f"method {spec!r} reads a file, and this host reads none")
    return decider


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
    the solve and the budget. Building the decider (imports, model loads) and loading the
    simulator's kernels (the cold start) come before the clock starts, so that no budget pays for them."""
    if budget_s is not None and not budget_s > 0:
        raise DeciderError(f"budget_s must be > 0 seconds, got {budget_s}")
    if not isinstance(problem, (JobShopInstance, ShopState)):
        raise DeciderError(f"a decider solves a JobShopInstance or a ShopState, got {type(problem).__name__}")
    decider = make(method, **options) if isinstance(method, str) else method  # imports and model loads: no budget pays
    require_flexible_support(decider, problem)
    warm_up("static" if isinstance(problem, JobShopInstance) else "dynamic")  # kernels loaded once: no budget pays
    started = time.perf_counter()
    result = decider.solve(problem, budget_s=budget_s, seed=seed, hint=hint)
    result = dataclasses.replace(result, wall_time_s=time.perf_counter() - started, budget_s=budget_s)
    if (result.params or {}).get("interrupted"):  # Ctrl-C stopped the search: the caller stops, the plan kept
        raise SolveInterrupted(result)
    return result


# ---------------------------------------------------------------------- built-in deciders
def default_objective(problem: Problem, objective: str | None = None) -> str:
    """``objective``, or the default for the problem: the makespan of an instance, the total
    weighted tardiness of a running shop."""
    if objective is not None:
        return objective
    return "makespan" if isinstance(problem, JobShopInstance) else "total_weighted_tardiness"


#: The built-in deciders: name -> (factory as ``module:attribute``, summary, example spec, qualifier).
#: Each lives in its own module, imported when its decider is first built (as an entry point is).
BUILTINS = {
    "cpsat": (
        "baselines.cpsat_decider:cpsat_factory",
        "OR-Tools CP-SAT, cpsat:SECONDS[:hint] (static solve or rescheduling)",
        "cpsat:1",
        "none",
    ),
    "tabu": (
        "baselines.tabu:tabu_factory",
        "tabu search (compiled N5, elite restarts), tabu:SECONDS or tabu:iters=N (static solve or rescheduling)",
        "tabu:1",
        "none",
    ),
    "right-shift": (
        "baselines.repair:right_shift_factory",
        "right-shift repair of the previous plan (rescheduling only)",
        "right-shift",
        "none",
    ),
}
RULE_FACTORY = "baselines.rule_decider:rule_factory"


def _register_builtins() -> None:
    for name, summary in RULES.items():
        point = EntryPoint(name, RULE_FACTORY, ENTRY_POINT_GROUP)
        register(name, _LazyFactory(point), summary=f"dispatching rule: {summary}",
                 example="random:4" if name == "random" else name, origin="sched-env", qualifier="action-set")  # fmt: skip
    for name, (target, summary, example, qualifier) in BUILTINS.items():
        point = EntryPoint(name, target, ENTRY_POINT_GROUP)
        register(name, _LazyFactory(point), summary=summary, example=example, origin="sched-env", qualifier=qualifier)


_register_builtins()


def dispatch_online(
    decider: Decider, scenarios, *, objective: str = "total_weighted_tardiness", window: int | None = None
) -> list[SolveResult]:
    """Run each dynamic scenario to its end with a dispatching decider choosing at every decision
    epoch (``decider.choose`` on one batched env of all scenarios, stepped together; a decider
    may bring a faster ``dispatch_scenarios`` of its own, as the rules do). Schedules hold the real
    times and are validated against the scenarios. ``window``: the env's job slots (default:
    one per job; a long stream needs only as many as are in the shop at once)."""
    if not traits(decider).dispatches:
        raise DeciderError(
            f"{decider.spec} plans whole schedules and does not dispatch online; replan with it instead"
            " (baselines.replan.Replanner)"
        )
    scenarios = list(scenarios)
    own = getattr(decider, "dispatch_scenarios", None)
    if callable(own):
        return own(scenarios, objective=objective, **({"window": window} if window else {}))
    return dispatch_by_choosing(decider, scenarios, objective=objective, window=window)


def dispatch_by_choosing(
    decider: Decider, scenarios, *, objective: str = "total_weighted_tardiness", window: int | None = None
) -> list[SolveResult]:
    """:func:`dispatch_online` by ``decider.choose`` on one batched env of all scenarios, stepped
    together (what a dispatcher without its own ``dispatch_scenarios`` gets)."""
    from sched_env.dynamic import BatchDynamicJobShopEnv, episode_summary
    from sched_env.schedule import objectives

    scenarios = list(scenarios)
    started = time.perf_counter()
    batch = BatchDynamicJobShopEnv(len(scenarios), scenarios, objective=objective, max_jobs=window)
    obs, _ = batch.reset(options={"scenarios": scenarios})
    finished = np.zeros(len(scenarios), dtype=bool)
    summaries: list[dict | None] = [None] * len(scenarios)
    while not finished.all():
        obs, _, dones, _, info = batch.step(np.asarray(decider.choose(batch, obs), dtype=np.int64))
        for i in np.flatnonzero(dones & ~finished).tolist():
            finished[i] = True
            final = info["final_info"]
            summaries[i] = episode_summary(
                scenarios[i], batch.final_schedule(i), int(final["wasted_work"][i]), int(final["max_queued"][i])
            )
    elapsed = (time.perf_counter() - started) / max(len(scenarios), 1)
    results = []
    for scenario, summary in zip(scenarios, summaries):
        values = objectives(scenario.jobs, summary["schedule"])
        results.append(
            SolveResult(
                schedule=summary["schedule"], objective=values[objective], status="feasible", method=decider.spec,
                wall_time_s=elapsed, instance_name=scenario.name,
                params={"objective": objective, **values, "max_queued": summary["max_queued"]},
            )
        )  # fmt: skip
    return results


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
    "DeciderTraits",
    "MethodSpec",
    "SolveInterrupted",
    "as_plan",
    "default_objective",
    "describe",
    "dispatch_online",
    "give_models",
    "make",
    "register",
    "registered",
    "solve",
    "traits",
]
