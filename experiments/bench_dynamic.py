"""Dynamic-shop benchmark: rules vs right-shift repair vs CP-SAT rescheduling on seeded scenarios.

Scenarios: jobs drawn from Taillard pools (15x15 ta01, 20x20 ta21, 30x20 ta41, 50x20 ta61:
each pool's routes and durations), 5 jobs at the start and 15 arriving at 80 % or 90 %
utilisation, with or without breakdowns (MTBF 2000, MTTR 100 per machine), 10 % duration
noise, resume interruption. Every method runs each scenario to its end in the same
simulator; reported: total weighted tardiness, makespan, mean flow time, and for the
replanning methods the number of plans and the planning time per plan.

Replanning methods carry their plans out three ways, side by side: ``exact`` (each machine
runs its planned operations in order, none before its planned start: the env's wait action),
``sequence`` (the planned order, each operation as early as that order allows) and
``priority`` (the plan as a priority list in the non-delay env, as before the wait action).

    python -m experiments.bench_dynamic                     # the recorded table (about 50 min)
    python -m experiments.bench_dynamic --quick             # 2 scenarios, no cpsat:10
    python -m experiments.bench_dynamic --flexible --replanners right-shift,cpsat:1,tabu:1,hybrid:1

``--flexible``: the 16 scenarios on a flexible shop: each operation may also run on another
machine (1-2 eligible, its routed machine among them), machines work at speeds within +-20 %
(``generate_scenario(alternatives=(1, 2), speed_spread=0.2)``), arrivals at 90 % and 100 % of the
routed machines' capacity (the alternatives add capacity); each rule runs with each machine rule,
the replanners plan which machine runs each operation and carry that out (pair actions), and a
breakdown moves waiting work to the other machines that can take it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments.provenance import git_commit, machine_description
from instances import SchedEnvError

RESULTS = Path(__file__).resolve().parent / "results"
POOLS = ("ta01", "ta21", "ta41", "ta61")
RULES = ("atc", "edd", "spt", "mwkr", "fifo")
#: Machine rules crossed with RULES on a flexible shop.
FLEXIBLE_MACHINE_RULES = ("eet", "spt", "ll", "est")
#: The flexible shop of ``--flexible``: eligible machines per operation, machine speed spread, and
#: the utilisations of the routed machines (the alternatives add capacity: at 0.8 most jobs are on time).
FLEXIBLE_ALTERNATIVES, FLEXIBLE_SPEED_SPREAD, FLEXIBLE_UTILISATIONS = (1, 2), 0.2, (0.9, 1.0)
COLUMNS = ("scenario", "pool", "size", "utilisation", "breakdowns", "method", "total_weighted_tardiness",
           "makespan", "mean_flow_time", "plans", "mean_plan_s", "max_plan_s", "wall_time_s")  # fmt: skip
#: Replanning methods: (label, plan spec, first-plan spec, execution).
REPLANNERS = (
    ("right-shift priority", "right-shift", "cpsat:1", "priority"),
    ("right-shift", "right-shift", "cpsat:1", "exact"),
    ("cpsat:1 priority", "cpsat:1", None, "priority"),
    ("cpsat:1 sequence", "cpsat:1", None, "sequence"),
    ("cpsat:1", "cpsat:1", None, "exact"),
)
#: The tabu search as a replanner, run with --replanners.
SEARCH_REPLANNERS = (
    ("tabu:1 sequence", "tabu:1", None, "sequence"),
    ("tabu:1", "tabu:1", None, "exact"),
)


#: Replanners on the learned policy (sched-env's agents), run with --replanners.
LEARNED_REPLANNERS = (
    ("policy:16 sequence", "policy:16", None, "sequence"),
    ("hybrid:1 sequence", "hybrid:1", None, "sequence"),
    ("hybrid:1", "hybrid:1", None, "exact"),
)


def scenarios(pools, utilisations, breakdowns, seed: int = 0, flexible: bool = False):
    import instances
    from sched_env.events import generate_scenario

    shop = {"alternatives": FLEXIBLE_ALTERNATIVES, "speed_spread": FLEXIBLE_SPEED_SPREAD} if flexible else {}
    for pool_name in pools:
        pool = instances.load(pool_name)
        for utilisation in utilisations:
            for broken in breakdowns:
                name = f"{pool_name}-u{int(utilisation * 100)}-{'bd' if broken else 'nobd'}{'-fx' if flexible else ''}"
                yield name, pool_name, pool, utilisation, broken, generate_scenario(
                    initial_jobs=5, arriving_jobs=15, utilisation=utilisation, pool=pool,
                    mtbf=2000.0 if broken else None, mttr=100.0 if broken else None, noise=0.1, tightness=1.5,
                    seed=seed, name=name, **shop,
                )  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, *, study_options: bool = True) -> None:
    """This benchmark's options (``sched-env bench --dynamic`` shares the ones a user sets:
    ``study_options=False`` leaves out the study's own --quick, --cpsat10, --seed and --out)."""
    if study_options:
        parser.add_argument("--quick", action="store_true", help="two 15x15 scenarios, no cpsat:10 (a smoke run)")
        parser.add_argument("--cpsat10", default="ta01", help="pools on which to also run CP-SAT at 10 s per plan")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--instant",
        action="store_true",
        help="instant deciders only: the rules and the learned policy (no replanners; minutes, not an hour)",
    )
    parser.add_argument(
        "--replanners",
        help="only these replanners (labels, comma-separated), e.g. 'cpsat:1,hybrid:1';"
        " known: " + ", ".join(label for label, *_ in REPLANNERS + SEARCH_REPLANNERS + LEARNED_REPLANNERS),
    )
    parser.add_argument("--name", help="file stem of the outputs (default dynamic, dynamic_instant, dynamic_quick;"
                                       " dynamic_flexible with --flexible)")  # fmt: skip
    parser.add_argument("--flexible", action="store_true",
                        help="the scenarios on a flexible shop (alternative machines, speeds +-20 %%); rules with"
                             " each machine rule")  # fmt: skip
    parser.add_argument(
        "--policy",
        default="dynamic",
        help="the learned policy: a model file, 'dynamic' (the shipped one, default) or 'none'",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, " ".join(["python -m experiments.bench_dynamic", *(argv or [])]))
    except SchedEnvError as error:
        parser.error(str(error))


def run(args: argparse.Namespace, command: str) -> int:
    """Run the benchmark the options describe; Ctrl-C stops it and writes the scenarios completed
    (exit status 130)."""
    from experiments.benchmark import write_csv

    pools = ("ta01",) if args.quick else POOLS
    flexible = getattr(args, "flexible", False)
    utilisations = (0.9,) if args.quick else FLEXIBLE_UTILISATIONS if flexible else (0.8, 0.9)
    chosen = chosen_replanners(args.replanners)
    cases = list(scenarios(pools, utilisations, (False, True), args.seed, flexible))
    learned = policy_results([case[-1] for case in cases], args.policy)  # flexible: the dynamic pair policy
    rows: list[dict] = []
    interrupted = False
    try:
        for case in cases:
            name, pool_name = case[0], case[1]
            methods = chosen if chosen is not None else [] if args.instant else list(REPLANNERS)
            if chosen is None and not args.quick and not args.instant and pool_name in args.cpsat10.split(","):
                methods += [(f"cpsat:10{suffix}", "cpsat:10", None, execution) for suffix, execution in
                            ((" priority", "priority"), (" sequence", "sequence"), ("", "exact"))]  # fmt: skip
            rows += scenario_rows(case, learned.get(name, []), methods, args.seed, flexible)
            print(f"{name}: " + ", ".join(f"{r['method']} {r['total_weighted_tardiness']}" for r in rows
                                          if r["scenario"] == name), flush=True)  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted: writing the {len({r['scenario'] for r in rows})} scenarios completed", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("dynamic_quick" if args.quick else "dynamic") + ("_flexible" if flexible else "") + (
        "_instant" if args.instant else "")  # fmt: skip
    write_csv(rows, out / f"{stem}.csv", columns=COLUMNS)
    (out / f"{stem}.md").write_text(markdown(rows, command + (" (interrupted)" if interrupted else ""),
                                             flexible=flexible))  # fmt: skip
    (out / f"{stem}.json").write_text(json.dumps({"commit": git_commit(), "machine": machine_description(),
                                                  "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                                  "interrupted": interrupted}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {out / f'{stem}.md'}")
    return 130 if interrupted else 0


def chosen_replanners(labels: str | None) -> list | None:
    """The replanners ``--replanners`` names (None: the default set), refused naming the unknown ones."""
    if not labels:
        return None
    known = {entry[0]: entry for entry in REPLANNERS + SEARCH_REPLANNERS + LEARNED_REPLANNERS}
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    unknown = [label for label in wanted if label not in known]
    if unknown:
        raise SchedEnvError(f"--replanners: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[label] for label in wanted]


def scenario_rows(case, learned: list, methods: list, seed: int, flexible: bool = False) -> list[dict]:
    """One scenario's rows: every rule (on a flexible shop with each machine rule) and the learned
    policy deciding at every epoch, then each replanner."""
    from baselines import deciders
    from baselines.replan import Replanner
    from sched_env.dynamic import DynamicJobShopEnv

    name, pool_name, pool, utilisation, broken, scenario = case
    base = {"scenario": name, "pool": pool_name, "size": f"{pool.n_jobs}x{pool.n_machines}",
            "utilisation": utilisation, "breakdowns": broken}  # fmt: skip
    rows = []
    rules = [f"{r}+{m}" for r in RULES for m in FLEXIBLE_MACHINE_RULES] if flexible else RULES
    instant = [run for rule in rules for run in deciders.dispatch_online(deciders.make(rule), [scenario])]
    for result in instant + learned:
        p = result.params
        rows.append({**base, "method": result.method, "total_weighted_tardiness": p["total_weighted_tardiness"],
                     "makespan": p["makespan"], "mean_flow_time": round(p["mean_flow_time"], 1), "plans": 0,
                     "mean_plan_s": 0.0, "max_plan_s": 0.0, "wall_time_s": round(result.wall_time_s, 4)})  # fmt: skip
    for label, method, initial, execution in methods:
        replanner = Replanner(method, initial=initial, seed=seed, execution=execution)
        result = replanner.run(DynamicJobShopEnv(scenario, allow_wait=execution != "priority"))
        p = result.params
        rows.append({**base, "method": label, "total_weighted_tardiness": p["total_weighted_tardiness"],
                     "makespan": p["makespan"], "mean_flow_time": round(p["mean_flow_time"], 1), "plans": p["plans"],
                     "mean_plan_s": round(p["mean_plan_s"], 3), "max_plan_s": round(p["max_plan_s"], 3),
                     "wall_time_s": round(result.wall_time_s, 2)})  # fmt: skip
    return rows


def policy_results(scenario_list: list, spec: str) -> dict[str, list]:
    """The learned policy deciding at every epoch of every scenario (all stepped together, through
    the decider door), by scenario name; none when ``spec`` is 'none' or the policy extras are missing."""
    from agents.loading import PolicyLoadError
    from baselines import deciders

    if spec == "none":
        return {}
    try:
        decider = deciders.make("policy" if spec == "dynamic" else f"policy@{spec}")
    except deciders.DeciderError as error:
        if spec != "dynamic":  # a file the user named is used or refused, never skipped
            raise SchedEnvError(f"--policy {spec}: {error}") from None
        print(f"(no learned policy: {error})")
        return {}
    try:
        results = deciders.dispatch_online(decider, scenario_list)
    except PolicyLoadError as error:  # no shipped policy for these scenarios (running flexible shops)
        if spec != "dynamic":
            raise
        print(f"(no learned policy: {error})")
        return {}
    return {scenario.name: [result] for scenario, result in zip(scenario_list, results)}


def markdown(rows: list[dict], command: str, commit: str | None = None, flexible: bool = False) -> str:
    """The Markdown table (rows as written to the CSV: numbers may be strings)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    shop = (f"Flexible shop: each operation runs on {FLEXIBLE_ALTERNATIVES[0]}-{FLEXIBLE_ALTERNATIVES[1]} eligible"
            f" machines (its routed one among them), machine speeds within +-{FLEXIBLE_SPEED_SPREAD:.0%}, utilisation"
            f" {' and '.join(f'{u:.0%}' for u in FLEXIBLE_UTILISATIONS)} of the routed machines (u in the scenario"
            " names); rules as RULE+MACHINE_RULE. ") if flexible else ""  # fmt: skip
    lines = [
        "# Dynamic " + ("flexible " if flexible else "") + "shop: total weighted tardiness (makespan) per scenario"
        " and method",
        "",
        shop,
        f"Commit `{commit or git_commit()}`. Regenerate: `{command.strip()}`. 20 jobs (5 at the start, 15 arriving), 10 %"
        " duration noise, resume interruption; breakdowns: MTBF 2000, MTTR 100 per machine. Replanning methods"
        " replan at every arrival, breakdown and repair and carry plans out exactly (machines wait for planned"
        " starts); `sequence` keeps each machine's planned order but starts operations as early as it allows;"
        " `priority` follows the plans as priority lists in the non-delay env; right-shift plans once with"
        " cpsat:1, then only repairs. CP-SAT with 2 workers under a wall-clock limit is not deterministic: the"
        " same configuration varies by hundreds between runs. The last columns give plans and s/plan of cpsat:1.",
        "",
        "| scenario | " + " | ".join(methods) + " | plans | s/plan (cpsat:1) |",
        "|---|" + "---:|" * (len(methods) + 2),
    ]
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        group = {r["method"]: r for r in rows if r["scenario"] == scenario}
        best = min(float(r["total_weighted_tardiness"]) for r in group.values())
        cells = []
        for m in methods:
            r = group.get(m)
            if r is None:
                cells.append("")
                continue
            mark = "**" if float(r["total_weighted_tardiness"]) == best else ""
            cells.append(f"{mark}{r['total_weighted_tardiness']}{mark} ({r['makespan']})")
        cp = group.get("cpsat:1", {})
        lines.append(
            f"| {scenario} | " + " | ".join(cells) + f" | {cp.get('plans', '')} | {cp.get('mean_plan_s', '')} |"
        )
    everywhere = [
        m
        for m in methods
        if all(any(r["method"] == m and r["scenario"] == sc for r in rows) for sc in {r["scenario"] for r in rows})
    ]
    lines.append("")
    for label, keep in (("all scenarios", lambda r: True), ("the 15x15 pool", lambda r: r["pool"] == "ta01")):
        chosen = [r for r in rows if keep(r)]
        shown = [m for m in methods if m in everywhere or label != "all scenarios"]
        means = {m: np.mean([float(r["total_weighted_tardiness"]) for r in chosen if r["method"] == m]) for m in shown}
        count = len({r["scenario"] for r in chosen})
        lines.append(f"Mean total weighted tardiness over {label} ({count}): " + ", ".join(
            f"{m} {v:,.0f}" for m, v in means.items() if not np.isnan(v)))  # fmt: skip
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
