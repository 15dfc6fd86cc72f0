"""``sched-env bench`` (a static matrix, the dynamic scenarios, or the standard long-run simulation)
and ``sched-env latency`` (response time per shop-floor event). Ctrl-C stops them and writes what
is complete."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from experiments.cli.common import DIR_HELP, UserError, existing_dir, expand_names, output_dir, positive_int


def add_commands(sub) -> None:
    from experiments import bench_dynamic, latency

    p = sub.add_parser("bench", help="benchmark matrix: instances x methods x seeds -> CSV, Markdown, PNG",
                       description="Ctrl-C stops a benchmark and writes the runs completed.")  # fmt: skip
    p.add_argument(
        "--instances", default="ta01-ta10", help="names and ranges, e.g. ta01-ta10,ta41-ta50 (default ta01-ta10)"
    )
    p.add_argument("--methods", help="comma-separated method specs (see `solve --method`; default mwkr,mopnr,cpsat:10,"
                   " with --dynamic standard the rule portfolio and policy)")  # fmt: skip
    p.add_argument("--seeds", type=positive_int,
                   help="seeds 0..N-1 per cell (default 1; with --dynamic standard 50 test seeds)")  # fmt: skip
    p.add_argument("--parallel", type=positive_int, default=1, help="local worker processes (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster at ADDRESS ('local' starts one here)")
    p.add_argument("--workers", type=positive_int, default=2, help="CP-SAT search workers per run (default 2)")
    p.add_argument("--out", default="bench-results", help="output folder (default ./bench-results)")
    p.add_argument("--title", help="report title")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dir", type=existing_dir, help=DIR_HELP)
    p.add_argument(
        "--dynamic", nargs="?", const="scenarios", choices=("scenarios", "standard"),
        help="a dynamic-shop benchmark instead: 'scenarios' (the default: 16 seeded scenarios, rules, the learned"
        " policy, replanners) or 'standard' (the literature's long-run simulation: --settings, --seeds, --methods)",
    )  # fmt: skip
    p.add_argument("--settings", help="with --dynamic standard: setting names (default the eight standard ones;"
                   " grammar ROUTING-UTIL-F[-blBL-rtfRTF][-mN], e.g. missing-0.80-3; shop:SPEC.json is your own shop, from"
                   " `sched-env fit-shop`)")  # fmt: skip
    p.add_argument("--validation-seeds", type=positive_int, default=10,
                   help="with --dynamic standard: validation seeds that pick each setting's best rule (default 10)")  # fmt: skip
    bench_dynamic.add_arguments(p, study_options=False)  # --instant, --replanners, --name, --policy
    p.set_defaults(func=run_bench, name=None)

    p = sub.add_parser("latency", help="response time per shop-floor event for each decider, and plan quality",
                       description=latency.__doc__.splitlines()[0], epilog=latency.EPILOG)  # fmt: skip
    latency.add_arguments(p)
    p.set_defaults(func=run_latency)


def _command() -> str:
    """The command line as the user typed it (for the results' provenance)."""
    return "sched-env " + shlex.join(sys.argv[1:]) if len(sys.argv) > 1 else "sched-env"


def run_bench(args: argparse.Namespace) -> int:
    import instances

    output_dir("--out", args.out)
    try:
        if args.dynamic == "standard":
            from experiments import bench_standard

            args.name = args.name or "standard"
            return bench_standard.main(args)
        if args.dynamic:
            from experiments import bench_dynamic

            args.quick, args.cpsat10, args.seed = False, "ta01", 0
            return bench_dynamic.run(args, _command())
        return _static_bench(args)
    except (ValueError, instances.SchedEnvError) as error:
        raise UserError(str(error)) from None


def _static_bench(args: argparse.Namespace) -> int:
    from experiments.benchmark import run_matrix, write_outputs
    from sched_env.parallel import MapInterrupted

    if args.policy != "dynamic" or args.instant or args.replanners:
        raise UserError("--policy, --instant and --replanners belong to --dynamic; name policy@FILE in --methods")
    names = expand_names(args.instances)
    methods = [m for m in (args.methods or "mwkr,mopnr,cpsat:10").split(",") if m]
    interrupted = False
    started = time.perf_counter()
    try:
        rows = run_matrix(
            names, methods, seeds=range(args.seeds or 1), parallel=args.parallel, ray_address=args.ray,
            instance_dir=args.dir, workers=args.workers, show_progress=not args.quiet,
        )  # fmt: skip
    except MapInterrupted as stop:
        rows, interrupted = stop.results, True
        print(f"\ninterrupted: writing the {len(rows)} runs completed", flush=True)
    name = args.name or "benchmark"
    title = (args.title or f"Benchmark: {args.instances}") + (" (interrupted)" if interrupted else "")
    wall_s = time.perf_counter() - started
    paths = write_outputs(rows, Path(args.out), name, title, _command(), wall_s) if rows else []
    if rows:
        print((Path(args.out) / f"{name}.md").read_text())
    print("wrote " + (", ".join(str(p) for p in paths) or "nothing (no run completed)"))
    return 130 if interrupted else 0


def run_latency(args: argparse.Namespace) -> int:
    from experiments.latency import run_from_args

    output_dir("--out", args.out)
    return run_from_args(args, _command())
