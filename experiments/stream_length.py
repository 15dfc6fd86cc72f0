"""From short episodes to steady state: the learned dispatcher against ATC as the stream grows.

Random-route scenarios of ``sched_env.events.generate_scenario`` (10 machines, 5 jobs at the start
and N arriving at utilisation 0.9, 10 % duration noise, due dates at 1.5 x the work), 40 seeds per
length, every method through ``baselines.deciders.dispatch_online``; total weighted tardiness over
every job of the episode (the shop starts empty and drains at the end).

    python -m experiments.stream_length            # writes experiments/results/stream_length.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from baselines import deciders
from experiments.provenance import git_commit, machine_description
from sched_env.events import generate_scenario

RESULTS = Path(__file__).resolve().parent / "results"
LENGTHS = (15, 50, 100, 200, 400)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--methods", default="atc,wspt,policy")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--name", default="stream_length", help="writes NAME.md and NAME.json (default stream_length)")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    built = {m: deciders.make(m, objective="total_weighted_tardiness") for m in methods}
    rows = []
    for arriving in LENGTHS:
        scenarios = [generate_scenario(10, initial_jobs=5, arriving_jobs=arriving, utilisation=0.9, noise=0.1,
                                       tightness=1.5, seed=10_000 + s) for s in range(args.seeds)]  # fmt: skip
        means = {
            m: float(np.mean([r.objective for r in deciders.dispatch_online(d, scenarios)])) for m, d in built.items()
        }
        rows.append({"jobs": 5 + arriving, **means})
    lines = ["# From short episodes to steady state", "",
             f"Command: `python -m experiments.stream_length {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
             f"Commit: {git_commit()}, machine: {machine_description()['cpu']}.", "",
             "Mean total weighted tardiness over " + str(args.seeds) + " seeds (random routes, 10 machines, utilisation"
             " 0.9, 10 % noise, due dates at 1.5 x the work, an empty shop at the start); in brackets the ratio to ATC.", "",
             "| jobs | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['jobs']} | " + " | ".join(f"{row[m]:.0f} ({row[m] / row['atc']:.3f})" if row["atc"] else
                                                       f"{row[m]:.0f}" for m in methods) + " |")  # fmt: skip
    out = Path(args.out)
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
