"""The two recipes of the (job, machine) pair policy side by side, at equal wall time: for every
training run (``sched-env train`` folders), the validation gap on generated shops (what chose the
checkpoint) and the chosen checkpoint's greedy gap on the ``sd1`` test sets (reported, never used
to choose), then per recipe the mean and spread over its seeds.

    python -m experiments.flexible_recipes runs/flex-sl-s0 runs/flex-sl-s1 ... --command "..."
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import instances
from experiments.provenance import git_commit, machine_description, write_report

RESULTS = Path(__file__).resolve().parent / "results"


def greedy_gaps(checkpoint: Path, sizes: list[str], per_size: int) -> dict[str, float]:
    """Mean greedy gap to OR-Tools' 1 800 s makespans per ``sd1`` size (all instances of a size
    stepped together in one batched env)."""
    from agents.loading import load_policy
    from agents.rollouts import run_episodes
    from sched_env.vector import BatchJobShopEnv

    policy = load_policy(checkpoint)
    gaps = {}
    for size in sizes:
        names = [n for n in instances.names("sd1") if n.startswith(f"sd1_{size}_")][:per_size]
        items = [instances.load(n) for n in names]
        batch = BatchJobShopEnv(len(items), instance=items, pair_actions=True)
        run = run_episodes(batch, policy.score, ("makespan",), greedy=True, options={"instances": items})
        bounds = np.array([instances.best_known(n) for n in names], dtype=float)
        gaps[size] = float(np.mean(run.objectives / bounds - 1.0))
    return gaps


def run_row(folder: Path, sizes: list[str], per_size: int) -> dict:
    config = json.loads((folder / "config.json").read_text())
    rows = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines() if line.strip()]
    best = min(rows, key=lambda r: r["gap_to_reference"])
    return {
        "run": folder.name, "algo": config["algo"], "seed": config["seed"], "minutes": rows[-1]["minutes"],
        "decisions": rows[-1]["steps"], "best_validation_gap": best["gap_to_reference"],
        "best_at_minutes": best["minutes"], "curve": [(r["minutes"], r["gap_to_reference"]) for r in rows],
        "sd1_greedy": greedy_gaps(folder / "best.zip", sizes, per_size),
    }  # fmt: skip


def best_by(curve: list[tuple[float, float]], minutes: float) -> float:
    """The best validation gap a run had reached by ``minutes`` of training."""
    reached = [gap for at, gap in curve if at <= minutes + 1e-9]
    return min(reached) if reached else float("nan")


def spread(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{np.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def markdown(report: dict) -> str:
    sizes, rows = report["sizes"], report["runs"]
    equal = report["equal_minutes"]
    lines = [
        "# The pair policy's two recipes at equal wall time",
        "",
        f"Commit `{report['commit']}`, {report['machine']}. Command: `{report['command']}`. Evaluated in"
        f" {report['seconds']:.0f} s.",
        "",
        "Validation: the runs' generated validation shops (the training mix, own seed); gap = mean ratio to the"
        " best of six rules with earliest-end machines - 1; it chose each run's checkpoint (`best.zip`). sd1: that"
        f" checkpoint's greedy mean gap to OR-Tools' 1 800 s makespans, first {report['per_size']} instances per"
        " size (a test set: reported, never used to choose).",
        "",
        f"| run | recipe | seed | minutes | decisions | best validation gap | by minute {equal:.0f} |"
        + "".join(f" sd1 {s} |" for s in sizes),
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(sizes),
    ]
    for row in rows:
        lines.append(
            f"| {row['run']} | {row['algo']} | {row['seed']} | {row['minutes']:.1f} | {row['decisions']:,} |"
            f" {100 * row['best_validation_gap']:+.2f} % | {100 * best_by(row['curve'], equal):+.2f} % |"
            + "".join(f" {100 * row['sd1_greedy'][s]:.1f} |" for s in sizes)
        )
    lines += ["", f"Per recipe, mean (min-max) over seeds, in %; validation at minute {equal:.0f}:", "",
              "| recipe | seeds | validation gap | " + " | ".join(f"sd1 {s}" for s in sizes) + " |",
              "|---|---:|---:|" + "---:|" * len(sizes)]  # fmt: skip
    for algo in sorted({row["algo"] for row in rows}):
        mine = [row for row in rows if row["algo"] == algo]
        lines.append(
            f"| {algo} | {len(mine)} | {spread([best_by(r['curve'], equal) for r in mine])} | "
            + " | ".join(spread([r["sd1_greedy"][s] for r in mine]) for s in sizes)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (OUT/NAME of `sched-env train`)")
    parser.add_argument("--command", required=True, help="the exact commands that trained the runs (recorded)")
    parser.add_argument("--sizes", default=",".join(instances.catalogue.SD1_SIZES))
    parser.add_argument("--per-size", type=int, default=100)
    parser.add_argument("--out", default=str(RESULTS / "flexible_recipes"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sizes = args.sizes.split(",")
    rows = [run_row(Path(folder), sizes, args.per_size) for folder in args.runs]
    machine = machine_description()
    report = {
        "commit": git_commit(), "machine": f"{machine['cpu']}, {machine['cores']} cores", "command": args.command,
        "sizes": sizes, "per_size": args.per_size, "runs": rows,
        "equal_minutes": min(row["minutes"] for row in rows), "seconds": time.perf_counter() - started,
    }  # fmt: skip
    text = markdown(report)
    write_report(args.out, report, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
