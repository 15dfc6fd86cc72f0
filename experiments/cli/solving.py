"""``sched-env solve``, ``gantt`` and ``demo``: one instance planned by any decider, a schedule drawn,
and the main job on built-in defaults."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.cli.common import (
    CHART_FORMATS,
    DIR_HELP,
    UserError,
    existing_dir,
    load_instance,
    output_dir,
    output_file,
    positive_int,
    positive_seconds,
)

METHOD_HELP = (
    "a method spec: a dispatching rule (mwkr, atc, ...), RULE@ACTION_SET (e.g. mwkr@giffler_thompson), random:N"
    " (best of N), on a flexible shop RULE+MACHINE_RULE (mwkr+eet, spt+spt; machine rules eet, spt, ll, est),"
    " cpsat:SECONDS[:hint], tabu:SECONDS, policy[:K], hybrid:SECONDS, or any other registered decider"
    " (all of them: --list-methods); default cpsat with --time-limit"
)


def add_commands(sub) -> None:
    p = sub.add_parser("solve", help="solve one instance with any registered decider (rule, CP-SAT, ...)",
                       description="Solve one instance; Ctrl-C stops a search and keeps its best plan so far.")  # fmt: skip
    p.add_argument("instance", nargs="?", help="catalogue name (ta01) or instance file")
    p.add_argument("--method", default="cpsat", help=METHOD_HELP)
    p.add_argument("--list-methods", action="store_true", help="list every registered decider and exit")
    p.add_argument("--budget", type=positive_seconds, help="time budget in seconds (caps searches; reported for rules)")
    p.add_argument(
        "--time-limit", type=positive_seconds, default=10.0, help="CP-SAT time limit in seconds (default 10)"
    )
    p.add_argument("--workers", type=positive_int, default=2, help="search threads of CP-SAT and tabu (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--json", action="store_true", help="print instance, method, makespan, bounds, gap, status, time, schedule"
    )
    p.add_argument("--out", help="write the schedule JSON here")
    p.add_argument("--gantt", help=f"write a Gantt chart image here ({', '.join(CHART_FORMATS[:3])}, ...)")
    p.add_argument("--dir", type=existing_dir, help=DIR_HELP)
    p.set_defaults(func=run_solve)

    p = sub.add_parser("gantt", help="draw a schedule JSON as a Gantt chart")
    p.add_argument("schedule", help="schedule JSON file (as written by sched-env)")
    p.add_argument("--instance", help="instance name or file (default: the one named in the schedule)")
    p.add_argument("--out", help="image file to write (.png, .svg, .pdf, ...); without it, a text chart")
    p.add_argument(
        "--scenario", help="the dynamic scenario JSON the schedule ran on (e.g. the demo's dynamic_scenario.json)"
    )
    p.add_argument("--now", type=int, help="mark this time: work started before it solid, the rest as planned")
    p.add_argument("--text", action="store_true", help="also print the text chart")
    p.add_argument("--dir", type=existing_dir, help=DIR_HELP)
    p.set_defaults(func=run_gantt)

    p = sub.add_parser(
        "demo", help="the main job on defaults: ta01 by a rule, CP-SAT and the learned policy; a breakdown rescheduled"
    )  # fmt: skip
    p.add_argument("--instance", default="ta01", help="instance to schedule (default ta01)")
    p.add_argument("--time-limit", type=positive_seconds, default=3.0,
                   help="CP-SAT seconds, when OR-Tools is installed (default 3)")  # fmt: skip
    p.add_argument(
        "--method", default="hybrid:1", help="the rescheduling decider of the dynamic part (default hybrid:1)"
    )
    p.add_argument("--out", default="sched-env-demo", help="output folder (default ./sched-env-demo)")
    p.add_argument("--dir", type=existing_dir, help=DIR_HELP)
    p.set_defaults(func=run_demo)


def list_methods() -> int:
    from baselines import deciders

    rows = deciders.describe()
    width = max(len(name) for name, *_ in rows)
    for name, example, summary, origin in rows:
        print(f"{name.ljust(width)}  e.g. {example:<16} {summary}" + ("" if origin == "sched-env" else f" [{origin}]"))
    from sched_env._names import MACHINE_RULES

    print("\nmachine rules, on flexible shops (RULE+MACHINE_RULE, e.g. mwkr+eet; a plain rule means +eet):")
    for name, summary in MACHINE_RULES.items():
        print(f"{name.ljust(width)}  {summary}")
    return 0


def run_solve(args: argparse.Namespace) -> int:
    from baselines import deciders

    if args.list_methods:
        return list_methods()
    if not args.instance:
        raise UserError("name an instance (e.g. `sched-env solve ta01`) or pass --list-methods")
    out, gantt = output_file("--out", args.out), output_file("--gantt", args.gantt, CHART_FORMATS)
    instance = load_instance(args.instance, args.dir)
    method = args.method if args.method != "cpsat" else f"cpsat:{args.time_limit:g}"
    try:
        decider = deciders.make(method, workers=args.workers)
    except ValueError as error:
        raise UserError(str(error)) from None
    from sched_env.warmup import warm_up

    warm_up("static", say=lambda line: print(line, file=sys.stderr, flush=True))  # the first run says why it waits
    try:
        result = deciders.solve(instance, decider, budget_s=args.budget, seed=args.seed)
    except deciders.SolveInterrupted as stop:  # Ctrl-C: the best plan so far is shown and written
        print(f"{instance.name}: {method} interrupted by Ctrl-C; its best plan so far:", file=sys.stderr)
        report(stop.result, instance, method, args, out, gantt)
        return 130
    return report(result, instance, method, args, out, gantt)


def report(result, instance, method: str, args: argparse.Namespace, out: Path | None, gantt: Path | None) -> int:
    """Print a solve's result (a line or JSON) and write its schedule and chart."""
    import instances

    best = instances.best_known(instance.name)
    gap = result.gap_to(best)
    if out is not None and result.schedule is not None:
        result.schedule.save(out)
    if gantt is not None and result.schedule is not None:
        from sched_env.render import save_gantt

        save_gantt(result.schedule, gantt, instance, title=f"{instance.name}: {method}, makespan {result.objective}")
    if args.json:
        data = result.to_dict()
        data.update({"best_known": best, "gap": gap, "size": f"{instance.n_jobs}x{instance.n_machines}"})
        data["makespan"] = data.pop("objective")
        print(json.dumps(data))
        return 0
    if result.schedule is None:
        print(f"{instance.name}: {method} found no schedule ({result.status}) in {result.wall_time_s:.2f} s")
        return 1
    line = f"{instance.name}: {method} makespan {result.objective} ({result.status}, {result.wall_time_s:.3f} s)"
    if result.over_budget:
        line += f", over its {result.budget_s:g} s budget"
    if result.lower_bound is not None:
        line += f", proven lower bound {result.lower_bound}"
    if gap is not None:
        line += f", {100 * gap:.2f} % above the best known {best}"
    print(line)
    for path in (out, gantt):
        if path is not None:
            print(f"wrote {path}")
    return 0


def run_gantt(args: argparse.Namespace) -> int:
    from sched_env.render import gantt_text, save_gantt
    from sched_env.schedule import Schedule, validate_schedule

    out = output_file("--out", args.out, CHART_FORMATS)
    schedule = Schedule.load(args.schedule)
    marks = {}
    if args.scenario:  # a dynamic shop's schedule: real durations, downtimes drawn
        from sched_env.events import Scenario

        scenario = Scenario.load(args.scenario)
        instance = scenario.jobs
        validate_schedule(instance, schedule, durations=scenario.realized_durations, downtimes=scenario.downtimes,
                          interruption=scenario.interruption)  # fmt: skip
        marks["downtimes"] = scenario.downtimes
    else:
        name = args.instance or schedule.instance_name
        if not name:
            raise UserError(f"{args.schedule} names no instance; pass --instance NAME_OR_FILE (or --scenario FILE)")
        instance = load_instance(name, args.dir)
        validate_schedule(instance, schedule)
    if args.now is not None:
        marks["now"] = args.now
    if out is not None:
        save_gantt(schedule, out, instance, **marks)
        print(f"wrote {out} ({instance.name}, makespan {schedule.makespan})")
    if args.text or out is None:
        print(gantt_text(schedule, instance, color=sys.stdout.isatty()))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The main job on defaults: ta01 by a rule, CP-SAT and the shipped policy (ONNX); a dynamic shop
    with a breakdown and arrivals rescheduled by the hybrid; tables, latency, Gantt charts, a report."""
    out = output_dir("--out", args.out)
    from experiments.demo import run_demo as demo

    return demo(out, args.instance, args.time_limit, args.method, args.dir)
