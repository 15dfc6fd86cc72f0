"""Priority dispatching rules, run through the same compiled simulator as the env.

A rule picks, among the jobs the action set allows, the one with the best priority; ties go
to the lowest job index. Because rules run inside the simulator, the action set decides what
they can build: ``non_delay`` (the classic rule schedules; ~19 % mean gap for MWKR on
Taillard 15x15), ``giffler_thompson`` (active schedules) or ``any``. Many instances, or many
random samples, run in one batched kernel call.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from baselines.deciders import default_objective
from instances import InvalidInstanceError, JobShopInstance
from sched_env import compiled as K
from sched_env._names import (  # name -> what it prefers; id: K.RULE.<RULE_FIELDS[name]>
    DUE_DATE_RULES,
    MACHINE_RULE_NAMES,
    RULE_FIELDS,
    RULES,
    split_machine_rule,
)
from sched_env.env import DEFAULT_ACTION_SET, DEFAULT_PLACEMENT, machine_rule_id
from sched_env.schedule import SolveResult, objectives, validate_schedule
from sched_env.shop import ACTION_SETS, PLACEMENTS, ShopLayout, option


def rule_id(rule: str) -> int:
    """The kernel id of a job rule's name (a machine rule after ``+`` is ignored), or a clear
    error naming the rules."""
    key = split_machine_rule(rule)[0]
    if key not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}")
    return getattr(K.RULE, RULE_FIELDS[key])


def _check_due_dates(instance: JobShopInstance, rule: str) -> None:
    if split_machine_rule(rule)[0] in DUE_DATE_RULES and instance.due_dates is None:
        fitting = ", ".join(r for r in RULES if r not in DUE_DATE_RULES)
        raise InvalidInstanceError(
            f"rule {rule.lower()!r} needs due dates; {instance.name!r} has none. Rules for it: {fitting}"
        )


def dispatch_many(
    instances: Sequence[JobShopInstance],
    rules: Sequence[str] | str,
    *,
    placement: str = DEFAULT_PLACEMENT,
    action_set: str = "non_delay",
    seed: int | None = 0,
    machine_rule: str = "eet",
) -> list[SolveResult]:
    """Schedule each instance with its rule (one rule for all, or one per instance), all in
    one parallel kernel call. Every schedule is validated. ``seed`` drives the random rule;
    ``machine_rule`` picks the machine of the chosen job on a flexible instance (``rules`` may
    also name one per rule: ``"mwkr+spt"``)."""
    if isinstance(rules, str):
        rules = [rules] * len(instances)
    if len(rules) != len(instances):
        raise ValueError(f"got {len(rules)} rules for {len(instances)} instances")
    if not instances:
        return []
    pairs = [split_machine_rule(r) for r in rules]
    ids = np.array([rule_id(job_rule) for job_rule, _ in pairs], dtype=np.int64)
    for instance, rule in zip(instances, rules):
        _check_due_dates(instance, rule)
    start = time.perf_counter()
    layout = ShopLayout(
        max(i.n_jobs for i in instances),
        max(i.n_machines for i in instances),
        max(i.max_ops for i in instances),
        flexible=any(i.is_flexible for i in instances),
    )
    n = len(instances)
    insts = np.zeros((n, layout.instance_length), dtype=np.int64)
    for row, instance, (_, own_machine_rule) in zip(insts, instances, pairs):
        layout.encode(instance, row, machine_rule_id(own_machine_rule or machine_rule))
    states = np.zeros((n, layout.state_length), dtype=np.int64)
    masks = np.zeros((n, layout.J), dtype=np.int8)
    features = np.zeros((n, layout.J, K.N_FEATURES), dtype=np.float32)
    steps = max(i.n_operations for i in instances)
    uniforms = np.random.default_rng(seed).random((n, steps))
    K.for_batch(K.rollout_rules, n)(
        insts, states, ids, uniforms,
        option(placement, PLACEMENTS, "placement"), option(action_set, ACTION_SETS, "action_set"),
        masks, features, layout.J, layout.M, layout.O,
    )  # fmt: skip
    elapsed = (time.perf_counter() - start) / n
    results = []
    for instance, rule, (job_rule, own_machine_rule), state in zip(instances, rules, pairs, states):
        schedule = validate_schedule(instance, layout.schedule(instance, state))
        params = {"placement": placement, "action_set": action_set}
        if instance.is_flexible:
            params["machine_rule"] = own_machine_rule or machine_rule
        results.append(
            SolveResult(
                schedule=schedule,
                objective=schedule.makespan,
                status="feasible",
                method=rule.lower(),
                wall_time_s=elapsed,
                instance_name=instance.name,
                seed=seed if job_rule == "random" else None,
                params=params,
            )
        )
    return results


def dispatch(
    instance: JobShopInstance,
    rule: str = "mwkr",
    *,
    placement: str = DEFAULT_PLACEMENT,
    action_set: str = "non_delay",
    seed: int | None = 0,
    machine_rule: str = "eet",
) -> SolveResult:
    """Schedule one instance with a dispatching rule (see :data:`RULES`; on a flexible instance
    with ``machine_rule``, or ``"mwkr+spt"``)."""
    return dispatch_many(
        [instance], rule, placement=placement, action_set=action_set, seed=seed, machine_rule=machine_rule
    )[0]


#: Random rollouts stepped together hold at most about this many operations (bounds memory:
#: a sample costs tens of bytes per operation), so ``random:N`` needs no more memory for large N.
RANDOM_CHUNK_OPERATIONS = 250_000


def best_of_samples(run_chunk, samples: int, n_operations: int, *, seed: int | None = 0, deadline: float | None = None):
    """The best of ``samples`` random rollouts, run ``run_chunk(size, chunk_seed) -> [(value, plan)]``
    in chunks of bounded memory, keeping only the best plan. Under a ``deadline``
    (``time.perf_counter()``) chunks start small and double, each only if its measured cost says it
    ends in time; the first sample always runs. Returns (best value, best plan, samples run)."""
    cap = max(1, min(samples, RANDOM_CHUNK_OPERATIONS // max(n_operations, 1)))
    size = min(cap, 8) if deadline is not None else cap
    best, run, index, per_sample = None, 0, 0, 0.0
    while run < samples:
        size = min(size, samples - run)
        if deadline is not None and run:
            room = deadline - time.perf_counter()
            while size > 1 and size * per_sample > room:
                size //= 2
            if size * per_sample > room:
                break
        chunk_seed = (
            seed if index == 0 or seed is None else int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        )
        started = time.perf_counter()
        for value, plan in run_chunk(size, chunk_seed):
            if best is None or value < best[0]:
                best = (value, plan)
        per_sample = (time.perf_counter() - started) / size
        run, index, size = run + size, index + 1, min(cap, 2 * size)
    return best[0], best[1], run


def best_of_random(
    instance: JobShopInstance,
    samples: int,
    *,
    placement: str = DEFAULT_PLACEMENT,
    action_set: str = DEFAULT_ACTION_SET,
    seed: int | None = 0,
    budget_s: float | None = None,
    machine_rule: str = "eet",
) -> SolveResult:
    """The best of ``samples`` uniformly random rollouts, run in batched kernel calls of bounded
    memory; with a budget, as many as fit in it (at least one). On a flexible instance the
    random job takes the ``machine_rule``'s machine."""
    start = time.perf_counter()
    deadline = None if budget_s is None else start + budget_s

    def chunk(size: int, chunk_seed):
        runs = dispatch_many([instance] * size, "random", placement=placement, action_set=action_set, seed=chunk_seed,
                             machine_rule=machine_rule)  # fmt: skip
        return [(run.objective, run.schedule) for run in runs]

    value, schedule, run = best_of_samples(chunk, samples, instance.n_operations, seed=seed, deadline=deadline)
    return SolveResult(
        schedule=schedule, objective=value, status="feasible", method="random", wall_time_s=time.perf_counter() - start,
        instance_name=instance.name, seed=seed,
        params={"placement": placement, "action_set": action_set, "samples": samples, "samples_run": run},
    )  # fmt: skip


def rule_action(env, rule: str) -> int:
    """The job ``rule`` would pick in a :class:`~sched_env.JobShopEnv`'s current state."""
    if env.instance is not None:
        _check_due_dates(env.instance, rule)
    return env.rule_choice(rule_id(rule))


def dispatch_dynamic_many(
    scenarios, rules, *, objective: str = "total_weighted_tardiness", seed: int | None = 0, window: int | None = None
) -> list[SolveResult]:
    """Run each dynamic scenario to the end with a dispatching rule (one for all, or one per
    scenario), all in one parallel kernel call. ``objective`` is reported; the schedules (real
    times) are validated against the scenarios' durations, downtimes and interruption policy.
    ``window``: job slots (default: one per job); a long stream needs only as many as jobs are
    in the shop at once (``params["max_queued"]`` says how many ever waited for a slot)."""
    if isinstance(rules, str):
        rules = [rules] * len(scenarios)
    if len(rules) != len(scenarios):
        raise ValueError(f"got {len(rules)} rules for {len(scenarios)} scenarios")
    ids = np.array([rule_id(r) for r in rules], dtype=np.int64)
    machine_rules = [machine_rule_id(split_machine_rule(r)[1] or "eet") for r in rules]

    def run(insts, states, interruptions, objective_id, masks, dims):
        insts[:, K.MACHINE_RULE_FIELD] = machine_rules  # which machine each job takes on a flexible shop
        steps = 4 * max(s.jobs.n_operations for s in scenarios)  # restarts can repeat an operation
        uniforms = np.random.default_rng(seed).random((len(scenarios), steps))
        K.for_batch(K.rollout_dynamic_rules, len(scenarios))(
            insts, states, ids, uniforms, interruptions, objective_id, masks, *dims
        )

    methods = [r.lower() for r in rules]
    seeds = [seed if m == "random" else None for m in methods]
    return _dispatch_dynamic(scenarios, run, methods, seeds, objective, window)


def dispatch_dynamic_network(
    scenarios, parameters: np.ndarray, hidden: int, *, method: str = "priority-network",
    objective: str = "total_weighted_tardiness", window: int | None = None,
) -> list[SolveResult]:  # fmt: skip
    """Run each dynamic scenario to the end with a priority network (``sched_env.compiled``'
    ``priority_score``: flat ``parameters``, ``hidden`` units) choosing at every epoch, inside
    one compiled call: the learned dispatcher at the speed of a rule. As :func:`dispatch_dynamic_many`."""
    parameters = np.asarray(parameters, dtype=np.float64)
    sizes = K.priority_network_sizes(hidden)
    if parameters.ndim != 1 or parameters.shape[0] not in sizes:
        raise ValueError(f"a priority network with {hidden} hidden units has {sizes[0]} parameters ({sizes[1]} with"
                         f" context gates, {sizes[2]} with machine weights too), got an array of shape"
                         f" {parameters.shape}")  # fmt: skip

    def run(insts, states, interruptions, objective_id, masks, dims):
        params = np.repeat(parameters[None, :], len(scenarios), axis=0)
        K.for_batch(K.rollout_dynamic_scored, len(scenarios), long_episodes=True)(
            insts, states, params, int(hidden), interruptions, objective_id, masks, *dims
        )

    return _dispatch_dynamic(scenarios, run, [method] * len(scenarios), [None] * len(scenarios), objective, window)


def _dispatch_dynamic(scenarios, run, methods, seeds, objective: str, window: int | None) -> list[SolveResult]:
    """Encode the scenarios in one layout, ``run`` the kernel, validate and report each schedule."""
    from sched_env.dynamic import OBJECTIVES, encode_scenarios, episode_summary, stream_schedule
    from sched_env.events import Scenario

    if not scenarios:
        return []
    if not all(isinstance(s, Scenario) for s in scenarios):
        raise TypeError("dynamic dispatching needs Scenario objects")
    objective_id = option(objective, OBJECTIVES, "objective")
    start = time.perf_counter()
    layout, insts, orders, interruptions = encode_scenarios(scenarios, window)
    states = np.zeros((len(scenarios), layout.state_length), dtype=np.int64)
    masks = np.zeros((len(scenarios), layout.J), dtype=np.int8)
    run(insts, states, interruptions, objective_id, masks, (layout.J, layout.M, layout.O, layout.D, layout.S))
    elapsed = (time.perf_counter() - start) / len(scenarios)
    T = layout.state_offsets
    results = []
    for scenario, method, seed, state, order in zip(scenarios, methods, seeds, states, orders):
        summary = episode_summary(scenario, stream_schedule(layout, scenario, order, state), int(state[T.wasted]),
                                  int(state[T.max_queued]))  # fmt: skip
        values = objectives(scenario.jobs, summary["schedule"])
        results.append(
            SolveResult(
                schedule=summary["schedule"], objective=values[objective], status="feasible", method=method,
                wall_time_s=elapsed, instance_name=scenario.name, seed=seed,
                params={"objective": objective, **values, "max_queued": summary["max_queued"]},
            )
        )  # fmt: skip
    return results


def dispatch_state(
    state,
    rule: str,
    *,
    objective: str = "total_weighted_tardiness",
    samples: int = 1,
    seed: int | None = 0,
    method: str | None = None,
    budget_s: float | None = None,
) -> SolveResult:
    """A plan for the rest of a running shop (a :class:`~sched_env.snapshot.ShopState`) by a
    dispatching rule: the residual work is simulated in the dynamic kernels with the known
    downtimes and running operations as blocked windows (an operation a window would cut
    waits until after it). ``random`` with ``samples > 1`` keeps the best plan (as many as
    fit in ``budget_s``, in chunks of bounded memory). Done and running
    work is kept as it is; the objective counts every job of the state."""
    from sched_env.schedule import objective_value
    from sched_env.snapshot import full_plan, plan_rest, residual

    started = time.perf_counter()
    deadline = None if budget_s is None else started + budget_s
    rest = residual(state)
    method = method or rule.lower()
    if rest.instance is None:
        best_value, rest_plan, run = objective_value(state.jobs, full_plan(state, rest, None), objective), None, 1
    else:
        scenario = rest.as_scenario()

        def chunk(size: int, chunk_seed):
            runs = dispatch_dynamic_many([scenario] * size, rule, objective=objective, seed=chunk_seed)
            return [
                (objective_value(state.jobs, full_plan(state, rest, r.schedule), objective), r.schedule) for r in runs
            ]

        best_value, rest_plan, run = best_of_samples(
            chunk, samples, rest.instance.n_operations, seed=seed, deadline=deadline
        )
    plan = plan_rest(state, rest_plan, method)
    return SolveResult(
        schedule=plan, objective=best_value, status="feasible", method=method,
        wall_time_s=time.perf_counter() - started, instance_name=state.jobs.name,
        seed=seed if rule.lower() == "random" else None,
        params={"objective": objective, "samples": samples, "samples_run": run},
    )  # fmt: skip


#: Rules whose best plan starts a search on a static instance (and warm-starts ``cpsat:S:hint``).
HINT_RULES = ("mwkr", "mopnr", "spt", "fifo", "lwkr", "lpt")
#: Rules whose best plan starts a search on a running shop.
STATE_START_RULES = ("atc", "edd", "spt", "mwkr")


def balanced_assignment(instance: JobShopInstance) -> JobShopInstance:
    """The classic instance that runs each operation of flexible ``instance`` on one machine: its
    fastest, then, while one exists, the move off the most loaded machine that lowers its load below
    the old highest without raising another's to it, adding the least work (ties: the lowest new
    highest load). Where machines differ in speed and loads set the makespan (``bv``, ``sd1``), the
    machine rules' greedy choices waste work that no sequencing recovers; this comes within 1 of the
    load bound on sd1 30x10 and 40x10."""
    table = instance.processing_table()
    jobs, ops = np.nonzero(np.arange(table.shape[1])[None, :] < instance.n_ops[:, None])
    work = np.where(table[jobs, ops] >= 0, table[jobs, ops], np.inf)  # (operations, machines)
    every = np.arange(len(jobs))
    assigned = work.argmin(axis=1)
    load = np.bincount(assigned, weights=work[every, assigned], minlength=instance.n_machines)
    for _ in range(20 * len(jobs)):  # each move lowers the sorted loads; the cap only bounds the time
        top = int(load.argmax())
        mine = np.flatnonzero(assigned == top)
        own = work[mine, top]
        taken = load[None, :] + work[mine]
        taken[:, top] = np.inf
        highest = np.maximum(taken, (load[top] - own)[:, None])
        score = np.where(highest < load[top], work[mine] - own[:, None] + 1e-6 * highest, np.inf)
        row, to = np.unravel_index(int(np.argmin(score)), score.shape)
        if score[row, to] == np.inf:
            break
        o = mine[row]
        load[top] -= work[o, top]
        load[to] += work[o, to]
        assigned[o] = to
    machines = np.full(instance.machines.shape, -1, dtype=np.int64)
    durations = np.zeros(instance.machines.shape, dtype=np.int64)
    machines[jobs, ops] = assigned
    durations[jobs, ops] = work[every, assigned]
    return instance.replace(machines=machines, durations=durations, processing=None, name=f"{instance.name} (balanced)")


def balanced_rule_plan(instance: JobShopInstance) -> SolveResult:
    """The best plan of :data:`HINT_RULES` on the :func:`balanced_assignment` of a flexible
    instance, as a plan of ``instance`` (method ``RULE+balanced``)."""
    plans = dispatch_many([balanced_assignment(instance)] * len(HINT_RULES), list(HINT_RULES))
    plan = min(plans, key=lambda r: r.objective)
    schedule = validate_schedule(instance, dataclasses.replace(plan.schedule, instance_name=instance.name))
    return dataclasses.replace(plan, schedule=schedule, method=f"{plan.method}+balanced", instance_name=instance.name)


def machine_rule_plan(instance: JobShopInstance) -> SolveResult:
    """The shortest plan of :data:`HINT_RULES`, each with each machine rule, on a flexible instance."""
    methods = [f"{r}+{m}" for r in HINT_RULES for m in MACHINE_RULE_NAMES]
    return min(dispatch_many([instance] * len(methods), methods), key=lambda r: r.objective)


def best_rule_plan(problem, objective: str | None = None) -> SolveResult:
    """The best dispatching-rule plan, where every search and anytime planner starts: on an instance
    the shortest makespan of :data:`HINT_RULES`, on a running shop (a ``ShopState``) the best
    ``objective`` of :data:`STATE_START_RULES`. On a flexible instance the better of
    :func:`machine_rule_plan` and :func:`balanced_rule_plan`."""
    if isinstance(problem, JobShopInstance):
        if not problem.is_flexible:
            return min(dispatch_many([problem] * len(HINT_RULES), list(HINT_RULES)), key=lambda r: r.objective)
        return min(machine_rule_plan(problem), balanced_rule_plan(problem), key=lambda r: r.objective)
    objective = default_objective(problem, objective)
    candidates = [dispatch_state(problem, rule, objective=objective) for rule in STATE_START_RULES]
    return min(candidates, key=lambda r: (r.objective, r.method))


def quick_rule_plan(problem, objective: str | None = None) -> SolveResult:
    """One rule's plan, the quickest answer (every anytime planner's fallback): MWKR on an
    instance, ATC on a running shop."""
    if isinstance(problem, JobShopInstance):
        return dispatch(problem, "mwkr")
    return dispatch_state(problem, "atc", objective=default_objective(problem, objective))
