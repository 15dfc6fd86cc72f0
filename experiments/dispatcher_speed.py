"""Per-stream speed of the learned dispatcher in the kernels, against a baseline commit's.

Runs the same standard streams, dispatched by a priority network inside the compiled kernels,
here and in a git worktree of ``--baseline`` (e.g. the commit before the context columns),
alternating the two for ``--rounds`` rounds so that a busy machine slows both alike; ATC in the
same kernels is the yardstick. Writes ``experiments/results/NAME.{md,json}``.

    python -m experiments.dispatcher_speed --baseline 288091a --models policy@dynamic,policy@experiments/results/evolve_context/seed0.onnx
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.provenance import git_commit, machine_description, write_report

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("missing-0.90-4-w300-r1500", "full-0.95-4-m15-w300-r1500")


def time_streams(model: str, seeds: int) -> float:
    """Seconds per stream of ``model`` (``atc`` or a model file / shipped name) on the SETTINGS,
    after one untimed warm-up run (compilation)."""
    from agents.loading import load_policy
    from sched_env.compiled import RULE
    from sched_env.standard import run_streams, setting

    scenarios = [setting(name).scenario(seed) for name in SETTINGS for seed in range(seeds)]
    if model == "atc":

        def run(streams):
            return run_streams(streams, rules=[RULE.atc] * len(streams))
    else:
        hidden, params = load_policy(model.removeprefix("policy@"), kind="dynamic").network

        def run(streams):
            return run_streams(streams, params=np.repeat(params[None, :], len(streams), axis=0), hidden=hidden)

    run(scenarios[:1])
    started = time.perf_counter()
    for scenario in scenarios:  # one at a time: a stream's latency, not a batch's throughput
        run([scenario])
    return (time.perf_counter() - started) / len(scenarios)


def measure(tree: Path, model: str, seeds: int) -> float:
    """:func:`time_streams` in a fresh process of the checkout at ``tree``."""
    code = f"from experiments.dispatcher_speed import time_streams; print(time_streams({model!r}, {seeds}))"
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, env=env)
    if process.returncode != 0:
        raise SystemExit(f"timing {model} in {tree} failed:\n{process.stderr[-2000:]}")
    return float(process.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with (a git worktree is made)")
    parser.add_argument("--models", default="policy@dynamic", help="comma-separated: shipped names or model files")
    parser.add_argument("--baseline-model", default="dynamic", help="the model the baseline runs (shipped name)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="dispatcher_speed")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            # the baseline's time_streams is this file's: copied in, so an older commit can be timed
            (tree / "experiments" / "dispatcher_speed.py").write_text(Path(__file__).read_text())
            times: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                times.setdefault("baseline atc", []).append(measure(tree, "atc", args.seeds))
                times.setdefault(f"baseline {args.baseline_model}", []).append(
                    measure(tree, args.baseline_model, args.seeds))  # fmt: skip
                times.setdefault("atc", []).append(measure(ROOT, "atc", args.seeds))
                for model in models:
                    times.setdefault(model, []).append(measure(ROOT, model, args.seeds))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    base = float(np.median(times[f"baseline {args.baseline_model}"]))
    command = "python -m experiments.dispatcher_speed " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Per-stream speed of the learned dispatcher in the kernels",
        "",
        f"Command: `{command}`  ",
        f"Commit: {git_commit()} against the baseline {args.baseline}; machine: {machine_description()['cpu']}"
        f" ({machine_description()['cores']} cores, shared); one stream"
        f" at a time, one thread, {len(SETTINGS) * args.seeds} streams of {', '.join(SETTINGS)}, median of"
        f" {args.rounds} rounds (each a fresh process, the trees alternating).",
        "",
        f"| dispatcher | s per stream | ratio to the baseline's {args.baseline_model} |",
        "|---|---:|---:|",
    ]
    for name, values in times.items():
        median = float(np.median(values))
        lines.append(f"| {name} | {median:.4f} | {median / base:.2f} |")
    report = {"command": command, "commit": git_commit(), "baseline": args.baseline, "times": times}
    write_report(RESULTS / args.name, report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
