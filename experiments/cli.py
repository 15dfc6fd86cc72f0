"""The ``sched-env`` command line: each subcommand imports its layer only when it runs.

User mistakes (unknown instance, malformed file, bad option) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path


class UserError(Exception):
    """A mistake in the command line; printed as one line."""


def expand_names(spec: str) -> list[str]:
    """'ta01-ta03,ft06' -> ['ta01', 'ta02', 'ta03', 'ft06'] (ranges within one family)."""
    import re

    names: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"([a-z]+)(\d+)-(?:\1)?(\d+)", part.lower())
        if match:
            family, first, last = match.group(1), match.group(2), match.group(3)
            if int(last) < int(first):
                raise UserError(f"empty range {part!r}: the second number must not be smaller")
            names += [f"{family}{i:0{len(first)}d}" for i in range(int(first), int(last) + 1)]
        else:
            names.append(part)
    if not names:
        raise UserError(f"no instance names in {spec!r}")
    return names


def _instance(name: str, directory: str | None):
    import instances

    return instances.load(name, directory=directory)


# ---------------------------------------------------------------------- instances
def cmd_instances_list(args: argparse.Namespace) -> int:
    import instances

    rows = []
    for name in instances.names(args.family, directory=args.dir):
        entry = instances.entry(name, directory=args.dir)
        b = entry.bounds
        rows.append(
            (
                name,
                entry.family,
                f"{entry.n_jobs}x{entry.n_machines}",
                "" if b is None else str(b.lower),
                "" if b is None else str(b.upper),
                "" if b is None or b.optimum is None else str(b.optimum),
                entry.source if entry.source in ("generated", "bundled", "missing") else "file",
            )
        )
    if args.json:
        keys = ("name", "family", "size", "lower_bound", "upper_bound", "optimum", "data")
        print(json.dumps([dict(zip(keys, row)) for row in rows], indent=1))
        return 0
    header = ("name", "family", "size", "lower", "upper", "optimum", "data")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    missing = sum(r[-1] == "missing" for r in rows)
    print(
        f"{len(rows)} instances"
        + (
            f"; {missing} known by name only (set SCHED_ENV_INSTANCES or --dir to a folder of JSPLIB files to load them)"
            if missing
            else ""
        )
    )
    return 0


def cmd_instances_show(args: argparse.Namespace) -> int:
    import instances

    instance = _instance(args.name, args.dir)
    try:
        bounds = instances.bounds(instance.name)
    except instances.UnknownInstanceError:
        bounds = None
    if args.json:
        data = instance.to_dict()
        data["simple_lower_bound"] = instance.simple_lower_bound()
        data["bounds"] = (
            None
            if bounds is None
            else {"lower_bound": bounds.lower, "upper_bound": bounds.upper, "optimum": bounds.optimum}
        )
        print(json.dumps(data))
        return 0
    print(
        f"{instance.name}: {instance.n_jobs} jobs x {instance.n_machines} machines, {instance.n_operations} operations"
    )
    if bounds is not None:
        optimum = bounds.optimum if bounds.optimum is not None else "open"
        print(f"bounds: lower {bounds.lower}, upper (best known) {bounds.upper}, optimum {optimum}")
    print(f"simple lower bound (longest job / busiest machine): {instance.simple_lower_bound()}")
    print(instances.format_jsplib(instance), end="")
    return 0


# ---------------------------------------------------------------------- gantt
def cmd_gantt(args: argparse.Namespace) -> int:
    from sched_env.render import gantt_text, save_gantt
    from sched_env.schedule import Schedule, validate_schedule

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
        instance = _instance(name, args.dir)
        validate_schedule(instance, schedule)
    if args.now is not None:
        marks["now"] = args.now
    if args.out:
        save_gantt(schedule, args.out, instance, **marks)
        print(f"wrote {args.out} ({instance.name}, makespan {schedule.makespan})")
    if args.text or not args.out:
        print(gantt_text(schedule, instance, color=sys.stdout.isatty()))
    return 0


# ---------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on defaults: ta01 scheduled by a rule, CP-SAT and the shipped policy (ONNX);
    a dynamic shop with a breakdown and arrivals rescheduled by the hybrid; a comparison table,
    the latency summary, Gantt charts before and after the breakdown, and a report."""
    from experiments.demo import run_demo

    return run_demo(Path(args.out), args.instance, args.time_limit, args.method, args.dir)


# ---------------------------------------------------------------------- solve / bench
def cmd_solve(args: argparse.Namespace) -> int:
    import instances
    from baselines import deciders

    if args.list_methods:
        rows = deciders.describe()
        width = max(len(name) for name, *_ in rows)
        for name, example, summary, origin in rows:
            print(
                f"{name.ljust(width)}  e.g. {example:<16} {summary}" + ("" if origin == "sched-env" else f" [{origin}]")
            )
        return 0
    if not args.instance:
        raise UserError("name an instance (e.g. `sched-env solve ta01`) or pass --list-methods")
    instance = _instance(args.instance, args.dir)
    if args.time_limit <= 0:
        raise UserError(f"--time-limit must be a positive number of seconds, got {args.time_limit:g}")
    if args.budget is not None and args.budget <= 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    method = args.method if args.method != "cpsat" else f"cpsat:{args.time_limit:g}"
    try:
        decider = deciders.make(method, workers=args.workers)
    except ValueError as error:
        raise UserError(str(error)) from None
    from sched_env.warmup import warm_up

    warm_up("static", say=lambda line: print(line, file=sys.stderr, flush=True))  # the first run says why it waits
    result = deciders.solve(instance, decider, budget_s=args.budget, seed=args.seed)
    best = instances.best_known(instance.name)
    gap = result.gap_to(best)
    if args.out and result.schedule is not None:
        result.schedule.save(args.out)
    if args.gantt and result.schedule is not None:
        from sched_env.render import save_gantt

        save_gantt(result.schedule, args.gantt, instance)
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
    for path in (args.out, args.gantt):
        if path:
            print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.dynamic == "standard":  # the standard long-run simulation: settings x test seeds x methods
        import instances
        from experiments import bench_standard

        if args.name == "benchmark":
            args.name = "standard"
        try:
            return bench_standard.main(args)
        except (ValueError, instances.SchedEnvError) as error:
            raise UserError(str(error)) from None
    if args.dynamic:  # the dynamic-shop benchmark: seeded scenarios, rules, policy and (unless --instant) replanners
        from experiments import bench_dynamic

        extra = (["--instant"] if args.instant else []) + (["--replanners", args.replanners] if args.replanners else [])
        extra += ["--name", args.name] if args.name != "benchmark" else []
        return bench_dynamic.main(extra + ["--policy", args.policy, "--out", args.out])
    from experiments.benchmark import run_matrix, write_outputs

    names = expand_names(args.instances)
    methods = [m for m in (args.methods or "mwkr,mopnr,cpsat:10").split(",") if m]
    try:
        rows = run_matrix(
            names, methods, seeds=range(args.seeds or 1), parallel=args.parallel, ray_address=args.ray,
            instance_dir=args.dir, workers=args.workers, show_progress=not args.quiet,
        )  # fmt: skip
    except ValueError as error:
        raise UserError(str(error)) from None
    import shlex

    command = "sched-env " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "sched-env bench ..."
    paths = write_outputs(rows, Path(args.out), args.name, args.title or f"Benchmark: {args.instances}", command)
    print((Path(args.out) / f"{args.name}.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


# ---------------------------------------------------------------------- train / export-onnx
def train_one(config: dict, seed: int | None, resume: str | None, progress: bool) -> dict:
    """One training run (a sweep's task: module level, so spawned workers can import it)."""
    from agents.config import TrainConfig
    from agents.train import train

    cfg = TrainConfig.from_dict(config)
    if seed is not None:
        cfg.seed = seed
        cfg.name = f"{cfg.run_name}-s{seed}" if cfg.name else ""
    return train(cfg, resume=resume, progress=progress)


def cmd_train(args: argparse.Namespace) -> int:
    from agents.config import TrainConfig

    try:
        import sb3_contrib  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        raise UserError(f"training needs the rl extra ({error.name} is missing): pip install 'sched-env[rl]'") from None
    config = _resume_config(args.resume) if args.resume and not args.config else None
    overrides = list(args.set) + ([f"algo={args.algo}"] if args.algo else [])
    cfg = TrainConfig.load(args.config, overrides) if config is None else TrainConfig.from_dict(config, overrides)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [None]
    if args.resume and len(seeds) > 1:
        raise UserError("--resume continues one run; drop --seeds")
    print(f"training {cfg.run_name}: {cfg.algo} on the {cfg.shop} shop, {cfg.timesteps:,} decisions -> {cfg.out}/")
    if len(seeds) == 1:
        summaries = [train_one(cfg.to_dict(), seeds[0], args.resume, not args.quiet)]
    else:
        from sched_env.parallel import map_tasks

        tasks = [(cfg.to_dict(), seed, None, False) for seed in seeds]
        summaries = map_tasks(train_one, tasks, parallel=args.parallel, ray_address=args.ray)
    for summary in summaries:
        validation = summary["validation"]
        print(
            f"{summary['folder']}: {summary['steps']:,} decisions in {summary['minutes']:.1f} min; validation gap to"
            f" the reference rule {100 * validation['gap_to_reference']:+.2f} % (best checkpoint"
            f" {100 * summary['best_gap']:+.2f} %): {summary['best']}"
        )
    if len(summaries) > 1:
        gaps = [s["validation"]["gap_to_reference"] for s in summaries]
        print(f"mean over {len(gaps)} seeds: {100 * sum(gaps) / len(gaps):+.2f} %")
    return 0


def _resume_config(checkpoint: str) -> dict:
    """The config stored beside a checkpoint (the run folder's config.json)."""
    path = Path(checkpoint)
    for folder in (path.parent, path.parent.parent):
        if (folder / "config.json").is_file():
            return json.loads((folder / "config.json").read_text())
    raise UserError(f"no config.json beside {checkpoint}; pass the CONFIG file too")


def cmd_latency(args: argparse.Namespace) -> int:
    from experiments.latency import main as latency_main

    return latency_main(args.args)


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    try:
        import uvicorn

        from service.app import ConfigurationError, load_models, settings_from_environment
    except ImportError as error:
        raise UserError(f"serving needs the service extra ({error.name} is missing): pip install 'sched-env[service]'") from None
    if args.model:
        os.environ["SCHED_ENV_MODEL"] = str(Path(args.model).resolve())
    if args.workers > 1:
        raise UserError(f"--workers {args.workers}: shop sessions are owned by one process (their log is the truth);"
                        " run one process per --db, replicas behind a router by shop id")  # fmt: skip
    from service.store import default_path

    db = Path(args.db) if args.db else default_path()
    from service.store import EventStore, StoreError

    try:
        EventStore(db).close()  # another server on it, or not a database: one line now, not a traceback later
    except StoreError as error:
        raise UserError(str(error)) from None
    os.environ.update(SCHED_ENV_DB=str(db.resolve()), SCHED_ENV_SHOP_RATE=str(args.shop_rate))
    if args.mqtt:
        os.environ["SCHED_ENV_MQTT"] = args.mqtt
    if args.mqtt_client_id:
        os.environ["SCHED_ENV_MQTT_CLIENT_ID"] = args.mqtt_client_id
    os.environ.update(SCHED_ENV_THREADS=str(args.threads), SCHED_ENV_QUEUE=str(args.queue),
                      SCHED_ENV_HEADER_TIMEOUT=str(args.header_timeout), SCHED_ENV_BODY_TIMEOUT=str(args.body_timeout),
                      SCHED_ENV_MAX_CONNECTIONS=str(args.max_connections),
                      SCHED_ENV_PUBLIC_METRICS="1" if args.public_metrics else "0")  # every worker process reads them
    try:
        settings = settings_from_environment()
    except ConfigurationError as error:
        raise UserError(str(error)) from None
    load_models(settings)  # a missing or corrupt model stops here, in one line
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"serving on {args.host}: reachable from other machines" + ("" if os.environ.get("SCHED_ENV_TOKEN") else
              "; set SCHED_ENV_TOKEN to require a bearer token"))  # fmt: skip
    host = f"[{args.host}]" if ":" in args.host else args.host
    mqtt = f"; MQTT: {args.mqtt} (sched-env/shops/+/events in, .../plan out)" if args.mqtt else ""
    print(f"sched-env serve: listening on http://{host}:{args.port} (API docs: /docs, health: /healthz,"
          f" metrics: /metrics; {args.threads} decider threads); shops in {db}{mqtt}; Ctrl-C stops", flush=True)  # fmt: skip
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("sched_env").setLevel(logging.INFO)
    uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                http="service.protocol:GuardedH11Protocol", timeout_keep_alive=5,
                log_level="info" if args.access_log else "warning", access_log=args.access_log)  # fmt: skip
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    try:
        from agents.onnx import export_onnx
    except ImportError as error:
        raise UserError(f"export needs torch, sb3-contrib and onnx ({error.name} is missing)") from None
    try:
        path = export_onnx(args.checkpoint, args.out)
    except ImportError as error:
        raise UserError(f"export needs torch, sb3-contrib and onnx ({error.name} is missing): pip install onnx") from None
    print(f"wrote {path}")
    return 0


def cmd_evolve(args: argparse.Namespace) -> int:
    from agents.evolve import EvolutionConfig, train

    generations = args.generations
    if generations is None and args.resume:
        from agents.evolve import RunState

        generations = RunState.load(Path(args.resume) / "checkpoint.npz")[1].generations
    config = EvolutionConfig(
        hidden=args.hidden, pairs=args.pairs, streams=args.streams, sigma=args.sigma, learning_rate=args.lr,
        minutes=args.minutes, generations=generations or EvolutionConfig().generations, seed=args.seed,
    )  # fmt: skip
    out = args.resume or args.out
    if out is None:
        raise UserError("give --out DIR for a new run, or --resume DIR to continue one")
    started = time.perf_counter()
    path = train(config, out, resume=bool(args.resume), ray_address=args.ray)
    print(f"wrote {path} ({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


# ---------------------------------------------------------------------- parser
def _config_epilog() -> str:
    from agents.config import config_help  # no torch: the keys are listed even without the rl extra

    return config_help()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sched-env", description="Job-shop scheduling with reinforcement learning: instances, env, solvers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dir_help = "folder of JSPLIB instance files (default: $SCHED_ENV_INSTANCES)"
    _add_instances(sub, dir_help)
    _add_gantt(sub, dir_help)
    _add_solve(sub, dir_help)
    _add_bench(sub, dir_help)
    _add_train(sub, dir_help)
    _add_latency(sub, dir_help)
    _add_serve(sub, dir_help)
    _add_export_onnx(sub, dir_help)
    _add_evolve(sub)
    _add_demo(sub, dir_help)
    return parser


def _add_instances(sub, dir_help: str) -> None:
    """The ``instances`` subcommand's options."""
    p = sub.add_parser("instances", help="list or show benchmark instances")
    isub = p.add_subparsers(dest="instances_command", required=True, metavar="ACTION")
    q = isub.add_parser("list", help="list the catalogue with sizes and best-known bounds")
    q.add_argument("--family", help="only this family (ta, ft, la, abz, orb, swv, yn, dmu)")
    q.add_argument("--dir", help=dir_help)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_instances_list)
    q = isub.add_parser("show", help="show one instance, its bounds and data")
    q.add_argument("name", help="catalogue name (ta01) or instance file")
    q.add_argument("--dir", help=dir_help)
    q.add_argument("--json", action="store_true", help="print JSON: jobs, machines, bounds")
    q.set_defaults(func=cmd_instances_show)


def _add_gantt(sub, dir_help: str) -> None:
    """The ``gantt`` subcommand's options."""
    p = sub.add_parser("gantt", help="draw a schedule JSON as a Gantt chart")
    p.add_argument("schedule", help="schedule JSON file (as written by sched-env)")
    p.add_argument("--instance", help="instance name or file (default: the one named in the schedule)")
    p.add_argument("--out", help="image file to write (.png, .svg, .pdf); without it, a text chart")
    p.add_argument("--scenario", help="the dynamic scenario JSON the schedule ran on (e.g. the demo's dynamic_scenario.json)")
    p.add_argument("--now", type=int, help="mark this time: work started before it solid, the rest as planned")
    p.add_argument("--text", action="store_true", help="also print the text chart")
    p.add_argument("--dir", help=dir_help)
    p.set_defaults(func=cmd_gantt)


def _add_solve(sub, dir_help: str) -> None:
    """The ``solve`` subcommand's options."""
    p = sub.add_parser("solve", help="solve one instance with any registered decider (rule, CP-SAT, ...)")
    p.add_argument("instance", nargs="?", help="catalogue name (ta01) or instance file")
    p.add_argument(
        "--method",
        default="cpsat",
        help="a method spec: a dispatching rule (mwkr, atc, ...), RULE@ACTION_SET (e.g. mwkr@giffler_thompson),"
        " random:N (best of N), cpsat:SECONDS[:hint], policy[:K], hybrid:SECONDS, or any other registered decider"
        " (all of them: --list-methods); default cpsat with --time-limit",
    )
    p.add_argument("--list-methods", action="store_true", help="list every registered decider and exit")
    p.add_argument("--budget", type=float, help="time budget in seconds (caps CP-SAT; reported for rules)")
    p.add_argument("--time-limit", type=float, default=10.0, help="CP-SAT time limit in seconds (default 10)")
    p.add_argument("--workers", type=int, default=2, help="CP-SAT search workers (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--json", action="store_true", help="print instance, method, makespan, bounds, gap, status, time, schedule"
    )
    p.add_argument("--out", help="write the schedule JSON here")
    p.add_argument("--gantt", help="write a Gantt chart image here (.png, .svg)")
    p.add_argument("--dir", help=dir_help)
    p.set_defaults(func=cmd_solve)


def _add_bench(sub, dir_help: str) -> None:
    """The ``bench`` subcommand's options."""
    p = sub.add_parser("bench", help="benchmark matrix: instances x methods x seeds -> CSV, Markdown, PNG")
    p.add_argument(
        "--instances", default="ta01-ta10", help="names and ranges, e.g. ta01-ta10,ta41-ta50 (default ta01-ta10)"
    )
    p.add_argument(
        "--methods", help="comma-separated method specs (see `solve --method`; default mwkr,mopnr,cpsat:10, with"
        " --dynamic standard the rule portfolio and policy)",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 per cell (default 1; with --dynamic standard 50 test seeds)")
    p.add_argument("--parallel", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster at ADDRESS ('local' starts one here)")
    p.add_argument("--workers", type=int, default=2, help="CP-SAT search workers per run (default 2)")
    p.add_argument("--out", default="bench-results", help="output folder (default ./bench-results)")
    p.add_argument("--name", default="benchmark", help="file stem of the outputs (default benchmark)")
    p.add_argument("--title", help="report title")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dir", help=dir_help)
    p.add_argument(
        "--dynamic", nargs="?", const="scenarios", choices=("scenarios", "standard"),
        help="a dynamic-shop benchmark instead: 'scenarios' (the default: 16 seeded scenarios, rules, the learned"
        " policy, replanners) or 'standard' (the literature's long-run simulation: --settings, --seeds, --methods)",
    )  # fmt: skip
    p.add_argument("--settings", help="with --dynamic standard: setting names (default the eight standard ones;"
                   " grammar ROUTING-UTIL-F[-blBL-rtfRTF][-mN], e.g. missing-0.80-3)")  # fmt: skip
    p.add_argument("--validation-seeds", type=int, default=10,
                   help="with --dynamic standard: validation seeds that pick each setting's best rule (default 10)")  # fmt: skip
    p.add_argument("--instant", action="store_true", help="with --dynamic: rules and the policy only (no replanners)")
    p.add_argument("--policy", default="dynamic", help="with --dynamic: policy model file, 'dynamic' or 'none'")
    p.add_argument("--replanners", help="with --dynamic: only these replanners, e.g. 'cpsat:1,hybrid:1,policy:16 sequence'")
    p.set_defaults(func=cmd_bench)


def _add_train(sub, dir_help: str) -> None:
    """The ``train`` subcommand's options."""
    p = sub.add_parser(
        "train", help="train a policy (self-labeling, MaskablePPO, PPO, A2C, DQN) from a YAML config",
        epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("config", nargs="?", help="YAML config (e.g. experiments/configs/static.yaml); keys below")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--algo", help="self-labeling, maskable-ppo, ppo, a2c or dqn (the config's algo key)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its checkpoint (same step count and TensorBoard curve)")
    p.add_argument("--seeds", help="a sweep: comma-separated seeds, one run each (e.g. 0,1,2)")
    p.add_argument("--parallel", type=int, default=1, help="sweep runs at a time on local processes (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the sweep on a Ray cluster ('local' starts one here)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _add_latency(sub, dir_help: str) -> None:
    """The ``latency`` subcommand's options."""
    p = sub.add_parser(
        "latency", add_help=False, prefix_chars="\0",
        help="response time per shop-floor event for each decider, and plan quality (`sched-env latency --help`)",
    )  # fmt: skip
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_latency)


def _add_serve(sub, dir_help: str) -> None:
    """The ``serve`` subcommand's options."""
    p = sub.add_parser("serve", help="the scheduling microservice (HTTP/JSON) on the shipped policies and every decider")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", help="static-shop policy file for `policy` (default: the shipped one)")
    p.add_argument("--workers", type=int, default=1, help="server processes: 1 (shop sessions live in one process;"
                                                          " run replicas with their own --db to scale)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="decider threads per process (default 2)")
    p.add_argument("--queue", type=int, default=16, help="requests that may wait for a thread; more get 503 (default 16)")
    p.add_argument("--access-log", action="store_true", help="log every request (method, path, status) to stderr")
    p.add_argument("--header-timeout", type=_positive_seconds, default=10.0,
                   help="seconds a client has to send its request line and headers; slower ones are closed (default 10)")
    p.add_argument("--body-timeout", type=_positive_seconds, default=30.0,
                   help="seconds a client has to send its body (408); bodies over 8 MiB get 413 as the bytes arrive,"
                        " chunked or not (default 30)")
    p.add_argument("--max-connections", type=int, default=256,
                   help="open connections per process; one more gets 503 and is closed (default 256)")
    p.add_argument("--public-metrics", action="store_true",
                   help="serve /metrics without the token (for a scraper on a trusted network); by default, when"
                        " SCHED_ENV_TOKEN is set, every route but /healthz, /readyz and /docs needs it")
    p.add_argument("--db", help="the shop sessions' SQLite file (WAL; every acknowledged event is on disk), default"
                        " $SCHED_ENV_DB or ~/.local/share/sched-env/shops.sqlite3")  # fmt: skip
    p.add_argument("--mqtt", metavar="HOST:PORT", help="bridge shop events and plans through this MQTT broker")
    p.add_argument("--mqtt-client-id", help="the bridge's MQTT client id (default: derived from --db; the broker"
                                            " keeps its session, so keep it fixed across restarts)")  # fmt: skip
    p.add_argument("--shop-rate", type=float, default=50.0,
                   help="event batches per second one shop may post over HTTP; more get 429 (default 50)")
    p.set_defaults(func=cmd_serve)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds between 0 and 3600, e.g. 10")
    return value


def _add_export_onnx(sub, dir_help: str) -> None:
    """The ``export-onnx`` subcommand's options."""
    p = sub.add_parser("export-onnx", help="export a trained policy to ONNX (masking inside the graph)")
    p.add_argument("checkpoint", help="SB3 checkpoint (.zip) written by `sched-env train`")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_export_onnx)


def _add_evolve(sub) -> None:
    """The ``evolve`` subcommand's options (agents/evolve.py: the steady-state dispatcher's recipe)."""
    from agents.evolve import EvolutionConfig

    d = EvolutionConfig()
    p = sub.add_parser(
        "evolve", help="train the long-run dispatcher (a priority network from ATC, evolution strategies)",
        description="Train a priority network for the dynamic shop by evolution strategies on generated streams"
        " (never the test seeds); the best network on validation streams is written as policy.onnx.",
    )  # fmt: skip
    p.add_argument("--out", help="run folder (checkpoint.npz, progress.csv, policy.onnx)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (same recipe; --minutes is this call's budget)")
    p.add_argument("--minutes", type=float, default=d.minutes, help=f"wall-time budget of this call (default {d.minutes:g})")
    p.add_argument("--generations", type=int, help=f"total generations of the run (default {d.generations}; with --resume"
                   " the run's own length unless given)")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help="training seed (default 0)")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units (default {d.hidden})")
    p.add_argument("--pairs", type=int, default=d.pairs, help=f"antithetic pairs per generation (default {d.pairs})")
    p.add_argument("--streams", type=int, default=d.streams, help=f"training streams per generation (default {d.streams})")
    p.add_argument("--sigma", type=float, default=d.sigma, help=f"perturbation scale (default {d.sigma:g})")
    p.add_argument("--lr", type=float, default=d.learning_rate, help=f"Adam step (default {d.learning_rate:g})")
    p.add_argument("--ray", metavar="ADDRESS", help="run the rollouts on a Ray cluster ('local' starts one here)")
    p.set_defaults(func=cmd_evolve)


def _add_demo(sub, dir_help: str) -> None:
    """The ``demo`` subcommand's options."""
    p = sub.add_parser(
        "demo", help="the main job on defaults: ta01 by a rule, CP-SAT and the learned policy; a breakdown rescheduled"
    )  # fmt: skip
    p.add_argument("--instance", default="ta01", help="instance to schedule (default ta01)")
    p.add_argument(
        "--time-limit", type=float, default=3.0, help="CP-SAT seconds, when OR-Tools is installed (default 3)"
    )
    p.add_argument("--method", default="hybrid:1", help="the rescheduling decider of the dynamic part (default hybrid:1)")
    p.add_argument("--out", default="sched-env-demo", help="output folder (default ./sched-env-demo)")
    p.add_argument("--dir", help=dir_help)
    p.set_defaults(func=cmd_demo)


def main(argv: Sequence[str] | None = None) -> int:
    from instances import SchedEnvError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SchedEnvError, UserError) as error:
        print(f"sched-env: error: {error}", file=sys.stderr)
        return 130 if type(error).__name__ == "TrainingInterruptedError" else 2
    except KeyboardInterrupt:
        print("sched-env: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sched-env instances list | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
