"""Test helpers shared by several test modules."""

from __future__ import annotations

import numpy as np

from instances import JobShopInstance
from sched_env import Schedule

#: What a test adds to a decider's budget tolerance (5 % + 50 ms) before calling it an over-run:
#: the suite runs beside other work (CI right after a session, a user's busy laptop), where one
#: CPU-bound neighbour on 2 cores stretches the Python around a solver. A decider that ignored its
#: budget would still overrun by far more than this (the budgets tested are 3-10x smaller than
#: the deciders' own limits).
BUSY_MACHINE_SLACK_S = 0.5


def within_budget(result) -> bool:
    """The result came within its budget, with the busy-machine slack."""
    from sched_env.schedule import budget_limit

    return result.wall_time_s <= budget_limit(result.budget_s) + BUSY_MACHINE_SLACK_S


def run_cli(*args: str, timeout: float = 300):
    """Run ``sched-env ARGS`` in a fresh interpreter, as a user would; the completed process."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def random_feasible_schedule(instance: JobShopInstance, rng: np.random.Generator, max_delay: int = 5) -> Schedule:
    """A random feasible schedule: jobs in random order, each op after its job and machine
    predecessors plus a random idle delay (so it is usually neither active nor semi-active); on a
    flexible instance each operation on a random machine that can run it."""
    next_op = np.zeros(instance.n_jobs, dtype=int)
    ready = np.zeros(instance.n_jobs, dtype=int)
    if instance.release_dates is not None:
        ready[:] = instance.release_dates
    machine_free = np.zeros(instance.n_machines, dtype=int)
    rows = []
    while (next_op < instance.n_ops).any():
        job = int(rng.choice(np.flatnonzero(next_op < instance.n_ops)))
        k = int(next_op[job])
        options = instance.alternatives(job, k)
        machine, duration = options[int(rng.integers(len(options)))] if instance.is_flexible else options[0]
        start = max(ready[job], machine_free[machine]) + int(rng.integers(0, max_delay + 1))
        ready[job] = machine_free[machine] = start + duration
        rows.append((job, k, machine, start, start + duration))
        next_op[job] += 1
    return Schedule(*np.array(rows, dtype=np.int64).reshape(-1, 5).T, instance_name=instance.name)


def optimal_schedule(instance: JobShopInstance, time_limit_s: float = 20.0) -> Schedule:
    """An optimal schedule from CP-SAT (tests only; skips when OR-Tools is not installed)."""
    import pytest

    cp_model = pytest.importorskip("ortools.sat.python.cp_model")
    model = cp_model.CpModel()
    horizon = int(instance.durations.sum())
    starts, ends, per_machine = {}, {}, {}
    for j in range(instance.n_jobs):
        for k in range(int(instance.n_ops[j])):
            d = int(instance.durations[j, k])
            s = model.new_int_var(0, horizon, f"s{j}_{k}")
            e = model.new_int_var(0, horizon, f"e{j}_{k}")
            per_machine.setdefault(int(instance.machines[j, k]), []).append(
                model.new_interval_var(s, d, e, f"i{j}_{k}")
            )
            starts[j, k], ends[j, k] = s, e
            if k:
                model.add(s >= ends[j, k - 1])
    for intervals in per_machine.values():
        model.add_no_overlap(intervals)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, list(ends.values()))
    model.minimize(makespan)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 2
    solver.parameters.random_seed = 0
    status = solver.solve(model)
    assert status == cp_model.OPTIMAL, f"CP-SAT did not prove optimality: {solver.status_name(status)}"
    start = np.full((instance.n_jobs, instance.max_ops), -1)
    for (j, k), var in starts.items():
        start[j, k] = solver.value(var)
    return Schedule.from_start_times(instance, start)


def running_shop_state(machines: int, *, initial_jobs: int, arriving_jobs: int, seed: int, steps: int):
    """A dynamic shop (breakdowns, noise) after ``steps`` lowest-index decisions, as a ShopState."""
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.events import generate_scenario

    scenario = generate_scenario(
        machines, initial_jobs=initial_jobs, arriving_jobs=arriving_jobs, mtbf=100 * machines, mttr=10 * machines,
        noise=0.1, seed=seed,
    )  # fmt: skip
    env = DynamicJobShopEnv(scenario)
    env.reset(seed=0)
    for _ in range(steps):
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    return env.snapshot()


def noisy_shop(seed: int, interruption: str, maintenance: tuple[int, int, int], **sizes):
    """A small dynamic shop with breakdowns, 30 % noise and one maintenance window, reset with
    ``seed``: (env, first observation, a generator seeded alike). ``sizes``: initial_jobs,
    arriving_jobs, mtbf, mttr (defaults 3, 8, 150, 30)."""
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.events import generate_scenario

    options = {"initial_jobs": 3, "arriving_jobs": 8, "mtbf": 150, "mttr": 30} | sizes
    scenario = generate_scenario(4, noise=0.3, interruption=interruption, maintenance=[maintenance], seed=seed,
                                 **options)  # fmt: skip
    env = DynamicJobShopEnv(scenario)
    obs, _ = env.reset(seed=seed)
    return env, obs, np.random.default_rng(seed)
