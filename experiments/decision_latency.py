"""Per-decision latency of the shipped dynamic policy: ONNX Runtime, batch 1, the 10-machine
standard shop in steady state.

Each decision is timed from the observation in hand to the chosen job: one ``session.run`` on
``(1, slots, features)`` and the masked argmax (the policy's whole work); the simulator's step
that computes the next observation is timed apart. Decisions of the first 1 000 jobs (warm-up)
are not counted.

    python -m experiments.decision_latency          # writes experiments/results/decision_latency.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agents.loading import load_policy
from experiments.provenance import git_commit, machine_description
from sched_env.dynamic import DynamicJobShopEnv
from sched_env.standard import DEFAULT_WINDOW, StandardSetting

RESULTS = Path(__file__).resolve().parent / "results"


def measure(setting_name: str, seed: int, model: str) -> dict:
    policy = load_policy(model, kind="dynamic")
    setting = StandardSetting.parse(setting_name)
    scenario = setting.scenario(seed, "test")
    env = DynamicJobShopEnv(scenario, max_jobs=DEFAULT_WINDOW)
    obs, _ = env.reset()
    warm_until = int(scenario.jobs.release_dates[setting.warmup])
    decide, step, allowed = [], [], []
    done = False
    while not done:
        t0 = time.perf_counter()
        logits = policy.score(obs["jobs"][None], obs["action_mask"][None].astype(np.float32))[0]
        action = int(np.argmax(logits))
        t1 = time.perf_counter()
        obs, _, done, _, info = env.step(action)
        t2 = time.perf_counter()
        if info["time"] >= warm_until:
            decide.append(t1 - t0)
            step.append(t2 - t1)
            allowed.append(int(obs["action_mask"].sum()))
    ms = 1e3 * np.array(decide)
    step_ms = 1e3 * np.array(step)
    return {
        "setting": setting.name, "seed": seed, "model": str(policy.path.name), "backend": policy.backend,
        "decisions": len(ms), "slots": DEFAULT_WINDOW, "mean_allowed": float(np.mean(allowed)),
        "decision_ms": {q: float(np.percentile(ms, p)) for q, p in (("p50", 50), ("p99", 99), ("max", 100))},
        "env_step_ms": {q: float(np.percentile(step_ms, p)) for q, p in (("p50", 50), ("p99", 99), ("max", 100))},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="missing-0.95-4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="dynamic", help="policy file or 'dynamic' (the shipped one)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    result = measure(args.setting, args.seed, args.model)
    d, e = result["decision_ms"], result["env_step_ms"]
    text = "\n".join([
        "# Per-decision latency of the dynamic policy", "",
        f"Command: `python -m experiments.decision_latency {' '.join(argv or [])}`  ",
        f"Commit: {git_commit()}, machine: {machine_description()['cpu']}, one thread.", "",
        f"Setting {result['setting']} (test seed {result['seed']}), model {result['model']} via {result['backend']},"
        f" batch 1, {result['slots']} slots, {result['decisions']} decisions after the warm-up"
        f" ({result['mean_allowed']:.1f} jobs allowed on average).", "",
        "| | p50 | p99 | max |", "|---|---|---|---|",
        f"| decision (ONNX scoring + argmax) | {d['p50']:.3f} ms | {d['p99']:.3f} ms | {d['max']:.3f} ms |",
        f"| simulator step (next observation) | {e['p50']:.3f} ms | {e['p99']:.3f} ms | {e['max']:.3f} ms |", "",
    ])  # fmt: skip
    out = Path(args.out)
    (out / "decision_latency.md").write_text(text)
    (out / "decision_latency.json").write_text(json.dumps(result, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
