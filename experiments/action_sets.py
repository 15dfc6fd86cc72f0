"""Measure what the env's placement and action-set options do to schedule quality.

For every (placement, action set): each dispatching rule's mean gap to the best-known
makespan, and the mean / best of N uniformly random rollouts (what an untrained policy
sees), on Taillard instances. This is the evidence behind the env's default options.

    python -m experiments.action_sets            # ta01-ta10, 500 random rollouts each
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import instances
from baselines.rules import RULES, dispatch_many
from experiments.provenance import git_commit, machine_description

RESULTS = Path(__file__).resolve().parent / "results"
MODES = [(p, a) for p in ("append", "active") for a in ("any", "giffler_thompson", "non_delay")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="ta01-ta10", help="e.g. ta01-ta10 or ft06,ta01")
    parser.add_argument("--samples", type=int, default=500, help="random rollouts per instance and mode")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    from experiments.cli import expand_names

    names = expand_names(args.instances)
    chosen = [instances.load(n) for n in names]
    best = np.array([instances.best_known(n) for n in names], dtype=float)
    rules = [r for r in RULES if r not in ("random", "edd")]
    rows = []
    for placement, action_set in MODES:
        row = {"placement": placement, "action_set": action_set}
        for rule in rules:
            results = dispatch_many(chosen, rule, placement=placement, action_set=action_set)
            row[rule] = float(np.mean([r.objective for r in results] / best - 1))
        means, bests = [], []
        for k, instance in enumerate(chosen):
            results = dispatch_many(
                [instance] * args.samples, "random", placement=placement, action_set=action_set, seed=k
            )
            makespans = np.array([r.objective for r in results]) / best[k] - 1
            means.append(makespans.mean())
            bests.append(makespans.min())
        row["random_mean"], row["random_best"] = float(np.mean(means)), float(np.mean(bests))
        rows.append(row)
        print(
            f"{placement:6s} {action_set:16s} "
            + " ".join(f"{r} {100 * row[r]:.1f}%" for r in rules)
            + f" | random mean {100 * row['random_mean']:.1f}% best-of-{args.samples} {100 * row['random_best']:.1f}%",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_description(),
        "instances": names,
        "samples": args.samples,
        "rows": rows,
    }
    (out / "action_sets.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# Placement and action set: mean gap to the best-known makespan",
        "",
        f"Instances {args.instances}; commit `{record['commit']}`, {record['date']}."
        f" Regenerate: `python -m experiments.action_sets --instances {args.instances} --samples {args.samples}`.",
        "",
        "| placement | action set | "
        + " | ".join(r.upper() for r in rules)
        + f" | random (mean) | random (best of {args.samples}) |",
        "|---|---|" + "---:|" * (len(rules) + 2),
    ]
    for row in rows:
        cells = [f"{100 * row[r]:.1f} %" for r in (*rules, "random_mean", "random_best")]
        lines.append(f"| {row['placement']} | {row['action_set']} | " + " | ".join(cells) + " |")
    lines.append("")
    (out / "action_sets.md").write_text("\n".join(lines))
    print(f"wrote {out / 'action_sets.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
