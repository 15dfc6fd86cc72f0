"""Tune the tabu search's knobs on generated instances (never on a benchmark family).

Instances: Taillard's distribution (``RandomInstanceGenerator``, durations 1-99, one visit per
machine) at the Taillard sizes, seeds 7000+; with ``--shop flexible``, flexible shops from the
generators (Brandimarte-style at low and high flexibility, Song et al.'s SD1 distribution). Each
setting runs one search (one core) for the same time on every instance; the table gives each
setting's mean makespan relative to the best any setting found on that instance, per size::

    python -m experiments.tabu_tuning --seconds 1 --instances 3 --out experiments/results
    python -m experiments.tabu_tuning --shop flexible --seconds 2 --instances 3
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from experiments.provenance import git_commit, machine_description

SIZES = ((15, 15), (20, 20), (30, 20), (50, 20), (100, 20))
#: Flexible shops: label -> (generator name, jobs, machines, options).
FLEXIBLE_SHOPS = {
    "bm 10x6": ("brandimarte", 10, 6, {"alternatives": (1, 4)}),
    "bm 20x10": ("brandimarte", 20, 10, {"alternatives": (1, 5)}),
    "high 15x10": ("brandimarte", 15, 10, {"alternatives": (4, 8), "ops_per_job": (10, 10)}),
    "sd1 20x10": ("sd1", 20, 10, {}),
    "bm 50x15": ("brandimarte", 50, 15, {"alternatives": (1, 6)}),
}
#: Settings tried: each changes one knob of the defaults (or two that act together).
VARIANTS = {
    "default": {},
    "tenure 2": {"tenure_base": 2},
    "tenure 4": {"tenure_base": 4},
    "tenure 8": {"tenure_base": 8},
    "tenure 10": {"tenure_base": 10},
    "stall 8000": {"stall_moves": 8000, "flexible_stall_moves": 8000},
    "kicks 1-3": {"kicks": (1, 3)},
    "kicks 4-10": {"kicks": (4, 10)},
    "cycles 3": {"cycle_limit": 3},
    "stall 250": {"stall_moves": 250, "flexible_stall_moves": 250},
    "stall 500": {"stall_moves": 500, "flexible_stall_moves": 500},
    "stall 1000": {"stall_moves": 1000, "flexible_stall_moves": 1000},
    "stall 2500": {"stall_moves": 2500, "flexible_stall_moves": 2500},
}


def generated(size: str, seed: int):
    """The generated instance ``seed`` of a size label ("15x15" or a key of FLEXIBLE_SHOPS)."""
    from instances.generators import BrandimarteGenerator, RandomInstanceGenerator, SD1Generator

    if size in FLEXIBLE_SHOPS:
        kind, n, m, options = FLEXIBLE_SHOPS[size]
        return (BrandimarteGenerator(n, m, **options) if kind == "brandimarte" else SD1Generator(n, m))(seed)
    n, m = (int(x) for x in size.split("x"))
    return RandomInstanceGenerator(n, m)(seed)


def _run(task: tuple) -> tuple:
    from baselines import rules
    from baselines.tabu import TabuProblem, TabuSettings, tabu_search

    variant, changes, size, seed, seconds = task
    instance = generated(size, seed)
    if instance.is_flexible:  # each job rule with each machine rule
        start = rules.best_rule_plan(instance).schedule
    else:
        start = min(rules.dispatch_many([instance] * 3, ["mwkr", "mopnr", "spt"]), key=lambda r: r.objective).schedule
    settings = replace(TabuSettings(), **changes)
    out = tabu_search(TabuProblem.build(instance), start, seconds=seconds, workers=1, seed=seed, settings=settings)
    return variant, size, seed, out.objective, out.stats["iterations_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--instances", type=int, default=3, help="generated instances per size")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--shop", choices=("classic", "flexible"), default="classic")
    parser.add_argument("--out", default="experiments/results")
    args = parser.parse_args(argv)
    from baselines.tabu import TabuProblem, TabuSettings, tabu_search
    from instances.generators import RandomInstanceGenerator

    tiny = RandomInstanceGenerator(3, 3)(0)  # compile the kernels once, before any clock
    from baselines import rules

    tabu_search(TabuProblem.build(tiny), rules.dispatch(tiny, "mwkr").schedule, iterations=10, workers=1)
    names = args.variants.split(",")
    sizes = list(FLEXIBLE_SHOPS) if args.shop == "flexible" else [f"{n}x{m}" for n, m in SIZES]
    tasks = [
        (v, VARIANTS[v], size, 7000 + i, args.seconds) for v in names for size in sizes for i in range(args.instances)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(_run, tasks))
    best = {}
    for _v, size, seed, value, _ in rows:
        best[size, seed] = min(best.get((size, seed), value), value)
    table = {}
    for v, size, seed, value, speed in rows:
        table.setdefault(v, {}).setdefault(size, []).append((value / best[size, seed] - 1, speed))
    flexible = args.shop == "flexible"
    shops = "flexible shops: " + ", ".join(f"{k} {v[3]}" for k, v in FLEXIBLE_SHOPS.items()) if flexible else (
        "Taillard's distribution")  # fmt: skip
    lines = [
        f"# Tabu search tuning on generated instances ({shops}; seeds 7000+)", "",
        f"Commit `{git_commit()}`, {machine_description()['cpu']} ({machine_description()['cores']} cores). Command:"
        f" `python -m experiments.tabu_tuning --shop {args.shop} --seconds {args.seconds} --instances"
        f" {args.instances} --variants {args.variants}` ({args.parallel} processes, one search each;"
        f" {time.perf_counter() - started:.0f} s).",
        f"Defaults: `{asdict(TabuSettings())}`.", "",
        "Mean % above the best makespan any setting found on the instance (moves per second in brackets).", "",
        "| setting | " + " | ".join(sizes) + " | mean |", "|---|" + "---:|" * (len(sizes) + 1),
    ]  # fmt: skip
    for v in names:
        cells = [np.mean([g for g, _ in table[v][s]]) * 100 for s in sizes]
        speeds = [np.mean([sp for _, sp in table[v][s]]) for s in sizes]
        lines.append(f"| {v} | " + " | ".join(f"{c:.2f} ({sp / 1000:.0f}k)" for c, sp in zip(cells, speeds))
                     + f" | {np.mean(cells):.2f} |")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "tabu_tuning_flexible" if flexible else "tabu_tuning"
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps([list(r) for r in rows], indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
