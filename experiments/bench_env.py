"""Environment throughput: steps/s with uniformly random valid actions, ours vs JSSEnv and job_shop_lib.

Every env is measured in this one process, side by side, with the same action sampler, on
the same Taillard instances; a step includes computing the next observation and mask.
Peers come from the optional ``bench`` extra (kept out of ``all``: job-shop-lib 1.7.2 pins
ortools < 9.13), so run it in its own environment::

    python -m venv .venv-bench && .venv-bench/bin/pip install -e '.[bench]'
    .venv-bench/bin/python -m experiments.bench_env --seconds 3

Results go to ``experiments/results/bench_env.{md,json}`` with the commit and machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import instances
import sched_env
from experiments.provenance import git_commit, machine_description, package_versions
from sched_env import compiled as K
from sched_env.env import DEFAULT_ACTION_SET, DEFAULT_PLACEMENT

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(step: Callable[[], int], seconds: float) -> float:
    """Call ``step`` (returns how many env steps it made) until ``seconds`` pass; steps/s."""
    step()  # warm caches / compile
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(32):
            steps += step()
    return steps / elapsed


class _Uniforms:
    """Pre-drawn uniforms so that sampling costs the same for every env measured."""

    def __init__(self, seed: int = 0) -> None:
        self.values = np.random.default_rng(seed).random(1 << 16).tolist()
        self.i = 0

    def pick(self, allowed) -> int:
        self.i = (self.i + 1) & 0xFFFF
        return allowed[int(self.values[self.i] * len(allowed))]


def ours_single(instance, seconds: float, **options) -> float:
    env = sched_env.JobShopEnv(instance, **options)
    obs, _ = env.reset(seed=0)
    uniforms = _Uniforms()
    state = {"obs": obs}

    def step() -> int:
        obs, _, done, _, _ = env.step(uniforms.pick(np.flatnonzero(state["obs"]["action_mask"])))
        state["obs"] = env.reset()[0] if done else obs
        return 1

    return _timed(step, seconds)


def ours_batched(instance, seconds: float, num_envs: int, **options) -> float:
    env = sched_env.BatchJobShopEnv(num_envs, instance, seed=0, **options)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    actions = np.zeros(num_envs, dtype=np.int64)
    state = {"obs": obs}

    def step() -> int:  # same rule, vectorised: the floor(u * count)-th allowed job
        K.sample_valid_actions(state["obs"]["action_mask"], rng.random(num_envs), actions)
        state["obs"] = env.step(actions)[0]
        return num_envs

    return _timed(step, seconds)


def jssenv_single(instance, seconds: float) -> float:
    from JSSEnv.envs.jss_env import JssEnv  # peer: pip install 'sched-env[bench]'

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / instance.name
        path.write_text("\n".join(instances.format_jsplib(instance).splitlines()[1:]) + "\n")
        env = JssEnv({"instance_path": path})
    uniforms = _Uniforms()
    state = {"obs": env.reset()}

    def step() -> int:
        obs, _, done, _, _ = env.step(uniforms.pick(np.flatnonzero(state["obs"]["action_mask"])))
        state["obs"] = env.reset() if done else obs
        return 1

    return _timed(step, seconds)


def job_shop_lib_single(instance, seconds: float) -> float:
    from job_shop_lib import JobShopInstance, Operation  # peer: pip install 'sched-env[bench]'
    from job_shop_lib.dispatching.feature_observers import FeatureObserverType
    from job_shop_lib.graphs import build_resource_task_graph
    from job_shop_lib.reinforcement_learning import SingleJobShopGraphEnv

    theirs = JobShopInstance(
        [[Operation(int(m), int(d)) for m, d in instance.operations(j)] for j in range(instance.n_jobs)],
        name=instance.name,
    )
    env = SingleJobShopGraphEnv(
        build_resource_task_graph(theirs),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="ta01,ta41,ta71", help="comma-separated catalogue names")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per env and instance")
    parser.add_argument("--num-envs", type=int, default=1024, help="shops in the batched env")
    parser.add_argument("--out", default=str(RESULTS), help="folder for bench_env.md / bench_env.json")
    args = parser.parse_args(argv)
    sched_env.warm_up()
    peers = {"JSSEnv": jssenv_single, "job_shop_lib": job_shop_lib_single}
    rows = []
    for name in args.instances.split(","):
        instance = instances.load(name)
        row: dict = {"instance": name, "size": f"{instance.n_jobs}x{instance.n_machines}"}
        row["ours_single"] = ours_single(instance, args.seconds)
        row["ours_single_append_any"] = ours_single(instance, args.seconds, placement="append", action_set="any")
        row["ours_batched"] = ours_batched(instance, args.seconds, args.num_envs)
        for peer, measure in peers.items():
            try:
                row[peer] = measure(instance, args.seconds)
            except ImportError as error:
                row[peer] = None
                print(f"{peer} not measured ({error}); install the peers: pip install -e '.[bench]'")
        jss = row.get("JSSEnv")
        row["single_vs_JSSEnv"] = row["ours_single"] / jss if jss else None
        row["batched_vs_JSSEnv"] = row["ours_batched"] / jss if jss else None
        rows.append(row)
        print(
            f"{name} ({row['size']}): ours single {row['ours_single']:,.0f}/s, batched(N={args.num_envs})"
            f" {row['ours_batched']:,.0f}/s, JSSEnv {jss or 0:,.0f}/s, job_shop_lib {row.get('job_shop_lib') or 0:,.0f}/s"
            + (
                f" -> single x{row['single_vs_JSSEnv']:.1f}, batched x{row['batched_vs_JSSEnv']:.0f} JSSEnv"
                if jss
                else ""
            ),
            flush=True,
        )
    record = {
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_description(),
        "num_envs": args.num_envs,
        "seconds_per_measurement": args.seconds,
        "defaults": {"placement": DEFAULT_PLACEMENT, "action_set": DEFAULT_ACTION_SET, "reward": "dense"},
        "versions": package_versions(("sched-env", "numba", "numpy", "gymnasium", "JSSEnv", "job-shop-lib")),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_env.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "bench_env.md").write_text(_markdown(record))
    print(f"wrote {out / 'bench_env.md'}")
    return 0


def _markdown(record: dict) -> str:
    def rate(value):
        return "n/a" if value is None else f"{value:,.0f}"

    def ratio(value):
        return "n/a" if value is None else f"{value:.1f}x"

    lines = [
        "# Environment throughput (random valid actions, steps/s)",
        "",
        f"Commit `{record['commit']}`, {record['date']}, {record['machine']['cpu']}, {record['machine']['cores']} cores,"
        f" Python {record['machine']['python']}. Regenerate: `.venv-bench/bin/python -m experiments.bench_env`"
        " (see the module docstring).",
        "",
        f"Ours: default options ({', '.join(f'{k}={v}' for k, v in record['defaults'].items())}) unless noted;"
        f" batched = `BatchJobShopEnv` with N={record['num_envs']} shops, all steps counted.",
        "",
        "| instance | size | ours single | ours single (append, any) | ours batched | JSSEnv | job_shop_lib"
        " | single / JSSEnv | batched / JSSEnv |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['instance']} | {r['size']} | {rate(r['ours_single'])} | {rate(r['ours_single_append_any'])}"
            f" | {rate(r['ours_batched'])} | {rate(r.get('JSSEnv'))} | {rate(r.get('job_shop_lib'))}"
            f" | {ratio(r['single_vs_JSSEnv'])} | {ratio(r['batched_vs_JSSEnv'])} |"
        )
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
