"""Fuzz the tabu search: random static instances (1-12 jobs x 1-8 machines, ragged jobs,
recirculation, zero durations, release dates) and random running-shop states. Every result
must be valid (the one validator; a running shop's plan: the state checks too), never worse
than its start plan, and the same for the same seed and move count::

    python -m experiments.tabu_fuzz --cases 100000 --out experiments/results
    python -m experiments.tabu_fuzz --flexible --cases 100000   # flexible shops: machines reassigned too

``--flexible``: random flexible instances (1 to all machines eligible per operation, zero
durations, release dates, machines revisited) and flexible running shops part-way through a rule's
plan with a machine down (``experiments.flexible_fuzz``'s generators).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

OBJECTIVES = ("makespan", "total_weighted_tardiness", "mean_flow_time")


def random_instance(rng: np.random.Generator):
    from instances import JobShopInstance

    n_jobs, n_machines = int(rng.integers(1, 13)), int(rng.integers(1, 9))
    width = int(rng.integers(1, 2 * n_machines + 1))
    n_ops = rng.integers(1, width + 1, size=n_jobs)
    machines = rng.integers(0, n_machines, size=(n_jobs, width))  # revisits allowed
    durations = rng.integers(0, 20, size=(n_jobs, width)) * (rng.random((n_jobs, width)) > 0.15)
    release = rng.integers(0, 40, size=n_jobs) if rng.random() < 0.4 else None
    return JobShopInstance(machines, durations, n_machines=n_machines, n_ops=n_ops, release_dates=release,
                           name="fuzz")  # fmt: skip


def random_state(rng: np.random.Generator):
    """A running shop: a random dynamic scenario after a random number of random decisions."""
    from instances import InvalidInstanceError
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.events import generate_scenario

    machines = int(rng.integers(2, 7))
    scenario = generate_scenario(
        machines, initial_jobs=int(rng.integers(1, 6)), arriving_jobs=int(rng.integers(0, 7)),
        mtbf=int(rng.integers(30, 300)), mttr=int(rng.integers(5, 60)), noise=float(rng.uniform(0, 0.4)),
        interruption=str(rng.choice(["resume", "restart"])), seed=int(rng.integers(1 << 30)),
    )  # fmt: skip
    env = DynamicJobShopEnv(scenario)
    env.reset(seed=int(rng.integers(1 << 30)))
    state = env.snapshot()
    for _ in range(int(rng.integers(0, 25))):
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if env._done:
            break
        try:
            state = env.snapshot()
        except InvalidInstanceError:  # no job in the shop just now: keep the last state that had work
            break
    return state


def check_case(seed: int, iterations: int, flexible: bool = False) -> str | None:
    """None when case ``seed`` holds every promise, else what broke."""
    from baselines import deciders
    from experiments import flexible_fuzz
    from sched_env.schedule import objective_value, validate_schedule
    from sched_env.snapshot import plan_violations

    rng = np.random.default_rng(seed)
    spec = f"tabu:iters={iterations}"
    workers = 1 + seed % 2
    if seed % 3 != 2:  # two in three static
        instance = flexible_fuzz.random_flexible_instance(rng) if flexible else random_instance(rng)
        rule = str(rng.choice(["spt", "mwkr", "random", "lpt"]))
        if flexible:
            rule += "+" + str(rng.choice(flexible_fuzz.MACHINE_RULES))
        start = deciders.solve(instance, rule, seed=seed).schedule
        result = deciders.solve(instance, spec, hint=start, seed=seed, workers=workers)
        validate_schedule(instance, result.schedule)
        if result.objective > start.makespan:
            return f"worse than its start: {result.objective} > {start.makespan}"
        again = deciders.solve(instance, spec, hint=start, seed=seed, workers=workers)
    else:
        state = flexible_fuzz.random_flexible_state(rng, flexible_fuzz.random_flexible_instance(rng)) if flexible \
            else random_state(rng)  # fmt: skip
        objective = OBJECTIVES[seed % len(OBJECTIVES)]
        previous = deciders.solve(state, "edd", objective=objective).schedule
        start = deciders.solve(state, "right-shift", hint=previous, objective=objective)
        result = deciders.solve(state, spec, hint=previous, seed=seed, objective=objective, workers=workers)
        problems = plan_violations(state, result.schedule)
        if problems:
            return f"breaks the state: {problems[0]}"
        if result.objective != objective_value(state.jobs, result.schedule, objective):
            return "objective misreported"
        if result.objective > start.objective:
            return f"worse than its start: {result.objective} > {start.objective}"
        again = deciders.solve(state, spec, hint=previous, seed=seed, objective=objective, workers=workers)
    if again.schedule != result.schedule:
        return "not repeatable for the same seed and move count"
    return None


def run_cases(seeds, iterations: int = 100, flexible: bool = False) -> dict:
    failures = []
    count = 0
    for seed in seeds:
        count += 1
        try:
            problem = check_case(int(seed), iterations, flexible)
        except Exception:  # a crash is a finding too, with its traceback
            problem = traceback.format_exc(limit=3)
        if problem is not None:
            failures.append({"seed": int(seed), "problem": problem})
    return {"cases": count, "failures": failures}


def _chunk(args: tuple) -> dict:
    first, last, iterations, flexible = args
    return run_cases(range(first, last), iterations, flexible)


def main(argv: list[str] | None = None) -> int:
    from experiments.provenance import git_commit, machine_description

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--flexible", action="store_true", help="flexible instances and running shops")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    step = 1000
    chunks = [(i, min(i + step, args.cases), args.iterations, args.flexible) for i in range(0, args.cases, step)]
    with ProcessPoolExecutor(args.parallel) as pool:
        reports = list(pool.map(_chunk, chunks))
    failures = [f for r in reports for f in r["failures"]]
    cases = sum(r["cases"] for r in reports)
    took = time.perf_counter() - started
    machine = machine_description()
    shops = "flexible " if args.flexible else ""
    lines = [
        f"# Tabu search fuzz{' (flexible shops)' if args.flexible else ''}", "",
        f"Commit `{git_commit()}`, {machine['cpu']} ({machine['cores']} cores), {took:.0f} s. Command: `python -m"
        f" experiments.tabu_fuzz{' --flexible' if args.flexible else ''} --cases {args.cases} --iterations"
        f" {args.iterations}`.", "",
        f"- cases: {cases} (two in three static {shops}instances, one in three {shops}running-shop states; one or two"
        " searches)",
        f"- failures: {len(failures)}",
    ]  # fmt: skip
    lines += [f"  - seed {f['seed']}: {f['problem'].splitlines()[-1]}" for f in failures[:20]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "tabu_fuzz_flexible" if args.flexible else "tabu_fuzz"
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"cases": cases, "failures": failures, "seconds": took}, indent=1))
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
