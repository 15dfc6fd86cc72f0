"""``sched-env train``, ``evolve`` and ``export-onnx``: the learned policies' recipes. Each config
dataclass documents its fields once; ``--help`` shows them (``agents.config.config_help``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiments.cli.common import UserError, output_dir, output_file, positive_int


def add_commands(sub) -> None:
    from agents.config import EvolutionConfig, TrainConfig, add_config_options, config_help

    p = sub.add_parser(
        "train", help="train a policy (self-labeling, MaskablePPO, PPO, A2C, DQN) from a YAML config",
        epilog=config_help(TrainConfig), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a policy from a YAML config and --set overrides; Ctrl-C checkpoints and stops.",
    )  # fmt: skip
    p.add_argument("config", nargs="?", help="YAML config (e.g. experiments/configs/static.yaml); keys below")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--algo", help="self-labeling, maskable-ppo, ppo, a2c or dqn (the config's algo key)")
    p.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue a run from its checkpoint (same step count and TensorBoard curve)",
    )
    p.add_argument("--seeds", help="a sweep: comma-separated seeds, one run each (e.g. 0,1,2)")
    p.add_argument(
        "--parallel", type=positive_int, default=1, help="sweep runs at a time on local processes (default 1)"
    )
    p.add_argument("--ray", metavar="ADDRESS", help="run the sweep on a Ray cluster ('local' starts one here)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "evolve", help="train the long-run dispatcher (a priority network from ATC, evolution strategies)",
        description="Train a priority network for the dynamic shop by evolution strategies on generated streams"
        " (never the test seeds); the best network on validation streams is written as DIR/policy.onnx (use it:"
        " --methods policy@DIR/policy.onnx). Ctrl-C checkpoints and stops; --resume continues.",
        epilog=config_help(EvolutionConfig, "the recipe, stored with the run (an option above sets the field of its name)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--out", help="run folder (checkpoint.npz, progress.csv, policy.onnx)")
    p.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR (same recipe; --minutes is this call's budget)"
    )
    add_config_options(p, EvolutionConfig)
    p.add_argument("--ray", metavar="ADDRESS", help="run the rollouts on a Ray cluster ('local' starts one here)")
    p.set_defaults(func=run_evolve)

    p = sub.add_parser(
        "fit-shop", help="estimate your shop's stream generator from the service's event log (for evolve --shop)",
        description="Read one shop session's events from the service database and estimate how work arrives and"
        " runs there: arrivals, routings, real durations against the plan per equipment, breakdowns and repairs, due"
        " dates and priorities. Writes the spec (JSON, for `sched-env evolve --shop` and `sched-env bench --dynamic"
        " standard --settings shop:SPEC`) and a report beside it (.md).",
    )  # fmt: skip
    p.add_argument("--db", required=True, help="the service database (`sched-env serve --db`); read only")
    p.add_argument("--shop", required=True, help="the shop's id or name")
    p.add_argument("--out", required=True, help="the spec to write (.json); the report goes beside it (.md)")
    p.add_argument("--warmup", type=positive_int, default=300, help="warm-up orders per generated stream (300)")
    p.add_argument("--recorded", type=positive_int, default=1500, help="orders counted per generated stream (1500)")
    p.set_defaults(func=run_fit_shop)

    p = sub.add_parser(
        "replay", help="re-run a shop's recorded history under other dispatchers, objectives side by side",
        description="Dispatch the recorded arrivals, breakdowns and real durations of a shop session again with each"
        " method; the row 'recorded' carries out the shop's own decisions (and must reproduce its history).",
    )  # fmt: skip
    p.add_argument("--db", required=True, help="the service database (`sched-env serve --db`); read only")
    p.add_argument("--shop", required=True, help="the shop's id or name")
    p.add_argument("--methods", default="atc,wspt,fifo",
                   help="dispatchers, comma-separated: rules (atc, wspt, ... ; RULE+eet on flexible shops) and"
                   " policy / policy@MODEL (default atc,wspt,fifo)")  # fmt: skip
    p.add_argument("--out", help="also write the table here (.md) and its data (.json beside it)")
    p.set_defaults(func=run_replay)

    p = sub.add_parser("export-onnx", help="export a trained policy to ONNX (masking inside the graph)")
    p.add_argument("checkpoint", help="SB3 checkpoint (.zip) written by `sched-env train`")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.set_defaults(func=run_export_onnx)


def train_one(config: dict, seed: int | None, resume: str | None, progress: bool) -> dict:
    """One training run (a sweep's task: module level, so spawned workers can import it)."""
    from agents.config import TrainConfig
    from agents.train import train

    cfg = TrainConfig.from_dict(config)
    if seed is not None:
        cfg.seed = seed
        cfg.name = f"{cfg.run_name}-s{seed}" if cfg.name else ""
    return train(cfg, resume=resume, progress=progress)


def _seeds(text: str | None) -> list[int | None]:
    if not text:
        return [None]
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text}: write comma-separated whole numbers, e.g. 0,1,2") from None


def run_train(args: argparse.Namespace) -> int:
    from agents.config import TrainConfig

    try:
        import sb3_contrib  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        raise UserError(f"training needs the rl extra ({error.name} is missing): pip install 'sched-env[rl]'") from None
    if not (args.config or args.resume or args.set or args.algo):
        raise UserError("give a CONFIG file (e.g. experiments/configs/static.yaml) or settings with --set KEY=VALUE;"
                        " the defaults alone would train for 2,000,000 decisions")  # fmt: skip
    config = _resume_config(args.resume) if args.resume and not args.config else None
    overrides = list(args.set) + ([f"algo={args.algo}"] if args.algo else [])
    cfg = TrainConfig.load(args.config, overrides) if config is None else TrainConfig.from_dict(config, overrides)
    output_dir("the config's out", cfg.out)
    seeds = _seeds(args.seeds)
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


#: The length of a new ``evolve`` run given ``--minutes`` and no ``--generations``: its minutes end it.
UNLIMITED_GENERATIONS = 1_000_000


def run_evolve(args: argparse.Namespace) -> int:
    from agents.config import EvolutionConfig, config_options
    from agents.evolve import RunState, train

    out = args.resume or args.out
    if out is None:
        raise UserError("give --out DIR for a new run, or --resume DIR to continue one")
    output_dir("--resume" if args.resume else "--out", out)
    options = config_options(args, EvolutionConfig)
    if args.resume and "generations" not in options:  # a resumed run keeps its own length
        options["generations"] = RunState.load(Path(args.resume) / "checkpoint.npz")[1].generations
    elif "minutes" in options and "generations" not in options:  # --minutes 20 alone: a 20-minute run
        options["generations"] = UNLIMITED_GENERATIONS
    config = EvolutionConfig(**options)
    started = time.perf_counter()
    path = train(config, out, resume=bool(args.resume), ray_address=args.ray)
    print(f"wrote {path} ({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


def run_fit_shop(args: argparse.Namespace) -> int:
    from experiments.fit_shop import fit_shop

    out = output_file("--out", args.out, (".json",))
    report = fit_shop(args.db, args.shop, out, warmup=args.warmup, recorded=args.recorded)
    print(Path(out).with_suffix(".md").read_text(), end="")
    print(f"wrote {out} and {Path(out).with_suffix('.md')} ({report['events']:,} events read)")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from experiments.replay import markdown, replay

    out = output_file("--out", args.out, (".md",)) if args.out else None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = replay(args.db, args.shop, methods)
    text = markdown(result, "sched-env " + shlex.join(sys.argv[1:]))
    print(text, end="")
    if out is not None:
        Path(out).write_text(text)
        Path(out).with_suffix(".json").write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
    return 0


def run_export_onnx(args: argparse.Namespace) -> int:
    out = output_file("--out", args.out, (".onnx",))
    try:
        from agents.onnx import export_onnx
    except ImportError as error:
        raise UserError(f"export needs torch, sb3-contrib and onnx ({error.name} is missing)") from None
    try:
        path = export_onnx(args.checkpoint, out)
    except ImportError as error:
        raise UserError(
            f"export needs torch, sb3-contrib and onnx ({error.name} is missing): pip install onnx"
        ) from None
    print(f"wrote {path}")
    return 0
