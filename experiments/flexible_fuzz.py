"""Fuzz the flexible shop: random flexible instances (1-12 jobs x 1-8 machines, 1 to all
alternatives per operation, zero durations, release dates, machines revisited) and random running
flexible shops (done and running work on chosen machines, a machine down). Every dispatching rule
(each with a random machine rule and action set) and CP-SAT must give a valid plan (the one
validator; a running shop's plan: the state checks too), CP-SAT never worse than the best rule
when it proves optimality::

    python -m experiments.flexible_fuzz --cases 100000 --out experiments/results
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

JOB_RULES = ("spt", "lpt", "mwkr", "lwkr", "mopnr", "fifo", "random", "wspt", "pt+winq", "2pt+winq+npt")
MACHINE_RULES = ("eet", "spt", "ll", "est")
ACTION_SETS = ("non_delay", "giffler_thompson", "any")


def random_flexible_instance(rng: np.random.Generator):
    from instances import JobShopInstance

    n_jobs, n_machines = int(rng.integers(1, 13)), int(rng.integers(1, 9))
    jobs = []
    for _ in range(n_jobs):
        ops = []
        for _ in range(int(rng.integers(1, 2 * n_machines + 1))):
            machines = rng.choice(n_machines, size=int(rng.integers(1, n_machines + 1)), replace=False)
            ops.append([(int(m), int(rng.integers(0, 20)) * int(rng.random() > 0.15)) for m in machines])
        jobs.append(ops)
    release = rng.integers(0, 40, size=n_jobs) if rng.random() < 0.4 else None
    return JobShopInstance.from_alternatives(jobs, n_machines=n_machines, release_dates=release, name="fuzz")


def random_flexible_state(rng: np.random.Generator, instance):
    """The shop part-way through a rule's plan: done and running work on their machines, one
    machine down from now (its waiting work may move), due dates for the objective."""
    from baselines.rules import dispatch
    from sched_env.snapshot import ShopState

    plan = dispatch(instance, str(rng.choice(JOB_RULES[:6])) + "+" + str(rng.choice(MACHINE_RULES))).schedule
    now = int(rng.integers(0, max(plan.makespan, 1)))
    rows = np.stack([plan.job, plan.op, plan.machine, plan.start, plan.end], axis=1)
    done, running = rows[rows[:, 4] <= now], rows[(rows[:, 3] < now) & (rows[:, 4] > now)]
    jobs = instance.replace(
        release_dates=np.zeros(instance.n_jobs, dtype=int) if instance.release_dates is None else instance.release_dates,
        due_dates=rng.integers(0, 2 * max(plan.makespan, 1), size=instance.n_jobs),
        weights=rng.integers(1, 4, size=instance.n_jobs),
    )  # fmt: skip
    machine = int(rng.integers(instance.n_machines))
    busy_until = max([now] + [int(e) for _, _, m, s, e in running.tolist() if m == machine])
    downtimes = [[machine, busy_until, busy_until + int(rng.integers(1, 30)), 0]] if rng.random() < 0.7 else []
    return ShopState(now, jobs, np.arange(instance.n_jobs), done, running, downtimes)


def check_chunk(first: int, last: int, cpsat_every: int) -> dict:
    """Cases ``first..last-1``: every rule on every instance (one kernel call per rule), CP-SAT
    and the running-shop checks on every ``cpsat_every``-th case. Returns failures by seed."""
    from baselines import deciders
    from baselines.rules import dispatch_many
    from sched_env.schedule import validate_schedule
    from sched_env.snapshot import plan_violations

    seeds = list(range(first, last))
    shops = [random_flexible_instance(np.random.default_rng(seed)) for seed in seeds]
    failures = []
    rng = np.random.default_rng(first)
    best = [None] * len(shops)
    for rule in JOB_RULES:
        spec = f"{rule}+{rng.choice(MACHINE_RULES)}"
        try:
            runs = dispatch_many(shops, spec, action_set=str(rng.choice(ACTION_SETS)), seed=first)  # each validated
        except Exception:
            failures.append(
                {"seed": first, "problem": f"{spec} on cases {first}-{last - 1}: " + traceback.format_exc(limit=3)}
            )
            continue
        best = [r.objective if b is None else min(b, r.objective) for b, r in zip(best, runs)]
    for seed, shop, best_rule in zip(seeds, shops, best):
        if seed % cpsat_every:
            continue
        try:
            result = deciders.solve(shop, "cpsat:1", workers=1, seed=seed)
            validate_schedule(shop, result.schedule)
            if result.status == "optimal" and best_rule is not None and result.objective > best_rule:
                failures.append({"seed": seed, "problem": f"cpsat optimal {result.objective} > a rule's {best_rule}"})
            state = random_flexible_state(np.random.default_rng(seed + 1), shop)
            objective = ("total_weighted_tardiness", "mean_flow_time", "makespan")[seed % 3]
            previous = deciders.solve(shop, "mwkr+eet").schedule
            for method in ("right-shift", "cpsat:1"):
                plan = deciders.solve(state, method, hint=previous, objective=objective, workers=1).schedule
                problems = plan_violations(state, plan)
                if problems:
                    failures.append({"seed": seed, "problem": f"{method} breaks the state: {problems[0]}"})
        except Exception:
            failures.append({"seed": seed, "problem": traceback.format_exc(limit=3)})
    return {"cases": len(seeds), "solver_cases": sum(1 for s in seeds if s % cpsat_every == 0), "failures": failures}


def _chunk(args: tuple) -> dict:
    return check_chunk(*args)


def main(argv: list[str] | None = None) -> int:
    from experiments.provenance import git_commit, machine_description

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--cpsat-every", type=int, default=20, help="CP-SAT and a running shop on every N-th case")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="experiments/results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    step = 1000
    chunks = [(i, min(i + step, args.cases), args.cpsat_every) for i in range(0, args.cases, step)]
    with ProcessPoolExecutor(args.parallel) as pool:
        reports = list(pool.map(_chunk, chunks))
    failures = [f for r in reports for f in r["failures"]]
    cases, solved = sum(r["cases"] for r in reports), sum(r["solver_cases"] for r in reports)
    took = time.perf_counter() - started
    machine = machine_description()
    lines = [
        "# Flexible shop fuzz", "",
        f"Commit `{git_commit()}`, {machine['cpu']} ({machine['cores']} cores), {took:.0f} s. Command: `python -m"
        f" experiments.flexible_fuzz --cases {args.cases} --cpsat-every {args.cpsat_every}`.", "",
        f"- cases: {cases} random flexible instances, each planned by all {len(JOB_RULES)} job rules (each with a random"
        " machine rule and action set): "
        f"{cases * len(JOB_RULES)} rule plans",
        f"- of them {solved} also solved by CP-SAT (1 s, 1 worker) and cut into a running shop (done and running work,"
        " a machine down) replanned by right-shift and CP-SAT",
        f"- failures: {len(failures)}",
    ]  # fmt: skip
    lines += [f"  - seed {f['seed']}: {f['problem'].splitlines()[-1]}" for f in failures[:20]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flexible_fuzz.md").write_text("\n".join(lines) + "\n")
    (out / "flexible_fuzz.json").write_text(json.dumps({"cases": cases, "solver_cases": solved, "failures": failures,
                                                        "seconds": took}, indent=1))  # fmt: skip
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
