"""Policy speed, side by side in one process: per-decision latency at batch 1 (torch vs ONNX
Runtime, on states of a greedy rollout of ta01 15x15 and ta71 100x20), the full greedy plan of
each, and best-of-K sampling time; and MaskablePPO's training steps/s on our batched env vs
SB3's DummyVecEnv of single envs (same policy, same number of shops). ``--policy flexible``: the
shipped pair policy on sd1 20x10 and 40x10 instead (best of 100 on 20x10), no training.

    python -m experiments.bench_policy                  # writes experiments/results/policy_speed.{md,json}
    python -m experiments.bench_policy --skip-training  # latency only
    python -m experiments.bench_policy --policy flexible  # writes policy_speed_flexible.{md,json}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import instances
from experiments.provenance import git_commit, machine_description, package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def states_of(policy, instance, limit: int = 400):
    """Observations (batch 1) met on the policy's greedy rollout of ``instance``."""
    from agents.rollouts import static_batch

    batch = static_batch(policy, instance, 1)
    obs, _ = batch.reset()
    seen = []
    for _ in range(instance.n_operations):
        state = (obs["jobs"].copy(), obs["action_mask"].astype(np.float32))
        state += (obs["pairs"].copy(),) if "pairs" in obs else ()
        seen.append(state)
        obs, *_ = batch.step(policy.score(*state).argmax(-1))
    step = max(1, len(seen) // limit)
    return seen[::step]


def latency(policy, states, repeats: int = 3) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        for state in states:
            started = time.perf_counter()
            policy.score(*state)
            times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def plan_time(policy, instance, samples: int = 1, rounds: int = 3) -> dict[str, float]:
    from agents.rollouts import solve_with_policy

    best, results = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        results = solve_with_policy(policy, instance, samples=samples)
        best.append(time.perf_counter() - started)
    gap = results.gap_to(instances.best_known(instance.name))
    return {"seconds": float(min(best)), "makespan": int(results.objective), "gap": float(gap),
            "per_decision_ms": 1e3 * min(best) / instance.n_operations}  # fmt: skip


def training_throughput(steps: int, n_envs: int) -> dict[str, float]:
    """MaskablePPO (JobShopPolicy, same hyperparameters) on the batched env vs DummyVecEnv."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.policy import JobShopPolicy
    from sched_env import JobShopEnv
    from sched_env.sb3 import JobShopVecEnv

    generator = instances.RandomInstanceGenerator(15, 15)
    envs = {
        "batched (JobShopVecEnv)": lambda: JobShopVecEnv(n_envs, instance=generator, seed=0),
        "SB3 DummyVecEnv of JobShopEnv": lambda: DummyVecEnv(
            [lambda i=i: JobShopEnv(generator) for i in range(n_envs)]
        ),
    }
    out = {}
    for label, make in envs.items():
        env = make()
        model = MaskablePPO(JobShopPolicy, env, n_steps=64, batch_size=256, n_epochs=1, seed=0, verbose=0)
        model.learn(n_envs * 64)  # warm: compile, allocate
        started = time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        out[label] = steps / (time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128, help="K of the best-of-K timing (default 128)")
    parser.add_argument("--training-steps", type=int, default=20_000)
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument(
        "--policy",
        choices=("static", "flexible"),
        default="static",
        help="the shipped policy to time (flexible: sd1 20x10 and 40x10, no training)",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import sched_env
    from agents.loading import load_policy, shipped_path

    sched_env.warm_up()
    torch_policy = load_policy(shipped_path(args.policy, "torch"))
    onnx_policy = load_policy(shipped_path(args.policy, "onnx"))
    record = {"commit": git_commit(), "machine": machine_description(), "policy": args.policy,
              "versions": package_versions(["torch", "onnxruntime", "numba", "sb3-contrib"]), "cases": []}  # fmt: skip
    flexible = args.policy == "flexible"
    for name in ("sd1_20x10_001", "sd1_40x10_001") if flexible else ("ta01", "ta71"):
        instance = instances.load(name)
        states = states_of(onnx_policy, instance)
        row = {"instance": name, "size": f"{instance.n_jobs}x{instance.n_machines}", "states": len(states)}
        for label, policy in (("torch", torch_policy), ("onnx", onnx_policy)):
            row[label] = latency(policy, states)
            row[f"{label}_plan"] = plan_time(policy, instance)
        if name in ("ta01", "sd1_20x10_001"):
            samples = 100 if flexible else args.samples
            row[f"onnx_best_of_{samples}"] = plan_time(onnx_policy, instance, samples, rounds=3 if flexible else 1)
        record["cases"].append(row)
        print(json.dumps(row))
    if not (args.skip_training or flexible):
        record["training_steps_per_s"] = training_throughput(args.training_steps, args.n_envs)
        print(record["training_steps_per_s"])
    out = Path(args.out)
    stem = "policy_speed_flexible" if flexible else "policy_speed"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    (out / f"{stem}.md").write_text(report(record, args))
    print((out / f"{stem}.md").read_text())
    return 0


def report(record: dict, args) -> str:
    machine = record["machine"]
    lines = [
        "# Policy speed: per-decision latency (torch vs ONNX Runtime), full plans, training steps/s",
        "",
        f"Commit `{record['commit']}`, {machine['cpu']}, {machine['cores']} cores (shared, noisy: compare within"
        f" this table). Regenerate: `python -m experiments.bench_policy{' --policy flexible' * (args.policy == 'flexible')}`."
        f" The shipped {args.policy} policy; latency is one"
        " forward pass at batch 1 over the states of its greedy rollout; a plan is the whole greedy rollout"
        " (env steps included), best of 3.",
        "",
        "| instance | backend | p50 ms / decision | p99 ms | max ms | full greedy plan (s) | ms / decision in the plan | gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["cases"]:
        for label in ("torch", "onnx"):
            lat, plan = row[label], row[f"{label}_plan"]
            lines.append(
                f"| {row['instance']} ({row['size']}) | {label} | {lat['p50_ms']:.3f} | {lat['p99_ms']:.3f} |"
                f" {lat['max_ms']:.3f} | {plan['seconds']:.3f} | {plan['per_decision_ms']:.3f} | {100 * plan['gap']:.1f} % |"
            )
    for row in record["cases"]:
        for key, value in row.items():
            if key.startswith("onnx_best_of_"):
                lines += ["", f"Best of {key.rsplit('_', 1)[1]} samples on {row['instance']} (ONNX, greedy included):"
                          f" {value['seconds']:.2f} s, makespan {value['makespan']} ({100 * value['gap']:.1f} %)."]  # fmt: skip
    if "training_steps_per_s" in record:
        lines += ["", f"MaskablePPO with JobShopPolicy on random 15x15 instances, {args.n_envs} shops, steps/s over"
                  f" {args.training_steps:,} steps (rollouts and updates):", "", "| env | steps/s | ratio |", "|---|---:|---:|"]  # fmt: skip
        values = record["training_steps_per_s"]
        base = values["SB3 DummyVecEnv of JobShopEnv"]
        for label, value in values.items():
            lines.append(f"| {label} | {value:,.0f} | {value / base:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
