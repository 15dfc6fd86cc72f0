"""sched-env's deciders on flexible shops against PyJobShop's CP-SAT model, same time limit and
workers, side by side in this one run (the same OR-Tools in one environment; PyJobShop is in the
``bench`` extra)::

    .venv-bench/bin/python -m experiments.cpsat_vs_pyjobshop --instances mk01-mk10 --seconds 10 --workers 2
    .venv-bench/bin/python -m experiments.cpsat_vs_pyjobshop --seconds 1 --methods tabu:1,cpsat:1 --out ...

Each instance is solved by each of ``--methods`` (default ``cpsat:SECONDS``, sched-env's CP-SAT
model) and by PyJobShop, one after the other, each with ``--seconds`` (our limits cover building
the model; PyJobShop's covers its search). Results go to ``experiments/results/cpsat_vs_pyjobshop.{json,md}``
with the command, commit and machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import instances
from experiments.cli.common import expand_names
from experiments.provenance import git_commit, machine_description, package_versions, write_report

RESULTS = Path(__file__).resolve().parent / "results"


def pyjobshop_makespan(instance, seconds: float, workers: int, seed: int = 0) -> tuple[int | None, str, float]:
    """PyJobShop's CP-SAT model of the flexible instance: (makespan or None, status, wall seconds)."""
    from pyjobshop import Model  # peer: pip install 'sched-env[bench]'

    started = time.perf_counter()
    model = Model()
    machines = [model.add_machine() for _ in range(instance.n_machines)]
    for j in range(instance.n_jobs):
        job = model.add_job()
        tasks = [model.add_task(job=job) for _ in range(int(instance.n_ops[j]))]
        for k, task in enumerate(tasks):
            for machine, duration in instance.alternatives(j, k):
                model.add_mode(task, machines[machine], duration)
        for before, after in zip(tasks, tasks[1:]):
            model.add_end_before_start(before, after)
    model.set_objective(weight_makespan=1)
    result = model.solve("ortools", time_limit=seconds, display=False, num_workers=workers, random_seed=seed)
    solved = result.status.value not in ("Infeasible", "Unknown", "Time-limit") and np.isfinite(result.objective)
    return (int(result.objective) if solved else None), str(result.status.value), time.perf_counter() - started


def study(names: list[str], seconds: float, workers: int, seeds: int, methods: list[str]) -> list[dict]:
    from baselines import deciders

    rows = []
    for name in names:
        instance = instances.load(name)
        for seed in range(seeds):
            rows += compare(deciders, instance, name, seconds, workers, seed, methods)
    return rows


def compare(deciders, instance, name: str, seconds: float, workers: int, seed: int, methods: list[str]) -> list[dict]:
    """Each of ``methods`` and PyJobShop on one instance with one seed, one after the other: a row per method."""
    best = instances.best_known(name)
    theirs, status, wall = pyjobshop_makespan(instance, seconds, workers, seed)
    rows = []
    for method in methods:
        ours = deciders.solve(instance, method, workers=workers, seed=seed)
        print(f"{name} seed {seed}: {method} {ours.objective} ({ours.status}, {ours.wall_time_s:.1f} s), PyJobShop"
              f" {theirs} ({status}, {wall:.1f} s), best known {best}", flush=True)  # fmt: skip
        rows.append({
            "instance": name, "family": instances.family_of(name), "seed": seed, "method": method,
            "size": f"{instance.n_jobs}x{instance.n_machines}", "best_known": best,
            "ours": ours.objective, "ours_status": ours.status, "ours_s": round(ours.wall_time_s, 2),
            "pyjobshop": theirs, "pyjobshop_status": status, "pyjobshop_s": round(wall, 2),
            "ours_gap": None if ours.objective is None else 100 * (ours.objective / best - 1),
            "pyjobshop_gap": None if theirs is None else 100 * (theirs / best - 1),
        })  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    def cell(value, gap):
        return "no plan" if value is None else f"{value} ({gap:.1f} %)"

    rows = report["rows"]
    lines = [
        "# Flexible shops: sched-env's deciders against PyJobShop's CP-SAT model",
        "",
        f"Commit `{report['commit']}`, {report['date']}, {report['machine']['cpu']}, {report['machine']['cores']} cores,"
        f" {report['versions']}. Command: `{report['command']}`. {report['seconds']:g} s and {report['workers']}"
        " workers each, the same seed for all; makespan (% above the best known).",
        "",
        "| family | ours | runs | ours: mean gap | PyJobShop: mean gap (runs with a plan) | ours: no plan | PyJobShop: no plan"
        " | ours better / equal / worse |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    groups = dict.fromkeys((r["family"], r.get("method", f"cpsat:{report['seconds']:g}")) for r in rows)
    for family, method in groups:
        group = [r for r in rows if r["family"] == family and r.get("method", method) == method]
        both = [r for r in group if r["ours"] is not None and r["pyjobshop"] is not None]
        ours_gaps = [r["ours_gap"] for r in group if r["ours"] is not None]
        theirs = [r["pyjobshop_gap"] for r in group if r["pyjobshop"] is not None]
        lines.append(
            f"| {family} | `{method}` | {len(group)} | {np.mean(ours_gaps):.2f} % | {np.mean(theirs) if theirs else float('nan'):.2f} %"
            f" | {sum(r['ours'] is None for r in group)} | {sum(r['pyjobshop'] is None for r in group)}"
            f" | {sum(r['ours'] < r['pyjobshop'] for r in both)} / {sum(r['ours'] == r['pyjobshop'] for r in both)}"
            f" / {sum(r['ours'] > r['pyjobshop'] for r in both)} |"
        )
    lines += [
        "",
        "| instance | seed | size | best known | ours | value | PyJobShop |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['instance']} | {r['seed']} | {r['size']} | {r['best_known']} | `{r.get('method', '')}`"
        f" | {cell(r['ours'], r['ours_gap'])} | {cell(r['pyjobshop'], r['pyjobshop_gap'])} |"
        for r in rows
    ]
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="mk01-mk10")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1, help="runs per instance (seeds 0..N-1, the same for both)")
    parser.add_argument("--methods", help="our deciders, comma-separated (default cpsat:SECONDS)")
    parser.add_argument("--out", default=str(RESULTS / "cpsat_vs_pyjobshop"))
    args = parser.parse_args(argv)
    import sched_env
    from baselines import deciders

    sched_env.warm_up()
    methods = [m for m in (args.methods or f"cpsat:{args.seconds:g}").split(",") if m]
    for method in methods:  # build each once before any clock (kernel loads, OR-Tools import)
        deciders.make(method)
    rows = study(expand_names(args.instances), args.seconds, args.workers, args.seeds, methods)
    versions = package_versions(("ortools", "pyjobshop"))
    report = {
        "command": "python -m experiments.cpsat_vs_pyjobshop " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_description(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()), "seconds": args.seconds,
        "workers": args.workers, "rows": rows,
    }  # fmt: skip
    write_report(args.out, report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
