"""The training record of the evolved dispatcher: curves, wall times, the seeds' spread.

Reads ``RUN/progress.csv`` and ``RUN/policy.onnx`` of each run folder, copies them to
``experiments/results/evolve/seedN.*`` (small files: the networks are a few hundred bytes of
weights) and writes ``training_evolve.md`` and ``training_evolve.png``.

    python -m experiments.evolve_report runs/evolve-0 runs/evolve-1 runs/evolve-2 \
        --command "sched-env evolve --out runs/evolve-N --seed N --minutes 75 --generations 150"
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from agents.evolve import SHOP_VALIDATION_STREAMS
from agents.loading import load_policy
from experiments.provenance import git_commit, machine_description

RESULTS = Path(__file__).resolve().parent / "results"


def read_run(run: Path) -> dict:
    rows = list(csv.DictReader((run / "progress.csv").open()))
    validation = [(int(r["generation"]), float(r["minutes"]), float(r["validation_ratio"]))
                  for r in rows if r["validation_ratio"]]  # fmt: skip
    policy = load_policy(run / "policy.onnx")
    return {"run": run.name, "seed": policy.config.get("seed"), "validation": validation,
            "minutes": max(float(r["minutes"]) for r in rows), "generations": max(int(r["generation"]) for r in rows),
            "best": min(v for _, _, v in validation), "config": policy.config}  # fmt: skip


def chart(runs: list[dict], path: Path, reference: str = "ATC") -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        generations, _, ratios = zip(*run["validation"])
        ax.plot(generations, ratios, marker="o", ms=3, label=f"seed {run['seed']}")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.legend()
    ax.set(xlabel="generation", ylabel=f"validation mean WT / {reference}'s (geometric mean)",
           title="Evolved dispatcher: validation streams (generated, never the test seeds)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("runs", nargs="+", help="run folders of `sched-env evolve`")
    parser.add_argument("--command", required=True, help="the training command, as run")
    parser.add_argument("--name", default="evolve", help="training_NAME.{md,png}, networks in NAME/ (default evolve)")
    parser.add_argument("--trained", default="the three seeds trained at once, one thread each, beside other work",
                        help="how the runs shared the machine, as run")  # fmt: skip
    parser.add_argument("--commit", help="the commit the runs were made at (default: the checkout's)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    keep = out / args.name
    keep.mkdir(parents=True, exist_ok=True)
    runs = [read_run(Path(r)) for r in args.runs]
    for run, folder in zip(runs, args.runs):
        shutil.copy(Path(folder) / "progress.csv", keep / f"seed{run['seed']}_progress.csv")
        shutil.copy(Path(folder) / "policy.onnx", keep / f"seed{run['seed']}.onnx")
    best = np.array([r["best"] for r in runs])
    config = runs[0]["config"]
    reference = "ATC" if config.get("reference", "atc") == "atc" else "the best of ATC and WSPT"
    reference_words = "ATC" if reference == "ATC" else "the better of ATC and WSPT on that setting"
    penalty = config.get("loss_penalty", 0.0)
    penalty_words = f"; a setting where it is worse counts {1 + penalty:g} times" if penalty else ""
    lines = [
        "# Training the evolved dispatcher (agents/evolve.py)", "",
        f"Command (per seed N): `{args.command}`  ",
        f"Commit: {args.commit or git_commit()}, machine: {machine_description()['cpu']}"
        f" ({machine_description()['cores']} cores), {args.trained}.", "",
        "Recipe: " + json.dumps({k: v for k, v in runs[0]["config"].items() if k not in ("extra",)}), "",
        f"| seed | generations | wall time | best validation ratio to {reference} | at generation |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for run in runs:
        at = min(run["validation"], key=lambda v: v[2])
        lines.append(
            f"| {run['seed']} | {run['generations']} | {run['minutes']:.1f} min | {run['best']:.4f} | {at[0]} |"
        )
    streams = {
        "wide": "16 settings drawn once from the wide mix (`agents.evolve.WIDE_VALIDATION`: no published setting),"
                " 2 validation seeds each, 20 for a finite episode",
        "broad": "32 settings drawn once from the broad mix (`agents.evolve.BROAD_VALIDATION`: the wide mix's 16,"
                 " 8 short episodes that start with work waiting, 8 loaded shops; no published setting), 2"
                 " validation seeds each, 20 for a finite episode",
        "episodes": "16 short episodes drawn once from the broad mix's episodes (`agents.evolve.EPISODE_VALIDATION`:"
                    " 20-60 jobs, no published setting), 20 validation seeds each",
        "flexible-episodes": "16 short episodes of flexible shops drawn once (`agents.evolve.FLEXIBLE_EPISODE_VALIDATION`:"
                             " 20-60 jobs, no published setting), 20 validation seeds each; the reference is the"
                             " rules with the earliest-end machine rule",
        "shop": "the shop spec's own validation streams (`agents.evolve.validation_specs`:"
                f" {SHOP_VALIDATION_STREAMS} per validation seed, validation seeds only)",
        "flexible": "8 flexible settings drawn once from the flexible mix (`agents.evolve.FLEXIBLE_VALIDATION`: none"
                    " of the test settings), 4 validation seeds each (300 + 1 500 jobs); the reference is ATC with"
                    " the earliest-end machine rule",
    }.get("shop" if runs[0]["config"].get("shop") else runs[0]["config"].get("mix"),
          "each of the eight standard settings and four others, 2 validation seeds each (full 1 000 + 5 000 jobs)")  # fmt: skip
    lines += ["", f"Mean over the seeds {best.mean():.4f}, spread (min .. max) {best.min():.4f} .. {best.max():.4f}.",
              f"The validation streams: {streams}; the ratio is the geometric mean over those settings of the"
              f" network's mean weighted tardiness over {reference_words}'s (plus 1 % of a job's mean work, for"
              f" episodes where the rules are never late){penalty_words}. The networks are kept in"
              f" `{args.name}/seedN.onnx`.", "",
              f"![validation curve](training_{args.name}.png)", ""]  # fmt: skip
    (out / f"training_{args.name}.md").write_text("\n".join(lines))
    chart(runs, out / f"training_{args.name}.png", reference)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
