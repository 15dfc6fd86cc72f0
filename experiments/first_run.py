"""What a new user waits for: the README's first command and a rule's solve, with an empty numba
cache (cold: the kernels compile) and again with it filled (warm), when the first line and the
demo's first table (ta01 by a rule and by the policy) show, and where the cold seconds go (each
kernel group compiled alone in a fresh process with an empty cache).

    python -m experiments.first_run [--out experiments/results]

Each command runs in a fresh process with its own ``NUMBA_CACHE_DIR``; times are wall seconds
from the process start, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.provenance import git_commit, machine_description

RESULTS = Path(__file__).resolve().parent / "results"


#: The demo's first table is out when its policy row is (the rule's row comes first).
FIRST_TABLE_MARK = "| policy "


def timed(command: list[str], cache: str, cwd: str) -> dict:
    """Run ``command`` with numba's cache at ``cache``: total seconds, seconds to the first line and
    to the first table's policy row (the demo), exit code."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    first = table = None
    for line in process.stdout:
        first = first if first is not None else time.perf_counter() - started
        if table is None and line.startswith(FIRST_TABLE_MARK):
            table = time.perf_counter() - started
    code = process.wait()
    return {"seconds": round(time.perf_counter() - started, 2), "first_line_s": round(first or 0.0, 2),
            "first_table_s": None if table is None else round(table, 2), "exit": code}  # fmt: skip


def compile_seconds(group: str, work: str) -> float:
    """Seconds to compile kernel group ``group`` alone, in a fresh process with an empty cache."""
    code = ("import time, baselines.tabu; from sched_env.warmup import GROUPS; t = time.perf_counter();"
            f" GROUPS[{group!r}].run(); print(time.perf_counter() - t)")  # fmt: skip
    env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=work))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 2)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--warm-runs", type=int, default=3, help="warm repetitions of the solve (default 3)")
    args = parser.parse_args(argv)
    exe = [sys.executable, "-m", "experiments.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        cases = [("sched-env demo", [*exe, "demo", "--out", f"{work}/demo"]),
                 ("sched-env solve ta01 --method mwkr", [*exe, "solve", "ta01", "--method", "mwkr"])]  # fmt: skip
        for label, command in cases:
            cache = tempfile.mkdtemp(dir=work)
            rows.append({"command": label, "cache": "cold", **timed(command, cache, work)})
            for _ in range(args.warm_runs if "solve" in label else 1):
                rows.append({"command": label, "cache": "warm", **timed(command, cache, work)})
        groups = {group: compile_seconds(group, work) for group in ("static", "dynamic", "tabu")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    lines = ["# First run: cold (empty numba cache) and warm", "",
             f"Commit `{git_commit()}`, {machine['cpu']}, {machine['cores']} cores. Command: `python -m"
             " experiments.first_run`. Wall seconds of a fresh process; first line = when its first output line came.",
             " The demo's first table is out when its policy row is.", "",
             "| command | numba cache | seconds | first line after s | first table after s | exit |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| `{r['command']}` | {r['cache']} | {r['seconds']:.2f} | {r['first_line_s']:.2f} |"
              f" {_seconds(r['first_table_s'])} | {r['exit']} |"
              for r in rows]  # fmt: skip
    lines += ["", "Where the cold seconds go: each kernel group compiled alone, in a fresh process with an empty cache"
              " (the demo compiles the dynamic group in a helper process while it compiles the static one and prints"
              " the first table, then the tabu group in another):", "", "| kernel group | compile seconds |",
              "|---|---:|"] + [f"| {g} | {t:.2f} |" for g, t in groups.items()]  # fmt: skip
    (out / "first_run.md").write_text("\n".join(lines) + "\n")
    (out / "first_run.json").write_text(
        json.dumps({"commit": git_commit(), "machine": machine, "rows": rows, "compile_s": groups}, indent=1)
    )
    print("\n".join(lines))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
