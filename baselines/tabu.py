"""Tabu search on the disjunctive graph: the best plan a budget allows, for a static instance
(makespan) and for the rest of a running shop (makespan, weighted tardiness, flow time).

The search (Nowicki and Smutnicki's TSAB, compiled in :mod:`baselines._tabu_kernels`) moves
critical operations: on a static shop the N5 moves, chosen by O(1) estimates from heads and
tails; on a running shop (releases, work that is running, known downtimes) swaps on the longest
paths to the jobs that cost something, each evaluated exactly by the decoder. A tabu list of
reversed arcs with aspiration, a cycle detector on solution fingerprints, and restarts from an
elite set kicked by random critical swaps. ``workers`` searches with different seeds run on as
many cores (threads: the kernels release the GIL); the best plan wins. Anytime: the best plan
so far when the time ends; never worse than the plan it started from.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from baselines import _tabu_kernels as K
from baselines.budget import TABU_READ_BACK
from baselines.deciders import MAX_ITERATIONS, MAX_SECONDS, DeciderError, default_objective, wait_interruptibly
from instances import InvalidInstanceError, JobShopInstance
from sched_env import warmup
from sched_env.schedule import Schedule

OBJECTIVE_KINDS = {
    "makespan": K.MAKESPAN,
    "total_weighted_tardiness": K.WEIGHTED_TARDINESS,
    "total_flow_time": K.FLOW,
    "mean_flow_time": K.FLOW,
}
#: Seconds of one kernel call when a clock bounds the search (how far past a deadline it may run).
CHUNK_S = 0.004


@dataclass(frozen=True)
class TabuSettings:
    """The search's knobs (tuned on generated instances, see ``experiments/tabu_tuning.py``).

    Tenure: a reversed arc stays tabu for ``tenure_base + n/m`` to 1.5 times that many moves;
    a run without a better plan for ``stall_moves`` moves (or a cycle) restarts from an elite
    plan kicked by ``kicks`` random critical swaps (on a flexible shop after ``flexible_stall_moves``:
    shorter runs find more there, ``experiments/results/tabu_tuning_flexible.md``); ``max_moves``:
    moves evaluated exactly per step on a running shop."""

    tenure_base: int = 6
    stall_moves: int = 2500
    flexible_stall_moves: int = 500
    kicks: tuple[int, int] = (2, 6)
    elite: int = 8
    max_moves: int = 48
    cycle_limit: int = 1

    def tenure(self, instance: JobShopInstance) -> int:
        return self.tenure_base + instance.n_jobs // max(instance.n_machines, 1)

    def tabu_capacity(self, instance: JobShopInstance) -> int:
        """Entries of the tabu list: one per move for as long as the longest tenure."""
        tenure = self.tenure(instance)
        return tenure + max(1, tenure // 2) + 1

    def params(self, problem: TabuProblem, kind: int) -> np.ndarray:
        tenure = self.tenure(problem.instance)
        values = K.P._replace(
            kind=kind, exact=int(problem.exact), flexible=int(problem.flexible), lower_bound=problem.lower_bound, tenure_min=tenure, tenure_span=max(1, tenure // 2),
            stall_limit=self.flexible_stall_moves if problem.flexible else self.stall_moves, perturb_min=self.kicks[0], perturb_span=self.kicks[1] - self.kicks[0],
            cap=self.max_moves, cycle_limit=self.cycle_limit,
        )  # fmt: skip
        return np.array(values, dtype=np.int64)


@dataclass
class TabuProblem:
    """An instance as the kernels see it: operations numbered job by job, each machine's
    operations, blocked intervals per machine (sorted, disjoint)."""

    instance: JobShopInstance
    arrays: K.Problem
    job: np.ndarray  # job of each operation
    op: np.ndarray  # index of each operation in its job
    slots: int  # the most operations any machine can hold
    exact: bool  # moves evaluated by decoding (a running shop or another objective), not estimated
    flexible: bool  # some operation has alternative machines: reassignments join the swaps
    lower_bound: int  # a static makespan search stops here (0: none)

    @classmethod
    def build(cls, instance: JobShopInstance, blocked: dict | None = None, objective: str = "makespan") -> TabuProblem:
        if objective not in OBJECTIVE_KINDS:
            raise InvalidInstanceError(
                f"tabu: unknown objective {objective!r}; choose one of {', '.join(OBJECTIVE_KINDS)}"
            )
        n_ops = instance.n_ops.astype(np.int64)
        job = np.repeat(np.arange(instance.n_jobs, dtype=np.int64), n_ops)
        first = np.concatenate([[0], np.cumsum(n_ops)[:-1]]).astype(np.int64)
        op = np.arange(len(job), dtype=np.int64) - first[job]
        alt_duration = instance.processing_table()[job, op].astype(np.int64)  # (operations, machines), -1: cannot
        eligible = alt_duration >= 0
        n_alt = eligible.sum(axis=1).astype(np.int64)
        alt_machine = np.full((len(job), max(int(n_alt.max(initial=1)), 1)), -1, dtype=np.int64)
        rows, machines = np.nonzero(eligible)
        alt_machine[rows, np.arange(len(rows)) - np.concatenate([[0], np.cumsum(n_alt)[:-1]])[rows]] = machines
        jpred = np.where(op > 0, np.arange(len(job)) - 1, -1).astype(np.int64)
        jsucc = np.where(op < n_ops[job] - 1, np.arange(len(job)) + 1, -1).astype(np.int64)
        release = instance.release_dates if instance.release_dates is not None else np.zeros(instance.n_jobs, np.int64)
        rel = np.where(op == 0, release[job], 0).astype(np.int64)
        blocked = {int(m): sorted(v) for m, v in (blocked or {}).items() if v}
        width = max((len(v) for v in blocked.values()), default=0)
        bstart = np.zeros((instance.n_machines, max(width, 1)), dtype=np.int64)
        bend = np.zeros_like(bstart)
        nb = np.zeros(instance.n_machines, dtype=np.int64)
        for m, intervals in blocked.items():
            nb[m] = len(intervals)
            bstart[m, : len(intervals)] = [a for a, _ in intervals]
            bend[m, : len(intervals)] = [b for _, b in intervals]
        due = instance.due_dates if instance.due_dates is not None else np.zeros(instance.n_jobs, np.int64)
        if objective == "total_weighted_tardiness" and instance.due_dates is None:
            raise InvalidInstanceError(f"tabu: weighted tardiness needs due dates; {instance.name!r} has none")
        weight = instance.weights if instance.weights is not None else np.ones(instance.n_jobs, np.int64)
        job_last = (first + n_ops - 1).astype(np.int64)
        arrays = K.Problem(
            job_pred=jpred, job_succ=jsucc, release=rel, job_of=job, job_last=job_last, due=due.astype(np.int64),
            weight=weight.astype(np.int64), job_release=release.astype(np.int64), blocked_start=bstart,
            blocked_end=bend, n_blocked=nb, alt_duration=alt_duration, alt_machine=alt_machine, n_alt=n_alt,
        )  # fmt: skip
        exact = bool(blocked) or bool(release.any()) or objective != "makespan"
        slots = int(max(eligible.sum(axis=0).max(initial=1), 1))  # the most operations one machine can hold
        bound = instance.simple_lower_bound() if not exact else 0
        return cls(instance, arrays, job, op, slots, exact, bool(n_alt.max(initial=1) > 1), bound)

    @property
    def n_operations(self) -> int:
        return len(self.job)

    def orders(self, schedule: Schedule) -> np.ndarray:
        """Each machine's order in ``schedule`` (by start, then end: a zero-length operation at
        another's start goes first), as the kernels' ``seq``."""
        index = {(int(j), int(k)): o for o, (j, k) in enumerate(zip(self.job, self.op))}
        seq = np.full((self.instance.n_machines, self.slots), -1, dtype=np.int64)
        filled = np.zeros(self.instance.n_machines, dtype=np.int64)
        machines = np.zeros(self.n_operations, dtype=np.int64)
        for j, k, m in zip(schedule.job.tolist(), schedule.op.tolist(), schedule.machine.tolist()):
            machines[index[j, k]] = m
        rows = sorted(zip(schedule.start.tolist(), schedule.end.tolist(), schedule.job.tolist(), schedule.op.tolist()))
        for _s, _e, j, k in rows:
            o = index[j, k]
            m = int(machines[o])
            seq[m, filled[m]] = o
            filled[m] += 1
        return seq

    def schedule(self, seq: np.ndarray) -> Schedule:
        """The plan machine orders give (every operation at its earliest time)."""
        machine = np.zeros(self.n_operations, dtype=np.int64)
        start, end = np.zeros_like(machine), np.zeros_like(machine)
        if K.decode_orders(self.arrays, seq, machine, start, end) < self.n_operations:
            raise RuntimeError("tabu: machine orders with a cycle reached the decoder (a bug: please report it)")
        return Schedule(self.job, self.op, machine, start, end, instance_name=self.instance.name)


def _seed_state(seed: int, stream: int) -> np.ndarray:
    """A non-zero xorshift state for search ``stream`` of ``seed`` (SplitMix64 of both)."""
    mask = (1 << 64) - 1
    x = (int(seed) * 0x9E3779B97F4A7C15 + (stream + 1) * 0xD1B54A32D192ED03) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return np.array([(x ^ (x >> 31)) or 1], dtype=np.uint64)


@dataclass
class _Search:
    """One search's arrays (its whole state: any chunking of its moves gives the same search)."""

    problem: TabuProblem
    params: np.ndarray
    sol: K.Solution
    work: K.Workspace
    moves_made: int = 0
    seconds: float = 0.0

    @classmethod
    def start(cls, problem: TabuProblem, seq: np.ndarray, seed: int, stream: int, settings: TabuSettings,
              kind: int) -> _Search:  # fmt: skip
        n, m, width = problem.n_operations, problem.instance.n_machines, problem.slots

        def zeros(*shape):
            return np.zeros(shape, np.int64)

        # move rows: N5 swaps and the reassignments of the critical path, or twice the exact cap
        rows = 2 * n + 2 + n * problem.arrays.alt_machine.shape[1]

        sol = K.Solution(
            seq=seq.copy(), pos=zeros(n), machine=zeros(n), duration=zeros(n), count=zeros(m),
            counters=zeros(len(K.C)), rng=_seed_state(seed, stream),
            tabu=zeros(settings.tabu_capacity(problem.instance), 3), best_seq=seq.copy(), run_best_seq=seq.copy(),
            elite_seq=zeros(settings.elite, m, width), elite_value=zeros(settings.elite),
            elite_hash=zeros(settings.elite), ring=zeros(K.RING),
        )  # fmt: skip
        work = K.Workspace(
            start=zeros(n), end=zeros(n), bind=zeros(n), order=zeros(n), stack=zeros(2 * n), tail=zeros(n),
            path=zeros(n), moves=zeros(rows, 4), values=zeros(rows), mark=np.full(n, -1, np.int64),
            trial_start=zeros(n), trial_end=zeros(n), trial_bind=zeros(n), trial_order=zeros(n),
        )  # fmt: skip
        search = cls(problem, settings.params(problem, kind), sol, work)
        if K.begin(problem.arrays, sol, work, search.params) < 0:
            raise RuntimeError("tabu: the start plan's machine orders hold a cycle (a bug: please report it)")
        return search

    @property
    def counters(self) -> np.ndarray:
        return self.sol.counters

    @property
    def best(self) -> int:
        return int(self.counters[K.C.best])

    def run(self, iterations: int | None, deadline: float | None, proven: threading.Event | None = None,
            stop: threading.Event | None = None) -> None:  # fmt: skip
        """Move until ``iterations`` moves are made, ``deadline`` (perf_counter) passes, a search
        (this one or another) proves its plan optimal (``proven``, when given) or ``stop`` is set."""
        began = time.perf_counter()
        chunk = 16
        while self.counters[K.C.done] == 0 and not (proven is not None and proven.is_set()):
            if stop is not None and stop.is_set():
                break
            todo = chunk if iterations is None else min(chunk, iterations - self.moves_made)
            if todo <= 0 or deadline is not None and time.perf_counter() >= deadline:
                break
            t0 = time.perf_counter()
            self.moves_made += K.search(self.problem.arrays, self.sol, self.work, self.params, todo)
            took = time.perf_counter() - t0
            chunk = int(min(max(1, chunk * CHUNK_S / took if took > 0 else chunk * 2), 1_000_000))
        if self.counters[K.C.done] and proven is not None:
            proven.set()
        self.seconds += time.perf_counter() - began


def _run_searches(searches: list[_Search], iterations, deadline, proven) -> bool:
    """Run the searches (one here, the others on threads of their own) to their end; Ctrl-C stops
    them all within a chunk (milliseconds) and keeps their best plans. Whether Ctrl-C came."""
    stop = threading.Event()
    finished = [threading.Event() for _ in searches[1:]]

    def run(search: _Search, done: threading.Event) -> None:
        try:
            search.run(iterations, deadline, proven, stop)
        finally:
            done.set()

    for search, done in zip(searches[1:], finished):
        threading.Thread(target=run, args=(search, done), name="tabu", daemon=True).start()
    interrupted = False
    try:
        searches[0].run(iterations, deadline, proven, stop)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
    for done in finished:
        interrupted |= wait_interruptibly(done, stop.set)
    return interrupted


@dataclass
class TabuOutcome:
    schedule: Schedule
    objective: int
    optimal: bool
    stats: dict = field(default_factory=dict)


def tabu_search(
    problem: TabuProblem,
    start: Schedule | list[Schedule],
    *,
    objective: str = "makespan",
    seconds: float | None = None,
    iterations: int | None = None,
    seed: int = 0,
    workers: int = 2,
    settings: TabuSettings | None = None,
) -> TabuOutcome:
    """Improve ``start`` (a valid plan of ``problem.instance``, or several: search i starts from
    plan i modulo their number) for ``seconds`` or ``iterations`` moves per search, with
    ``workers`` searches on as many threads; the best plan found."""
    if seconds is None and iterations is None:
        raise ValueError("tabu_search needs seconds or iterations")
    settings = settings or TabuSettings()
    orders = [problem.orders(plan) for plan in (start if isinstance(start, list) else [start])]
    kind = OBJECTIVE_KINDS[objective]
    searches = [
        _Search.start(problem, orders[i % len(orders)], seed, i, settings, kind) for i in range(max(1, int(workers)))
    ]
    deadline = None if seconds is None else time.perf_counter() + seconds
    # a proof stops the other searches early, but not with a move count: those results must repeat
    proven = threading.Event() if iterations is None else None
    interrupted = _run_searches(searches, iterations, deadline, proven)
    winner = min(range(len(searches)), key=lambda i: (searches[i].best, i))
    optimal = any(s.counters[K.C.done] for s in searches)
    best = searches[winner]
    schedule = problem.schedule(best.sol.best_seq)
    moves = sum(s.moves_made for s in searches)
    seconds_run = max(s.seconds for s in searches)
    stats = {
        "iterations": moves, "iterations_per_s": round(moves / seconds_run, 1) if seconds_run > 0 else None,
        "searches": len(searches), "winner": winner, "restarts": int(sum(s.counters[K.C.restarts] for s in searches)),
        "cycles": int(sum(s.counters[K.C.cycles] for s in searches)), "exact_moves": problem.exact,
        "evaluations": int(sum(s.counters[K.C.evaluations] for s in searches)),
    }  # fmt: skip
    if interrupted:
        stats["interrupted"] = True
    return TabuOutcome(schedule, best.best, optimal, stats)


# ---------------------------------------------------------------------- the decider
DEFAULT_SECONDS = 10.0
#: The search's kernels as a warm-up group (``sched_env.warmup.warm_up("tabu")``).
warmup.register(warmup.KernelGroup("tabu", "baselines.tabu:warm_kernels", "baselines._tabu_kernels",
                                   ("begin", "search", "decode_orders"), 13))  # fmt: skip


def warm_kernels() -> None:
    """Compile (or load from numba's cache) the search's kernels on a tiny shop (the ``tabu``
    warm-up group: call ``warm_up("tabu")``, which does it once per process)."""
    tiny = JobShopInstance([[0, 1], [1, 0]], [[2, 3], [2, 1]], n_machines=2, name="warm-up")
    start = Schedule([0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0], [0, 2, 0, 5], [2, 5, 2, 6])
    for objective, blocked in (("makespan", None), ("total_flow_time", {0: [(7, 9)]})):
        tabu_search(TabuProblem.build(tiny, blocked, objective), start, objective=objective, iterations=4, workers=1)


def improve(
    problem,
    starts: list,
    *,
    spec: str,
    objective: str,
    seconds: float | None,
    iterations: int | None = None,
    seed: int = 0,
    workers: int = 2,
    settings: TabuSettings | None = None,
):
    """Tabu search from ``starts`` (SolveResults: plans of ``problem``, a JobShopInstance or a
    ShopState) for ``seconds`` or ``iterations`` moves per search: a SolveResult no worse than the best start."""
    from sched_env.schedule import SolveResult, objective_value, validate_schedule
    from sched_env.snapshot import ShopState, plan_rest, residual

    began = time.perf_counter()
    starts = sorted(starts, key=lambda r: r.objective)
    best_start = starts[0]
    static = not isinstance(problem, ShopState)
    if static:
        search_problem, plans = TabuProblem.build(problem), [r.schedule for r in starts]
    else:
        rest = residual(problem)
        if rest.instance is None:
            return dataclasses.replace(best_start, method=spec, seed=seed, status="optimal")
        search_problem = TabuProblem.build(rest.instance, rest.blocked, objective)
        plans = [rest_of(problem, r.schedule) for r in starts]
    outcome = tabu_search(search_problem, plans, objective=objective, seconds=seconds, iterations=iterations,
                          seed=seed, workers=workers, settings=settings)  # fmt: skip
    if static:
        plan = validate_schedule(problem, outcome.schedule)
        value, name = plan.makespan, problem.name
    else:
        plan = plan_rest(problem, outcome.schedule, spec)
        value, name = objective_value(problem.jobs, plan, objective), problem.jobs.name
    if value > best_start.objective:  # decoding never delays an operation: this would be a bug
        raise RuntimeError(f"{spec}: the search returned a worse plan than its start (please report it)")
    status = "optimal" if outcome.optimal else ("feasible" if value < best_start.objective else "start-plan")
    params = {"objective": objective, "start": best_start.method, "start_objective": best_start.objective,
              "starts": [r.method for r in starts], "workers": workers, **outcome.stats}  # fmt: skip
    return SolveResult(
        schedule=plan, objective=value, status=status, method=spec, wall_time_s=time.perf_counter() - began,
        instance_name=name, lower_bound=value if outcome.optimal else None, seed=seed, params=params,
    )  # fmt: skip


def start_plans(problem, objective: str, hint: Schedule | None):
    """Where a search starts: the hint, else the best dispatching rule's plan (a flexible instance: the
    best machine-rule plan and the balanced-assignment plan); on a running shop the best rule's plan
    and the hint repaired by right-shift (two searches start from the two)."""
    from baselines.repair import right_shift
    from baselines.rules import balanced_rule_plan, best_rule_plan, machine_rule_plan
    from sched_env.schedule import SolveResult, validate_schedule
    from sched_env.snapshot import ShopState

    if isinstance(problem, ShopState):  # a running shop's previous plan may be stale: the best rule's plan too
        starts = [best_rule_plan(problem, objective)]
        if hint is not None:
            repaired = right_shift(problem, hint, objective=objective)
            starts.insert(0, dataclasses.replace(repaired, method="hint, right-shift"))
        return starts
    if hint is None and problem.is_flexible:  # the balanced assignment wins on large shops even from a worse plan
        return [machine_rule_plan(problem), balanced_rule_plan(problem)]
    plan = validate_schedule(problem, hint) if hint is not None else best_rule_plan(problem).schedule
    return [SolveResult(plan, plan.makespan, "feasible", "hint" if hint is not None else "best rule", 0.0)]


def search_seconds(limit: float | None, started: float) -> float | None:
    """What is left of ``limit`` since ``started`` for the search, less the read-back reserve
    (:data:`baselines.budget.TABU_READ_BACK`)."""
    return None if limit is None else TABU_READ_BACK.left(limit, started)


@dataclass
class TabuDecider:
    """``tabu:SECONDS`` (default 10 s) or ``tabu:iters=N`` (N moves per search: bit-for-bit
    repeatable for a seed), ``workers`` searches on as many cores. Starts from the hint, else from
    the best dispatching rule's plan (a flexible instance: that and the balanced-assignment plan; a
    running shop: the best rule's plan and the hint repaired by right-shift)."""

    spec: str
    seconds: float | None
    iterations: int | None = None
    objective: str | None = None
    workers: int = 2
    settings: TabuSettings = field(default_factory=TabuSettings)
    dispatches = False
    reads_files = False
    plans_flexible = True

    @property
    def time_limit_s(self) -> float | None:
        return self.seconds

    def __post_init__(self) -> None:
        warmup.warm_up("tabu")

    def solve(self, problem, *, budget_s: float | None = None, seed: int = 0, hint: Schedule | None = None):
        started = time.perf_counter()
        objective = default_objective(problem, self.objective)
        if isinstance(problem, JobShopInstance) and objective != "makespan":
            raise DeciderError(f"{self.spec}: a static instance is solved for the makespan only")
        limits = [x for x in (self.seconds, budget_s) if x is not None]
        starts = start_plans(problem, objective, hint)
        result = improve(problem, starts, spec=self.spec, objective=objective,
                         seconds=search_seconds(min(limits) if limits else None, started),
                         iterations=self.iterations, seed=seed, workers=self.workers, settings=self.settings)  # fmt: skip
        result.params.update(time_limit_s=self.seconds, iterations_limit=self.iterations)
        return dataclasses.replace(result, wall_time_s=time.perf_counter() - started)


def rest_of(state, plan: Schedule) -> Schedule:
    """The part of a plan of ``state`` that plans its residual, in the residual's numbering."""
    from sched_env.snapshot import residual

    return residual(state).restrict(plan)


def tabu_factory(spec, *, objective: str | None = None, workers: int = 2, **_) -> TabuDecider:
    """Build ``tabu``, ``tabu:SECONDS``, ``tabu:iters=N`` or ``tabu:SECONDS:iters=N``."""
    usage = "tabu, tabu:SECONDS, tabu:iters=N or tabu:SECONDS:iters=N, e.g. tabu:10"
    spec.no_more_than(2, usage)
    if spec.qualifier:
        raise DeciderError(f"method {spec.text!r}: tabu takes no '@' qualifier; write {usage}")
    seconds, iterations = None, None
    for i, arg in enumerate(spec.args):
        if arg.startswith("iters="):
            iterations = int(spec.number(i, "iters", integer=True, maximum=MAX_ITERATIONS))
        elif seconds is None:
            seconds = float(spec.number(i, "SECONDS", maximum=MAX_SECONDS))
        else:
            raise DeciderError(f"method {spec.text!r}: write {usage}")
    if seconds is None and iterations is None:
        seconds = DEFAULT_SECONDS
    return TabuDecider(spec.text, seconds, iterations, objective, max(1, int(workers)))
