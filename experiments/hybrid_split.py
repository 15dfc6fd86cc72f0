"""Where CP-SAT still adds to the tabu search: ``tabu:S`` against ``hybrid:S`` with and without
the CP-SAT polish on small generated shops (never a benchmark family), the same budget each::

    python -m experiments.hybrid_split --seconds 1 --instances 6 --out experiments/results
    python -m experiments.hybrid_split --shop flexible --seconds 1 --instances 6   # Brandimarte-style shops
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SIZES = ((6, 6), (10, 5), (10, 10), (15, 5), (15, 10), (20, 5))
#: Flexible shops (``--shop flexible``): BrandimarteGenerator, 1-4 eligible machines per operation.
FLEXIBLE_SIZES = ((6, 4), (10, 5), (10, 8), (15, 5), (15, 8))


def main(argv: list[str] | None = None) -> int:
    from agents import hybrid
    from baselines import deciders
    from experiments.provenance import git_commit, machine_description
    from instances.generators import BrandimarteGenerator, RandomInstanceGenerator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--instances", type=int, default=6)
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--shop", choices=("classic", "flexible"), default="classic")
    args = parser.parse_args(argv)
    flexible = args.shop == "flexible"
    spec = f"hybrid:{args.seconds:g}"
    tabu = deciders.make(f"tabu:{args.seconds:g}")
    with_polish = deciders.make(spec)
    without = deciders.make(spec)
    rows = []
    started = time.perf_counter()
    for n, m in FLEXIBLE_SIZES if flexible else SIZES:
        for i in range(args.instances):
            make = BrandimarteGenerator(n, m, alternatives=(1, 4)) if flexible else RandomInstanceGenerator(n, m)
            instance = make(9000 + i, name=f"gen{n}x{m}-{i}")
            values = {}
            for label, decider, limit in (("tabu", tabu, None), ("hybrid (tabu, CP-SAT polish)", with_polish, None),
                                          ("hybrid without polish", without, 0)):  # fmt: skip
                saved = hybrid.CPSAT_MAX_OPS
                hybrid.CPSAT_MAX_OPS = saved if limit is None else limit
                try:
                    result = deciders.solve(instance, decider, seed=i)
                finally:
                    hybrid.CPSAT_MAX_OPS = saved
                values[label] = (result.objective, result.status == "optimal", result.wall_time_s)
            rows.append((f"{n}x{m}", values))
    labels = list(rows[0][1])
    machine = machine_description()
    lines = [
        f"# Where CP-SAT still adds to the tabu search (small generated{' flexible' if flexible else ''} shops)", "",
        f"Commit `{git_commit()}`, {machine['cpu']} ({machine['cores']} cores), {time.perf_counter() - started:.0f} s."
        f" Command: `python -m experiments.hybrid_split --shop {args.shop} --seconds {args.seconds:g} --instances"
        f" {args.instances}`. Instances: {'BrandimarteGenerator(alternatives=(1, 4))' if flexible else 'Taillard' + chr(39) + 's distribution'},"
        " seeds 9000+; CP-SAT polish on shops of at most"
        f" {hybrid.CPSAT_MAX_OPS} operations ({hybrid.CPSAT_SHARE:.0%} of the budget).", "",
        "Mean makespan relative to the best of the three on the instance (% above), proven optima, mean time.", "",
        "| size | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels),
    ]  # fmt: skip
    for size in dict.fromkeys(s for s, _ in rows):
        group = [v for s, v in rows if s == size]
        cells = []
        for label in labels:
            gaps = [v[label][0] / min(x[0] for x in v.values()) - 1 for v in group]
            proven = sum(v[label][1] for v in group)
            took = np.mean([v[label][2] for v in group])
            cells.append(f"{np.mean(gaps) * 100:.2f} % ({proven} optimal, {took:.2f} s)")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"hybrid_split{'_flexible' if flexible else ''}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
