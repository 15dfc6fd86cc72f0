"""The README's Taillard table from the committed benchmark CSVs: mean gap to the best known per
size group, per method, next to the published rows (figures from the papers, as quoted in issue 9/10).

    python -m experiments.taillard_table                      # prints Markdown
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = ("15x15", "20x15", "20x20", "30x15", "30x20", "50x15", "50x20", "100x20")
#: Published mean gaps per size group (greedy unless said), for comparison only.
PUBLISHED = {
    "L2D (PPO, greedy)": (26.0, 30.0, 31.6, 33.0, 33.6, 22.4, 26.5, 13.6),
    "SPN self-labeling, greedy": (13.8, 15.0, 15.2, 17.1, 18.5, 10.1, 11.6, 5.9),
    "Gumbeldore, greedy": (9.6, 9.9, 11.1, 9.5, 13.8, 2.7, 6.7, 1.7),
    "SPN, best of 128": (7.3, 9.3, 9.9, 11.0, 13.4, 5.5, 8.4, 2.3),
    "learned improvement search, 5 000 N5 steps (GPU, 20-70 s)": (4.6, 6.3, 7.0, 6.9, 10.3, 2.6, 4.8, 1.3),
}


def gaps(files: list[str]) -> dict[str, dict[str, list[float]]]:
    by_method: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name in files:
        path = RESULTS / name
        if not path.exists():
            continue
        for row in csv.DictReader(path.open()):
            if row["instance"].startswith("ta") and row["gap"]:
                by_method[row["method"]][row["size"]].append(100 * float(row["gap"]))
    return by_method


def main(argv: list[str] | None = None) -> int:
    wanted = [
        ("policy", "**ours: policy, greedy**"),
        ("policy:128", "**ours: policy:128**"), ("cpsat:10", "CP-SAT 10 s"), ("cpsat:10:hint", "CP-SAT 10 s + rule hint"),
        ("cpsat:1", "CP-SAT 1 s"), ("hybrid:1 before", "hybrid:1 before the tabu search (policy hint -> CP-SAT)"),
        ("tabu:1", "**ours: tabu:1** (2 searches, 1 s)"), ("hybrid:1", "**ours: hybrid:1** (rule/policy plans -> tabu)"),
        ("tabu:10", "**ours: tabu:10**"), ("hybrid:10", "**ours: hybrid:10** (rule/policy plans -> tabu, 10 s in all)"),
    ]  # fmt: skip
    data = gaps(["taillard_rules.csv", "taillard_policy.csv", "taillard_cpsat.csv", "taillard_tabu.csv",
                 "taillard_hybrid.csv"])  # fmt: skip
    data.update(gaps(["taillard_cpsat_now.csv"]))  # CP-SAT rerun beside the tabu tables replaces the older rows
    before = gaps(["taillard_hybrid1_before.csv"]).get("hybrid:1")
    if before:  # the earlier hybrid (commit 352707b), under its own label
        data["hybrid:1 before"] = before
    lines = ["| method | " + " | ".join(SIZES) + " | mean |", "|---|" + "---:|" * (len(SIZES) + 1)]
    for method, label in wanted:
        if method not in data:
            continue
        cells = [data[method].get(size, []) for size in SIZES]
        means = [sum(c) / len(c) if c else None for c in cells]
        everything = [g for c in cells for g in c]
        lines.append(f"| {label} | " + " | ".join("" if m is None else f"{m:.1f}" for m in means)
                     + f" | {sum(everything) / len(everything):.1f} |")  # fmt: skip
    if "mwkr" in data and "mopnr" in data:  # the "our best rule": the better of the two per size group
        best = [min(sum(data[m][size]) / len(data[m][size]) for m in ("mwkr", "mopnr")) for size in SIZES]
        lines.insert(2, "| best rule per size (MWKR or MOPNR) | " + " | ".join(f"{v:.1f}" for v in best)
                     + f" | {sum(best) / len(best):.1f} |")  # fmt: skip
    for label, values in PUBLISHED.items():
        lines.append(f"| {label} (published) | " + " | ".join(f"{v:.1f}" for v in values)
                     + f" | {sum(values) / len(values):.1f} |")  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
