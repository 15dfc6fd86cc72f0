"""Env and tabu-search throughput of two commits side by side: this checkout against an earlier one.

Each round runs every measurement once in a fresh process per tree, alternating the trees,
so both see the same machine load; the report gives the median of the rounds and the ratio.
Measured: the static env (single and batched, N=1024) on ta01 / ta41 / ta71 with uniformly
random valid actions, and the dynamic env on endless-stream scenarios (20 machines, 90 %
utilisation, the first 200 / 1 000 / 5 000 arriving jobs of one stream, first-allowed-job
dispatching; steps/s over decisions 500-2500, which see the same jobs in every case), whose
steps/s should not depend on the stream's length; and the tabu search's moves/s (``tabu:iters=N``,
one search, from the best rule's plan, on ta01 and ta41: the same moves in both trees).

    python -m experiments.bench_compare --base 5cd12bb --rounds 3 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.provenance import git_commit, machine_description

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
STATIC = ("ta01", "ta41", "ta71")
STREAMS = (200, 1000, 5000)
TABU = ("ta01", "ta41")

# Runs inside each tree: only APIs both commits have (JobShopEnv, BatchJobShopEnv,
# DynamicJobShopEnv(scenario), generate_scenario, bench_env's samplers).
MEASURE = """
import json, sys, time
import numpy as np
import instances, sched_env
from experiments.bench_env import ours_batched, ours_single
from sched_env.dynamic import DynamicJobShopEnv
from instances import JobShopInstance
from sched_env.events import Scenario, generate_scenario

what, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
sched_env.warm_up()
if what == "tabu":  # moves per second of one search, a fixed move count (the same search in both trees)
    from baselines import deciders

    moves = {"ta01": 6000, "ta41": 2000}[name]
    result = deciders.solve(instances.load(name), f"tabu:iters={moves}", seed=3, workers=1)
    value = result.params["iterations_per_s"]
elif what == "single":
    value = ours_single(instances.load(name), seconds)
elif what == "batched":
    value = ours_batched(instances.load(name), seconds, 1024)
else:  # a stream of `name` arriving jobs, first allowed job: steps/s over decisions 500-2500 (steady state)
    full = generate_scenario(20, initial_jobs=20, arriving_jobs=5000, utilisation=0.9, seed=0)
    n, jobs = 20 + int(name), full.jobs  # the first jobs of one long stream: the same shop, a longer tail
    prefix = JobShopInstance(
        jobs.machines[:n], jobs.durations[:n], n_machines=jobs.n_machines, n_ops=jobs.n_ops[:n],
        release_dates=jobs.release_dates[:n], due_dates=jobs.due_dates[:n], weights=jobs.weights[:n],
    )
    scenario = Scenario(prefix, realized_durations=full.realized_durations[:n], interruption=full.interruption)
    env = DynamicJobShopEnv(scenario)
    obs, _ = env.reset(seed=0)
    for step in range(2500):
        if step == 500:
            start = time.perf_counter()
        obs, _, done, _, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    value = 2000 / (time.perf_counter() - start)
print(json.dumps(value))
"""


def measure(tree: Path, what: str, name: str, seconds: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, what, name, str(seconds)], cwd=tree, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{tree} {what} {name}: {out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="5cd12bb", help="the earlier commit (default: before issue 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--only", choices=("single", "batched", "stream", "tabu"), help="measure only these cases")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--stem", help="file stem of the outputs (default bench_compare[_ONLY])")
    args = parser.parse_args(argv)
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=REPO, capture_output=True, text=True)
    base_commit = base.stdout.strip()
    cases = [("single", n) for n in STATIC] + [("batched", n) for n in STATIC] + [("stream", str(n)) for n in STREAMS]
    cases += [("tabu", n) for n in TABU]
    cases = [case for case in cases if args.only in (None, case[0])]
    with tempfile.TemporaryDirectory() as folder:
        old = Path(folder) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), base_commit], cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        try:
            trees = {"base": old, "new": REPO}
            for tree in trees.values():  # compile (or load) the kernels once per tree
                measure(tree, "single", "ta01", 0.1)
                measure(tree, "tabu", "ta01", 0.1)
            values: dict[tuple[str, str, str], list[float]] = {}
            for round_ in range(args.rounds):
                for what, name in cases:
                    for label in ("base", "new") if round_ % 2 == 0 else ("new", "base"):
                        value = measure(trees[label], what, name, args.seconds)
                        values.setdefault((label, what, name), []).append(value)
                        unit = "moves/s" if what == "tabu" else "steps/s"
                        print(f"round {round_ + 1}: {label} {what} {name}: {value:,.0f} {unit}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
    rows = []
    for what, name in cases:
        b = statistics.median(values["base", what, name])
        n = statistics.median(values["new", what, name])
        rows.append({"case": what, "instance": name, "base": round(b), "new": round(n), "ratio": round(n / b, 3)})
    command = "python -m experiments.bench_compare " + " ".join(argv or sys.argv[1:])
    lines = [
        "# Env and tabu throughput: this commit against an earlier one, side by side",
        "",
        f"New `{git_commit()}` vs base `{base_commit}`; {machine_description()}; {time.strftime('%Y-%m-%d')}.",
        f"Median of {args.rounds} rounds of {args.seconds:g} s each, trees alternating, one process per"
        f" measurement. Regenerate: `{command.strip()}`.",
        "Static: uniformly random valid actions, steps/s (batched: N=1024 shops, shop-steps/s). Stream: the dynamic"
        " env, 20 machines, 90 % utilisation, 20 jobs at the start + the first N arriving jobs of one stream, first"
        " allowed job, steps/s over decisions 500-2500 (the same jobs in every case: only the stream's length differs)."
        " Tabu: moves/s of one search (`tabu:iters=N`, seed 3, one worker; the same moves in both trees).",
        "",
        "| case | instance / arriving jobs | base | new | new / base |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {r['case']} | {r['instance']} | {r['base']:,} | {r['new']:,} | {r['ratio']:.2f} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.stem or ("bench_compare" if args.only is None else f"bench_compare_{args.only}")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(
        json.dumps({"new": git_commit(), "base": base_commit, "machine": machine_description(), "rows": rows,
                    "rounds": {f"{k[0]} {k[1]} {k[2]}": v for k, v in values.items()}}, indent=1) + "\n"
    )  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
