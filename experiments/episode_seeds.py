"""The 16-scenario benchmark's instant deciders over many scenario seeds: how much one draw says.

``experiments.bench_dynamic`` draws its 16 scenarios (4 Taillard pools x 2 utilisations x with or
without breakdowns, 20-job episodes) from one seed, the same for all 16, so they share their
arrival gaps and job draws: the table is close to one sample. This runs the rules and the learned
dispatchers (every epoch, through the decider door, as the benchmark does) on seeds ``0..N-1`` and
reports, per method, the mean total weighted tardiness over all of them, its ratio to ATC's, and in
how many seeds the method's 16-scenario mean is at or below the best rule's. An evaluation only:
no choice reads it (the pools are Taillard's, a test family).

    python -m experiments.episode_seeds --seeds 20 --methods policy,policy@runs/b-0/policy.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from baselines import deciders
from experiments.bench_dynamic import POOLS, RULES, scenarios
from experiments.provenance import report_header

RESULTS = Path(__file__).resolve().parent / "results"


def seed_means(seed: int, methods: list[str]) -> dict[str, float]:
    """Each method's mean total weighted tardiness over the 16 scenarios of one seed."""
    cases = [case[-1] for case in scenarios(POOLS, (0.8, 0.9), (False, True), seed)]
    means = {}
    for method in methods:
        runs = deciders.dispatch_online(deciders.make(method), cases)
        means[method] = float(np.mean([run.params["total_weighted_tardiness"] for run in runs]))
    return means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="scenario seeds 0..N-1 (the benchmark's table is seed 0)")
    parser.add_argument("--methods", default="policy", help="learned dispatchers (comma-separated method specs)")
    parser.add_argument("--name", default="episode_seeds")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    learned = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = [*RULES, *learned]
    rows = [seed_means(seed, methods) for seed in range(args.seeds)]
    table = np.array([[row[m] for m in methods] for row in rows])
    best_rule = table[:, : len(RULES)].min(axis=1)  # per seed: the best rule on that draw
    atc = table[:, methods.index("atc")]
    lines = [
        *report_header("The 16 dynamic scenarios over many seeds", "experiments.episode_seeds", argv),
        f"The 16 scenarios of `experiments.bench_dynamic` (Taillard pools ta01, ta21, ta41, ta61; 5 jobs at the"
        f" start and 15 arriving at utilisation 0.8 and 0.9, with and without breakdowns, 10 % duration noise, due"
        f" dates at 1.5 x the work), drawn with seeds 0-{args.seeds - 1}; the benchmark's own table is seed 0."
        " Mean total weighted tardiness per scenario; 'at or below the best rule' counts the seeds in which the"
        " method's mean over the 16 scenarios is at or below the best rule's on that seed. An evaluation: no"
        " choice read it.",
        "",
        "| method | mean TWT | ratio to ATC | seed 0 | seeds at or below the best rule |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, method in enumerate(methods):
        wins = int((table[:, i] <= best_rule).sum())
        lines.append(f"| {method} | {table[:, i].mean():,.0f} | {table[:, i].mean() / atc.mean():.3f} |"
                     f" {table[0, i]:,.0f} | {wins} of {args.seeds} |")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
