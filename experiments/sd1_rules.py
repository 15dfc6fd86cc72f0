"""The flexible simulator checked against a peer's: the four rules of the learned-FJSP papers on
the 600 ``sd1`` test instances, as published, as re-run on our simulator, and as ours.

Three columns per rule and size (mean % above OR-Tools' 1 800 s makespans):

* **published**: the papers' rule results (``instances.published``, from the DANIEL authors' files);
* **their decisions, our simulator**: the published rules' decision logic (``heuristic_select_action``
  of ``wrqccc/FJSP-DRL``, ported below: jobs ready by the earliest pair start, ties and the
  machine drawn at random, work remaining as the mean over eligible machines) driving our
  simulator with pair actions, semi-active placement (their env appends), mean of ``--seeds`` draws.
  Within about a point of *published*: the simulators agree;
* **ours**: ``mwkr+eet`` etc. as sched-env runs them by default (non-delay pairs, active placement,
  the machine with the earliest end and ties to the shorter duration, work at the shortest times).

Run: ``python -m experiments.sd1_rules`` (about 10 minutes on 2 cores); results go to
``experiments/results/sd1_rules.{json,md}`` with the command, commit and machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import instances
from experiments.provenance import git_commit, machine_description, write_report

RESULTS = Path(__file__).resolve().parent / "results"
#: Published column -> our rule.
RULES = {"FIFO": "fifo+eet", "MOR": "mopnr+eet", "MWKR": "mwkr+eet", "SPT": "spt+spt"}


def their_decision(rule: str, instance, env, rng: np.random.Generator) -> int:
    """FJSP-DRL's ``heuristic_select_action`` on our env's state: the pair action it takes."""
    table = instance.processing_table()
    nxt, ready, free = env.next_operations(), env.ready_times(), env.machine_free_times()
    jobs = [j for j in range(instance.n_jobs) if nxt[j] < instance.n_ops[j]]
    start = {(j, m): max(ready[j], free[m]) for j in jobs for m in np.flatnonzero(table[j, nxt[j]] >= 0)}
    now = min(start.values())
    if rule == "SPT":  # the shortest pair among those that start now
        pairs = [(table[j, nxt[j], m], j, m) for (j, m), t in start.items() if t <= now]
        shortest = min(p[0] for p in pairs)
        _, job, machine = pairs[rng.choice([i for i, p in enumerate(pairs) if p[0] == shortest])]
        return job * env.layout.M + machine
    candidates = [j for j in jobs if ready[j] <= now]
    if rule == "MWKR":
        key = {
            j: -sum(table[j, k][table[j, k] >= 0].mean() for k in range(nxt[j], instance.n_ops[j])) for j in candidates
        }
    elif rule == "MOR":
        key = {j: -(instance.n_ops[j] - nxt[j]) for j in candidates}
    else:
        key = {j: ready[j] for j in candidates}
    best = min(key.values())
    job = rng.choice([j for j in candidates if key[j] == best])
    machines = np.flatnonzero(table[job, nxt[job]] >= 0)
    if rule != "FIFO" and (free[machines] <= ready[job]).any():  # a machine free by the time the job is
        machines = machines[free[machines] <= ready[job]]
    else:  # the earliest free one(s)
        machines = machines[free[machines] == free[machines].min()]
    return int(job * env.layout.M + rng.choice(machines))


def their_makespan(rule: str, instance, seed: int) -> int:
    """One run of the published rule's decisions through our simulator."""
    from sched_env import JobShopEnv

    env = JobShopEnv(instance, placement="append", action_set="any", pair_actions=True, strict=True)
    env.reset()
    rng = np.random.default_rng(seed)
    done = False
    while not done:
        _, _, done, _, info = env.step(their_decision(rule, instance, env, rng))
    return int(info["makespan"])


def study(sizes: list[str], seeds: int, limit: int | None) -> list[dict]:
    from baselines.rules import dispatch_many

    rows = []
    for size in sizes:
        names = [n for n in instances.names("sd1") if n.startswith(f"sd1_{size}_")][:limit]
        shops = [instances.load(n) for n in names]
        reference = np.array([instances.published(n)["ortools_1800s"] for n in names])
        for published_rule, ours in RULES.items():
            published = np.array([instances.published(n)[published_rule] for n in names])
            emulated = np.array([[their_makespan(published_rule, s, seed) for seed in range(seeds)] for s in shops])
            own = np.array([r.objective for r in dispatch_many(shops, ours)])
            row = {
                "size": size, "rule": published_rule, "ours": ours, "instances": len(names),
                "published": 100 * float(np.mean(published / reference - 1)),
                "their_decisions_our_simulator": 100 * float(np.mean(emulated.mean(axis=1) / reference - 1)),
                "ours_gap": 100 * float(np.mean(own / reference - 1)),
            }  # fmt: skip
            row["simulator_difference"] = row["their_decisions_our_simulator"] - row["published"]
            rows.append(row)
            print(f"{size} {published_rule}: published {row['published']:.1f}, their decisions on our simulator"
                  f" {row['their_decisions_our_simulator']:.1f}, ours ({ours}) {row['ours_gap']:.1f}", flush=True)  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    lines = [
        "# The flexible simulator against the learned-FJSP papers' rules (sd1)",
        "",
        f"Commit `{report['commit']}`, {report['date']}, {report['machine']['cpu']}, {report['machine']['cores']} cores."
        f" Command: `{report['command']}` ({report['wall_s']:.0f} s).",
        "",
        "Mean % above OR-Tools' 1 800 s makespans per size (100 instances each). *Their decisions*: the"
        " papers' rule logic (jobs ready by the earliest start, random ties and machine, mean work) driving"
        f" our simulator, mean of {report['seeds']} seeds; *ours*: sched-env's rule with its defaults.",
        "",
        "| size | rule | published | their decisions, our simulator | difference | ours | ours - published |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['size']} | {r['rule']} ({r['ours']}) | {r['published']:.1f} | {r['their_decisions_our_simulator']:.1f}"
            f" | {r['simulator_difference']:+.1f} | {r['ours_gap']:.1f} | {r['ours_gap'] - r['published']:+.1f} |"
        )
    worst = max(abs(r["simulator_difference"]) for r in report["rows"])
    lines += ["", f"Largest simulator difference: {worst:.1f} points.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(instances.catalogue.SD1_SIZES))
    parser.add_argument("--seeds", type=int, default=3, help="random-tie draws of the published logic per instance")
    parser.add_argument("--limit", type=int, help="only the first N instances of each size (a quick look)")
    parser.add_argument("--out", default=str(RESULTS / "sd1_rules"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = study(args.sizes.split(","), args.seeds, args.limit)
    report = {
        "command": "python -m experiments.sd1_rules " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_description(),
        "seeds": args.seeds, "wall_s": time.perf_counter() - started, "rows": rows,
    }  # fmt: skip
    write_report(args.out, report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
