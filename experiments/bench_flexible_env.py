"""Flexible-shop environment throughput, and the classic env's speed against an earlier commit.

Two tables, each measured side by side in this one run (random valid actions; a step includes the
next observation and mask):

1. **Flexible env** on ``sd1`` 10x5 and 20x10: ours (single env with (job, machine) actions, the
   same with job actions and the earliest-end machine, the batched env) against job_shop_lib's
   dispatcher env with alternative machines (``SingleJobShopGraphEnv``; it takes one duration per
   operation, so each gets its shortest), and against our classic env on a classic instance of the
   same jobs, machines and operation count.
2. **Classic env, today against** ``--baseline`` (the commit before the flexible shop): the same
   measurement of ``experiments.bench_env`` run in a git worktree of that commit and in this
   checkout, alternately (``--rounds`` each), so both see the same machine load.

Peers come from the ``bench`` extra (its own environment)::

    python -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv-bench/bin/python -m experiments.bench_flexible_env

Results go to ``experiments/results/bench_flexible_env.{json,md}`` with the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import instances
from experiments.bench_env import _timed, _Uniforms, ours_batched, ours_single
from experiments.provenance import git_commit, machine_description, package_versions, write_report

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
CLASSIC_SNIPPET = """
import json, sys
import instances, sched_env
from experiments.bench_env import ours_batched, ours_single
sched_env.warm_up()
name, seconds, num_envs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
instance = instances.load(name)
print(json.dumps({"single": ours_single(instance, seconds), "batched": ours_batched(instance, seconds, num_envs)}))
"""


def job_shop_lib_flexible(instance, seconds: float) -> float:
    """job_shop_lib's dispatcher env on a flexible instance (alternatives share one duration there)."""
    from job_shop_lib import JobShopInstance, Operation  # peer: pip install 'sched-env[bench]'
    from job_shop_lib.dispatching.feature_observers import FeatureObserverType
    from job_shop_lib.graphs import build_resource_task_graph
    from job_shop_lib.reinforcement_learning import SingleJobShopGraphEnv

    jobs = [
        [Operation([m for m, _ in instance.alternatives(j, k)], min(d for _, d in instance.alternatives(j, k)))
         for k in range(int(instance.n_ops[j]))]
        for j in range(instance.n_jobs)
    ]  # fmt: skip
    env = SingleJobShopGraphEnv(
        build_resource_task_graph(JobShopInstance(jobs, name=instance.name)),
        [FeatureObserverType.IS_READY, FeatureObserverType.EARLIEST_START_TIME, FeatureObserverType.DURATION],
    )
    uniforms = _Uniforms()
    state = {"info": env.reset()[1]}

    def step() -> int:
        _op, machine, job = uniforms.pick(state["info"]["available_operations_with_ids"])
        _, _, done, _, info = env.step((job, machine))
        state["info"] = env.reset()[1] if done else info
        return 1

    return _timed(step, seconds)


def same_size_classic(instance) -> instances.JobShopInstance:
    """A classic instance with the flexible one's jobs, machines and operations per job."""
    rng = np.random.default_rng(0)
    machines = rng.integers(0, instance.n_machines, size=instance.machines.shape)
    durations = rng.integers(1, 21, size=instance.machines.shape)
    return instances.JobShopInstance(machines, durations, n_machines=instance.n_machines, n_ops=instance.n_ops,
                                     name=f"classic_like_{instance.name}")  # fmt: skip


def flexible_rows(names: list[str], seconds: float, num_envs: int, rounds: int) -> list[dict]:
    """Each variant measured ``rounds`` times, interleaved, keeping its best round (load only slows)."""
    rows = []
    for name in names:
        instance = instances.load(name)
        classic = same_size_classic(instance)
        variants = {
            "ours_pairs": lambda i=instance: ours_single(i, seconds),
            "ours_jobs_eet": lambda i=instance: ours_single(i, seconds, machine_rule="eet"),
            "ours_batched_pairs": lambda i=instance: ours_batched(i, seconds, num_envs),
            "ours_classic_same_size": lambda c=classic: ours_single(c, seconds),
            "job_shop_lib": lambda i=instance: job_shop_lib_flexible(i, seconds),
        }
        best: dict[str, float | None] = dict.fromkeys(variants, 0.0)
        for _ in range(rounds):
            for key, measure in variants.items():
                if best[key] is None:
                    continue
                try:
                    best[key] = max(best[key], measure())
                except ImportError as error:
                    best[key] = None
                    print(f"{key} not measured ({error}); install the peers: pip install -e '.[bench]'")
        row = {"instance": name, "size": f"{instance.n_jobs}x{instance.n_machines}",
               "operations": instance.n_operations, "alternatives": round(instance.flexibility, 2), **best}  # fmt: skip
        peer = row["job_shop_lib"]
        row["pairs_vs_job_shop_lib"] = row["ours_pairs"] / peer if peer else None
        row["classic_vs_pairs"] = row["ours_classic_same_size"] / row["ours_pairs"]
        rows.append(row)
        print(f"{name}: pairs {row['ours_pairs']:,.0f}/s, jobs+eet {row['ours_jobs_eet']:,.0f}/s, batched"
              f" {row['ours_batched_pairs']:,.0f}/s, classic same size {row['ours_classic_same_size']:,.0f}/s,"
              f" job_shop_lib {peer or 0:,.0f}/s", flush=True)  # fmt: skip
    return rows


def classic_rows(names: list[str], baseline: str, seconds: float, num_envs: int, rounds: int) -> list[dict]:
    """The classic env today and at ``baseline``, measured alternately in two processes per round."""
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), baseline], check=True,
                       capture_output=True)  # fmt: skip
        try:
            rows = []
            for name in names:
                runs: dict[str, list[dict]] = {"today": [], "baseline": []}
                for _ in range(rounds):
                    for label, root in (("baseline", tree), ("today", REPO)):
                        env = {
                            **os.environ,
                            "PYTHONPATH": str(root),
                            "NUMBA_CACHE_DIR": str(Path(folder) / f"cache-{label}"),
                        }
                        out = subprocess.run([sys.executable, "-c", CLASSIC_SNIPPET, name, str(seconds), str(num_envs)],
                                             cwd=root, env=env, check=True, capture_output=True, text=True)  # fmt: skip
                        runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
                row = {"instance": name}
                for kind in ("single", "batched"):  # the best round of each: load only ever slows a run down
                    today = float(np.max([r[kind] for r in runs["today"]]))
                    before = float(np.max([r[kind] for r in runs["baseline"]]))
                    row |= {f"{kind}_today": today, f"{kind}_baseline": before, f"{kind}_ratio": today / before,
                            f"{kind}_median_ratio": float(np.median([r[kind] for r in runs["today"]]))
                            / float(np.median([r[kind] for r in runs["baseline"]]))}  # fmt: skip
                rows.append(row)
                print(f"{name}: single {row['single_ratio']:.3f}x, batched {row['batched_ratio']:.3f}x of {baseline}",
                      flush=True)  # fmt: skip
            return rows
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)


def markdown(report: dict) -> str:
    def rate(v):
        return "n/a" if v is None else f"{v:,.0f}"

    lines = [
        "# Flexible env throughput, and the classic env against the commit before it",
        "",
        f"Commit `{report['commit']}`, {report['date']}, {report['machine']['cpu']}, {report['machine']['cores']} cores."
        f" Command: `{report['command']}`. Random valid actions, steps/s; defaults (active placement, non-delay).",
        "",
        f"Flexible env: best of {report['rounds']} interleaved rounds per variant.",
        "",
        "| instance | size | ops | machines/op | ours (job, machine) | ours job + eet | ours batched (N="
        f"{report['num_envs']}) | job_shop_lib | ours / job_shop_lib | our classic, same size | classic / flexible |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["flexible"]:
        peer = "n/a" if r["pairs_vs_job_shop_lib"] is None else f"{r['pairs_vs_job_shop_lib']:.0f}x"
        lines.append(
            f"| {r['instance']} | {r['size']} | {r['operations']} | {r['alternatives']} | {rate(r['ours_pairs'])}"
            f" | {rate(r['ours_jobs_eet'])} | {rate(r['ours_batched_pairs'])} | {rate(r['job_shop_lib'])} | {peer}"
            f" | {rate(r['ours_classic_same_size'])} | {r['classic_vs_pairs']:.2f}x |"
        )
    if report["classic"]:
        lines += [
            "",
            f"Classic env today against `{report['baseline']}`: best of {report['rounds']} alternating rounds each"
            " (ratio of the medians in brackets):",
            "",
            "| instance | single today | single baseline | ratio | batched today | batched baseline | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report["classic"]:
            lines.append(
                f"| {r['instance']} | {rate(r['single_today'])} | {rate(r['single_baseline'])} | {r['single_ratio']:.3f}"
                f" ({r['single_median_ratio']:.3f}) | {rate(r['batched_today'])} | {rate(r['batched_baseline'])}"
                f" | {r['batched_ratio']:.3f} ({r['batched_median_ratio']:.3f}) |"
            )
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flexible", default="sd1_10x5_001,sd1_20x10_001", help="flexible catalogue names")
    parser.add_argument(
        "--classic", default="ta01,ta41,ta71", help="classic names for the before/after table ('' skips)"
    )
    parser.add_argument("--baseline", default="b8f0bd1", help="the commit the classic env is compared with")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "bench_flexible_env"))
    args = parser.parse_args(argv)
    import sched_env

    sched_env.warm_up()
    flexible = flexible_rows([n for n in args.flexible.split(",") if n], args.seconds, args.num_envs, args.rounds)
    classic = classic_rows([n for n in args.classic.split(",") if n], args.baseline, args.seconds, args.num_envs,
                           args.rounds)  # fmt: skip
    report = {
        "command": "python -m experiments.bench_flexible_env " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_description(),
        "versions": package_versions(("sched-env", "numba", "numpy", "gymnasium", "job-shop-lib")),
        "num_envs": args.num_envs, "baseline": args.baseline, "rounds": args.rounds,
        "flexible": flexible, "classic": classic,
    }  # fmt: skip
    write_report(args.out, report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
