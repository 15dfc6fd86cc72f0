"""The training curve of a run, as a committed result: validation gap (the figure checkpoints are
chosen by) against minutes, and for a static run each checkpoint's greedy gap on ta01-ta10 (a
test set: reported, never used to choose), next to the best rule there.

    python -m experiments.training_report runs/static --command "sched-env train experiments/configs/static.yaml"
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

import instances
from experiments.provenance import git_commit, machine_description

RESULTS = Path(__file__).resolve().parent / "results"
TEST_SET = [f"ta{i:02d}" for i in range(1, 11)]


def checkpoint_gaps(folder: Path) -> dict[int, float]:
    """Greedy mean gap to the best known on ta01-ta10 of every checkpoint, by step."""
    from agents.loading import load_policy
    from agents.rollouts import solve_with_policy

    tests = [instances.load(name) for name in TEST_SET]
    gaps = {}
    for path in sorted((folder / "checkpoints").glob("step_*.zip")) + [folder / "final.zip"]:
        if not path.exists():
            continue
        policy = load_policy(path)
        values = [solve_with_policy(policy, t).gap_to(instances.best_known(t.name)) for t in tests]
        step = int(path.stem.split("_")[1]) if path.stem.startswith("step_") else None
        gaps[step if step is not None else -1] = float(np.mean(values))
    return gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (OUT/NAME of `sched-env train`)")
    parser.add_argument("--command", required=True, help="the exact command that trained it (recorded)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    folder, out = Path(args.run), Path(args.out)
    config = json.loads((folder / "config.json").read_text())
    rows = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines() if line.strip()]
    rows = list({row["steps"]: row for row in rows}.values())  # the final evaluation repeats the last step's
    name = config["name"] or folder.name
    static = config["shop"] == "static"
    per_instance = config["shop"] != "dynamic"  # static and flexible: a gap per validation instance
    gaps = checkpoint_gaps(folder) if static else {}
    from baselines.rules import dispatch

    rule_gap = float(np.mean([dispatch(instances.load(n), "mwkr").gap_to(instances.best_known(n)) for n in TEST_SET]))
    shutil.copy(folder / "eval.jsonl", out / f"training_{name}_eval.jsonl")
    lines = [
        f"# Training curve: {name} ({config['algo']}, {config['shop']} shop)",
        "",
        f"Command: `{args.command}`. Commit `{git_commit()}` (report), machine: {machine_description()['cpu']},"
        f" {machine_description()['cores']} cores, shared with other work. Wall time"
        f" {rows[-1]['minutes']:.1f} min for {rows[-1]['steps']:,} decisions. Validation: {config['eval_items']}"
        f" random {'instances' if per_instance else 'scenarios'} of the training distribution (seed {config['eval_seed']});"
        f" gap = {'mean ratio to the best of six rules per instance' if per_instance else 'summed objective / ATC summed'}"
        f"{' (machines by earliest end)' if config['shop'] == 'flexible' else ''} - 1."
        + (f" ta01-ta10: each checkpoint's greedy mean gap to the best known (a test set, never used to choose);"
           f" MWKR there: {100 * rule_gap:.1f} %." if static else ""),
        "",
        "| minutes | decisions | validation gap | validation mean objective |" + (" ta01-ta10 greedy gap |" if static else ""),
        "|---:|---:|---:|---:|" + ("---:|" if static else ""),
    ]  # fmt: skip
    for row in rows:
        cells = f"| {row['minutes']:.1f} | {row['steps']:,} | {100 * row['gap_to_reference']:+.2f} % | {row['mean_objective']:.1f} |"
        if static:
            gap = gaps.get(row["steps"])
            cells += f" {'' if gap is None else f'{100 * gap:.1f} %'} |"
        lines.append(cells)
    if static and -1 in gaps:
        lines += ["", f"Final weights on ta01-ta10: {100 * gaps[-1]:.1f} %."]
    (out / f"training_{name}.md").write_text("\n".join(lines) + "\n")
    chart(rows, gaps, rule_gap if static else None, out / f"training_{name}.png", name)
    print("\n".join(lines))
    return 0


def chart(rows, gaps, rule_gap, path: Path, name: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    minutes = [r["minutes"] for r in rows]
    ax.plot(
        minutes, [100 * r["gap_to_reference"] for r in rows], marker="o", label="validation gap to the reference rule"
    )
    if gaps:
        by_step = {r["steps"]: r["minutes"] for r in rows}
        points = sorted((by_step[s], 100 * g) for s, g in gaps.items() if s in by_step)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="s", label="ta01-ta10 greedy gap to best known")
    if rule_gap is not None:
        ax.axhline(100 * rule_gap, color="grey", linestyle="--", label="MWKR on ta01-ta10")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("minutes of training (2-core CPU)")
    ax.set_ylabel("gap (%)")
    ax.set_title(f"Training curve: {name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
