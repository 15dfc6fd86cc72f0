"""The ``sched-env`` command line, one module per concern: ``catalogue`` (instances), ``solving``
(solve, gantt, demo), ``benchmarks`` (bench, latency), ``learning`` (train, evolve, export-onnx) and
``serving`` (serve). Each adds its subcommands with ``add_commands(sub)`` and runs them from the
parsed arguments; a subcommand imports its layer only when it runs.

User mistakes (unknown instance, malformed file, bad option, unwritable path) print one line on
stderr and exit with status 2; Ctrl-C stops any command within a second or two and exits with 130,
keeping what is complete (see each command's ``--help``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from experiments.cli.common import OneLineParser, UserError, expand_names

COMMAND_GROUPS = ("catalogue", "solving", "benchmarks", "learning", "serving")


def build_parser() -> OneLineParser:
    import importlib

    parser = OneLineParser(
        prog="sched-env", description="Job-shop scheduling with reinforcement learning: instances, env, solvers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        importlib.import_module(f"experiments.cli.{group}").add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from instances import SchedEnvError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SchedEnvError, UserError) as error:
        print(f"sched-env: error: {error}", file=sys.stderr)
        return 130 if getattr(error, "interrupted", False) else 2  # a run that Ctrl-C stopped after saving itself
    except KeyboardInterrupt:
        print("sched-env: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sched-env instances list | head`
        return 0


__all__ = ["UserError", "build_parser", "expand_names", "main"]
