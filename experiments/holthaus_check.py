"""The simulator against a public implementation: jasima's Holthaus test.

jasima (``HolthausTest``: FIFO, 10 operations per job, integer processing times 1..49,
utilisation 0.95, due date = arrival + 4 x total work, 500 warm-up jobs, then 20 batches of
2 000 jobs) reports a mean flow time of 2643.5 and a mean tardiness of 1645.6 for one seed.
This runs the same configuration here (setting ``full-0.95-4-p49-w500-r40000``) over many
seeds, through the same decider door as the benchmark, and shows where jasima's values fall.

    python -m experiments.holthaus_check --seeds 20        # writes experiments/results/holthaus.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments.bench_standard import mean_interval, run_cell
from experiments.provenance import git_commit, machine_description
from sched_env.parallel import map_tasks

SETTING = "full-0.95-4-p49-w500-r40000"
JASIMA = {"flow_mean": 2643.5, "tardiness_mean": 1645.6}
RESULTS = Path(__file__).resolve().parent / "results"


def report(rows: list[dict], wall_s: float, command: str) -> str:
    lines = [
        "# The simulator against jasima's Holthaus test", "",
        f"Command: `{command}`  ", f"Commit: {git_commit()}, machine: {machine_description()['cpu']}; wall time"
        f" {wall_s:.0f} s.", "",
        f"Setting `{SETTING}`: FIFO, every job visits all 10 machines in random order, integer processing times"
        " uniform in 1..49, Poisson arrivals at utilisation 0.95, due date = arrival + 4 x total work, 500 warm-up"
        f" jobs, the next 40 000 recorded (jasima: 20 batches of 2 000). {len(rows)} seeds (test family).", "",
        "| figure | jasima (1 seed) | sched-env mean [95 % CI] | sched-env min .. max | share of our seeds below jasima's |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for key, label in (("flow_mean", "mean flow time"), ("tardiness_mean", "mean tardiness")):
        values = np.array([r[key] for r in rows])
        mean, half = mean_interval(values)
        below = float((values < JASIMA[key]).mean())
        lines.append(f"| {label} | {JASIMA[key]:.1f} | {mean:.1f} [{mean - half:.1f}, {mean + half:.1f}] |"
                     f" {values.min():.1f} .. {values.max():.1f} | {100 * below:.0f} % |")  # fmt: skip
    lines += ["", "| seed | mean flow | mean tardiness | % tardy | utilisation |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["seed"]):
        lines.append(f"| {r['seed']} | {r['flow_mean']:.1f} | {r['tardiness_mean']:.1f} | {100 * r['tardy_share']:.1f} %"
                     f" | {r['utilisation']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    tasks = [(SETTING, "fifo", [seed], "test", 320) for seed in range(args.seeds)]
    rows = [row for chunk in map_tasks(run_cell, tasks, parallel=args.parallel) for row in chunk]
    wall = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import sys

    command = "python -m experiments.holthaus_check " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "holthaus.md").write_text(report(rows, wall, command.strip()))
    (out / "holthaus.json").write_text(json.dumps(rows, indent=1))
    print((out / "holthaus.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
