"""Google OR-Tools CP-SAT on the job shop: a model builder and a stateless ``solve``.

The builder (:func:`build_model`) is separate from the solve so that rescheduling can add
release dates, frozen work and machine down-times to the same model. ``solve`` is a pure
function ``(instance, budget) -> SolveResult``: nothing is kept between calls, the seed and the
worker count are explicit, the status is mapped explicitly, and the proven bound is returned.
OR-Tools is imported only when this module is (``pip install 'sched-env[cp]'``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from baselines.budget import MIN_SEARCH_S, cpsat_stop
from baselines.deciders import wait_interruptibly
from instances import InfeasibleScheduleError, InvalidInstanceError, JobShopInstance, SolverError
from sched_env.schedule import Schedule, SolveResult, objective_value, validate_schedule

_STATUS = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
    cp_model.INFEASIBLE: "infeasible",
    cp_model.UNKNOWN: "unknown",
}


@dataclass
class JobShopModel:
    """A CP-SAT model of one instance and the variables needed to read a schedule back."""

    model: cp_model.CpModel
    instance: JobShopInstance
    horizon: int
    starts: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    ends: dict[tuple[int, int], cp_model.IntVar] = field(default_factory=dict)
    intervals_by_machine: dict[int, list[cp_model.IntervalVar]] = field(default_factory=dict)
    makespan: cp_model.IntVar | None = None
    #: flexible instances: per operation, its alternatives (machine, duration, presence literal)
    choices: dict[tuple[int, int], list[tuple[int, int, Any]]] = field(default_factory=dict)

    def machine_of(self, solver: cp_model.CpSolver, j: int, k: int) -> int:
        """The machine the solution puts operation ``k`` of job ``j`` on."""
        options = self.choices.get((j, k))
        if not options:
            return int(self.instance.machines[j, k])
        return next(m for m, _, present in options if solver.boolean_value(present))


#: Objectives CP-SAT minimises (names as in ``sched_env.schedule.objectives``; mean flow time
#: is minimised as total flow time, the same optimum).
OBJECTIVES = ("makespan", "total_weighted_tardiness", "mean_flow_time")


def build_model(
    instance: JobShopInstance,
    *,
    horizon: int | None = None,
    blocked: dict[int, list[tuple[int, int]]] | None = None,
    objective: str = "makespan",
) -> JobShopModel:
    """Interval model: one interval per operation, one no-overlap per machine, precedence
    inside each job, release dates, and the objective: ``makespan`` (max of the jobs' last
    ends), ``total_weighted_tardiness`` (needs due dates) or ``mean_flow_time`` (as total flow
    time). ``blocked`` adds fixed intervals per machine (downtimes, running operations) that
    no operation may overlap; they must be disjoint per machine.

    Flexible instances: an operation with several alternatives gets one optional interval per
    alternative (its machine and duration, sharing the operation's start), exactly one present;
    the no-overlap of a machine holds the optional intervals on it.

    Zero-length operations must not sit strictly inside another operation on their machine
    (the validator's rule); CP-SAT's no-overlap ignores them, so a disjunction is added."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if objective == "total_weighted_tardiness" and instance.due_dates is None:
        raise InvalidInstanceError(f"objective 'total_weighted_tardiness' needs due dates; {instance.name!r} has none")
    release = instance.release_dates if instance.release_dates is not None else np.zeros(instance.n_jobs, dtype=int)
    blocked = blocked or {}
    if horizon is None:
        latest_block = max((end for intervals in blocked.values() for _, end in intervals), default=0)
        horizon = int(max(release.max(), latest_block) + instance.durations.sum())
    model = cp_model.CpModel()
    jsm = JobShopModel(model=model, instance=instance, horizon=horizon)
    on_machine: dict[int, list[tuple[int, int, int, Any]]] = {}  # machine -> (job, op, duration, presence)
    for j in range(instance.n_jobs):
        for k in range(int(instance.n_ops[j])):
            start = model.new_int_var(int(release[j]) if k == 0 else 0, horizon, f"start_{j}_{k}")
            end = model.new_int_var(0, horizon, f"end_{j}_{k}")
            jsm.starts[j, k], jsm.ends[j, k] = start, end
            alternatives = instance.alternatives(j, k)
            if len(alternatives) == 1:
                machine, duration = alternatives[0]
                interval = model.new_interval_var(start, duration, end, f"op_{j}_{k}")
                jsm.intervals_by_machine.setdefault(machine, []).append(interval)
                on_machine.setdefault(machine, []).append((j, k, duration, None))
            else:
                _add_alternatives(jsm, j, k, alternatives, on_machine)
            if k > 0:
                model.add(start >= jsm.ends[j, k - 1])
    for machine, intervals in blocked.items():
        for start, end in intervals:
            fixed = model.new_fixed_size_interval_var(int(start), int(end - start), f"blocked_{machine}_{start}")
            jsm.intervals_by_machine.setdefault(int(machine), []).append(fixed)
    for intervals in jsm.intervals_by_machine.values():
        model.add_no_overlap(intervals)
    _keep_points_outside(jsm, on_machine, blocked)
    completions = [jsm.ends[j, int(instance.n_ops[j]) - 1] for j in range(instance.n_jobs)]
    jsm.makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(jsm.makespan, completions)
    if objective == "makespan":
        model.minimize(jsm.makespan)
    elif objective == "mean_flow_time":
        model.minimize(sum(completions) - int(release.sum()))
    else:
        tardiness = []
        for j, completion in enumerate(completions):
            late = model.new_int_var(0, horizon, f"tardiness_{j}")
            model.add(late >= completion - int(instance.due_dates[j]))
            weight = int(instance.weights[j]) if instance.weights is not None else 1
            tardiness.append(weight * late)
        model.minimize(sum(tardiness))
    return jsm


def _add_alternatives(jsm: JobShopModel, j: int, k: int, alternatives, on_machine) -> None:
    """One optional fixed-size interval per alternative of operation (j, k), exactly one present."""
    model, start, end = jsm.model, jsm.starts[j, k], jsm.ends[j, k]
    options = []
    for machine, duration in alternatives:
        present = model.new_bool_var(f"on_{j}_{k}_{machine}")
        interval = model.new_optional_fixed_size_interval_var(start, duration, present, f"op_{j}_{k}_{machine}")
        jsm.intervals_by_machine.setdefault(machine, []).append(interval)
        on_machine.setdefault(machine, []).append((j, k, duration, present))
        options.append((machine, duration, present))
    model.add_exactly_one(present for _, _, present in options)
    model.add(end == start + sum(duration * present for _, duration, present in options))
    jsm.choices[j, k] = options


def _keep_points_outside(jsm: JobShopModel, on_machine, blocked) -> None:
    """A zero-length operation stays at or outside the ends of every other operation on its
    machine (when both are on it), and starts outside every blocked interval [a, b) of it (the
    validator's rule: no start while the machine is down): CP-SAT's no-overlap ignores
    zero-length intervals."""
    model = jsm.model
    for machine, ops in on_machine.items():
        for j, k, duration, present in ops:
            if duration != 0:
                continue
            enforced = [] if present is None else [present]
            for a, b in blocked.get(machine, ()):
                before = model.new_bool_var(f"zero_{j}_{k}_before_block_{machine}_{a}")
                model.add(jsm.starts[j, k] <= int(a) - 1).only_enforce_if([before, *enforced])
                model.add(jsm.starts[j, k] >= int(b)).only_enforce_if([~before, *enforced])
            for i, q, other, other_present in ops:
                if (i, q) == (j, k) or other == 0:
                    continue
                before = model.new_bool_var(f"zero_{j}_{k}_before_{i}_{q}_on_{machine}")
                both = [literal for literal in (present, other_present) if literal is not None]
                model.add(jsm.starts[j, k] <= jsm.starts[i, q]).only_enforce_if([before, *both])
                model.add(jsm.starts[j, k] >= jsm.ends[i, q]).only_enforce_if([~before, *both])


def add_hint(jsm: JobShopModel, schedule: Schedule) -> None:
    """Warm-start CP-SAT from a (feasible) schedule of the same instance (its machines too)."""
    instance = jsm.instance
    validate_schedule(instance, schedule)
    start, end = schedule.start_matrix(instance), schedule.end_matrix(instance)
    machine = np.full((instance.n_jobs, instance.max_ops), -1, dtype=np.int64)
    machine[schedule.job, schedule.op] = schedule.machine
    for (j, k), var in jsm.starts.items():
        jsm.model.add_hint(var, int(start[j, k]))
        jsm.model.add_hint(jsm.ends[j, k], int(end[j, k]))
        for option, _, present in jsm.choices.get((j, k), ()):
            jsm.model.add_hint(present, option == machine[j, k])
    jsm.model.add_hint(jsm.makespan, schedule.makespan)


def solver_parameters(
    time_limit_s: float, workers: int, seed: int, log: bool = False, deterministic_time: float | None = None
) -> cp_model.CpSolver:
    """A CP-SAT solver with every parameter that matters for reproducibility set explicitly.

    A wall-clock limit makes results depend on the machine's load; ``deterministic_time``
    (CP-SAT's work units, about seconds on a fast core) with ``workers=1`` makes them repeatable."""
    if time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    solver.parameters.log_search_progress = bool(log)
    if deterministic_time is not None:
        solver.parameters.max_deterministic_time = float(deterministic_time)
    return solver


#: Seconds per operation to build and load a model (measured: 2 000 operations, ta71, 0.06-0.11 s).
BUILD_S_PER_OP = 6e-5


def worth_searching(n_operations: int, seconds: float) -> bool:
    """Whether ``seconds`` leave room to build a model of ``n_operations`` and search it at all
    (twice the measured build time, for a loaded machine, plus 50 ms); a budgeted caller that
    gets False answers with the plan it already holds instead of over-running."""
    return seconds > 2 * BUILD_S_PER_OP * n_operations + 0.05


def search_time(time_limit_s: float, started: float, n_operations: int, workers: int) -> float:
    """What is left of ``time_limit_s`` since ``started`` (perf_counter) for the search, less what
    the solver takes to stop (:func:`baselines.budget.cpsat_stop`); at least ``MIN_SEARCH_S``."""
    if time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
    return cpsat_stop(workers).left(time_limit_s, started, n_operations, floor=MIN_SEARCH_S)


def run_solver(solver: cp_model.CpSolver, model: cp_model.CpModel) -> tuple[int, bool]:
    """``solver.solve(model)`` and whether Ctrl-C cut it short. CP-SAT's own SIGINT handler would end
    the search as if its time limit had come and hide the Ctrl-C from Python (a benchmark then went
    on to its next solve); instead, in the main thread the search runs in a helper thread and a Ctrl-C
    stops it at once (its best solution stands) and is reported, so the caller can stop too."""
    solver.parameters.catch_sigint_signal = False
    if threading.current_thread() is not threading.main_thread():
        return solver.solve(model), False
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def search() -> None:
        try:
            outcome["status"] = solver.solve(model)
        except BaseException as error:  # noqa: BLE001  (handed to the caller's thread)
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=search, name="cp-sat", daemon=True).start()
    interrupted = wait_interruptibly(finished, solver.stop_search)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["status"], interrupted


def read_schedule(jsm: JobShopModel, solver: cp_model.CpSolver) -> Schedule:
    instance = jsm.instance
    shape = (instance.n_jobs, instance.max_ops)
    start, end, machine = (
        np.full(shape, -1, dtype=np.int64),
        np.full(shape, -1, dtype=np.int64),
        instance.machines.copy(),
    )
    for (j, k), var in jsm.starts.items():
        start[j, k], end[j, k] = solver.value(var), solver.value(jsm.ends[j, k])
        machine[j, k] = jsm.machine_of(solver, j, k)
    return Schedule.from_matrices(instance, start, end, machines=machine)


def _first_line(message: str, limit: int = 300) -> str:
    """The first line of CP-SAT's model check, cut short: the rest can be the whole model."""
    line = (message.strip().splitlines() or ["(no reason given)"])[0]
    return line if len(line) <= limit else line[:limit] + " ..."


def solve(
    instance: JobShopInstance,
    *,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    hint: Schedule | None = None,
    log: bool = False,
    deterministic_time: float | None = None,
    horizon: int | None = None,
) -> SolveResult:
    """Minimise the makespan with CP-SAT within ``time_limit_s`` seconds of search.

    Returns the best schedule found (validated), its status ('optimal' when proven,
    'feasible', 'unknown' when no schedule was found in time), and the proven lower bound.
    The limit covers building the model too: the search gets what is left of it.
    For bit-for-bit repeatable results pass ``workers=1`` and a ``deterministic_time`` budget
    (see :func:`solver_parameters`). ``horizon``: a makespan no plan needs to exceed (a known
    plan's), which bounds every start and end (default: the sum of all durations)."""
    if not isinstance(instance, JobShopInstance):
        raise InvalidInstanceError(f"solve() needs a JobShopInstance, got {type(instance).__name__}")
    started = time.perf_counter()
    jsm = build_model(instance, horizon=horizon)
    if hint is not None:
        add_hint(jsm, hint)
    solver = solver_parameters(search_time(time_limit_s, started, instance.n_operations, workers), workers, seed, log,
                               deterministic_time)  # fmt: skip
    status, interrupted = run_solver(solver, jsm.model)
    if status == cp_model.MODEL_INVALID:
        raise SolverError(f"CP-SAT rejected the model of {instance.name!r}: {_first_line(jsm.model.validate())}")
    name = _STATUS.get(status, "unknown")
    schedule = read_schedule(jsm, solver) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None
    if schedule is not None:
        validate_schedule(instance, schedule)
    bound = int(np.ceil(solver.best_objective_bound - 1e-9)) if status != cp_model.INFEASIBLE else None
    return SolveResult(
        schedule=schedule,
        objective=None if schedule is None else schedule.makespan,
        status=name,
        method="cpsat",
        wall_time_s=time.perf_counter() - started,
        instance_name=instance.name,
        lower_bound=bound,
        seed=seed,
        params={"time_limit_s": time_limit_s, "workers": workers, "hinted": hint is not None}
        | ({"deterministic_time": deterministic_time} if deterministic_time is not None else {})
        | ({"interrupted": True} if interrupted else {}),
    )


def reschedule(
    state,
    *,
    time_limit_s: float = 10.0,
    workers: int = 2,
    seed: int = 0,
    hint: Schedule | None = None,
    objective: str = "total_weighted_tardiness",
) -> SolveResult:
    """Plan the rest of a dynamic shop from a :class:`~sched_env.snapshot.ShopState`.

    Done operations stay where they are, running ones run to their expected end, machines
    are unavailable during the downtimes known now (breakdowns in progress, planned
    maintenance), and every other operation starts at or after ``state.time``. ``hint``: a
    plan of the same state (e.g. the previous plan repaired by :func:`~baselines.repair.right_shift`);
    it must satisfy the state, since an infeasible hint is worse than none. The result's
    schedule holds every known operation and its objective counts every known job."""
    from sched_env.snapshot import plan_rest, plan_violations, residual

    started = time.perf_counter()
    rest = residual(state)
    params = {"time_limit_s": time_limit_s, "workers": workers, "hinted": hint is not None, "objective": objective}
    if rest.instance is None:  # nothing left to plan
        schedule = plan_rest(state, None, "cpsat")
        value = objective_value(state.jobs, schedule, objective)
        return SolveResult(schedule, value, "optimal", "cpsat-reschedule", time.perf_counter() - started,
                           state.jobs.name, value, seed, params)  # fmt: skip
    jsm = build_model(rest.instance, blocked=rest.blocked, objective=objective)
    if hint is not None:
        problems = plan_violations(state, hint)
        if problems:
            raise InfeasibleScheduleError(f"the hint does not fit the shop state: {problems[0]}", problems)
        add_hint(jsm, rest.restrict(hint))
    solver = solver_parameters(search_time(time_limit_s, started, len(jsm.starts), workers), workers, seed)
    status, interrupted = run_solver(solver, jsm.model)
    if interrupted:
        params["interrupted"] = True
    if status == cp_model.MODEL_INVALID:
        raise SolverError(f"CP-SAT rejected the rescheduling model: {_first_line(jsm.model.validate())}")
    name = _STATUS.get(status, "unknown")
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(None, None, name, "cpsat-reschedule", time.perf_counter() - started, state.jobs.name,
                           None, seed, params)  # fmt: skip
    schedule = plan_rest(state, read_schedule(jsm, solver), "cpsat")
    return SolveResult(
        schedule=schedule,
        objective=objective_value(state.jobs, schedule, objective),
        status=name,
        method="cpsat-reschedule",
        wall_time_s=time.perf_counter() - started,
        instance_name=state.jobs.name,
        lower_bound=None,  # the solver's bound is on the residual objective only
        seed=seed,
        params=params,
    )
