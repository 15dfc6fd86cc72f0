"""Dispatchers of dynamic flexible shops on the flexible mix's validation streams, through the decider door.

Any method spec (a rule + machine rule, the pair policy, an evolved network) on the generated settings
of ``agents.evolve.FLEXIBLE_VALIDATION`` (never a test setting or seed): the choice of which flexible
dispatcher ships. Writes ``experiments/results/NAME.md``.

    python -m experiments.flexible_validation --methods atc+eet,policy@experiments/results/evolve_flexible/seed2.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agents.evolve import FLEXIBLE_VALIDATION
from experiments.bench_standard import run_cell
from experiments.provenance import report_header
from sched_env.standard import DEFAULT_WINDOW

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", required=True, help="comma-separated method specs; atc+eet is the reference")
    parser.add_argument("--seeds", type=int, default=2, help="validation seeds per setting")
    parser.add_argument("--name", default="flexible_validation")
    args = parser.parse_args(argv)
    methods = list(dict.fromkeys(["atc+eet", *args.methods.split(",")]))
    mean_wt: dict[str, dict[str, float]] = {}
    for setting in FLEXIBLE_VALIDATION:
        for method in methods:
            rows = run_cell(setting, method, list(range(args.seeds)), "validation", DEFAULT_WINDOW)
            mean_wt.setdefault(method, {})[setting] = float(np.mean([r["weighted_tardiness_mean"] for r in rows]))
            print(setting, method, round(mean_wt[method][setting], 1), flush=True)
    reference = mean_wt["atc+eet"]
    ratio = {m: float(np.exp(np.mean([np.log((v[s] + 1e-9) / (reference[s] + 1e-9)) for s in v])))
             for m, v in mean_wt.items()}  # fmt: skip
    lines = [
        *report_header(
            "Dynamic flexible dispatchers on the flexible validation streams", "experiments.flexible_validation", argv
        ),
        f"The {len(FLEXIBLE_VALIDATION)} settings of `agents.evolve.FLEXIBLE_VALIDATION` (generated, none a test"
        f" setting), validation seeds 0-{args.seeds - 1}: the evolved networks chose their checkpoints on these"
        " seeds among others, so their figures lean their way. Ratio: geometric mean over the settings of the"
        " mean weighted tardiness over atc+eet's.",
        "",
        "| method | ratio to atc+eet |",
        "|---|---:|",
        *[f"| `{m}` | {r:.4f} |" for m, r in sorted(ratio.items(), key=lambda item: item[1])],
        "",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
