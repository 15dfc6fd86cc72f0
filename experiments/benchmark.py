"""Benchmark matrices: instances x methods x seeds -> one CSV row per run, a Markdown report, a chart.

One pure function, :func:`run`, makes one row; :func:`run_matrix` maps it over the matrix on
a local process pool, or on a Ray cluster (``ray_address``; ``"local"`` starts one here), with
the same rows either way. Methods are any spec of the decider registry
(``baselines.deciders``: ``mwkr``, ``spt@giffler_thompson``, ``random:128``, ``cpsat:10:hint``,
and whatever installed packages register).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import instances
from experiments.provenance import git_commit, package_versions
from sched_env.parallel import MapInterrupted, map_tasks

COLUMNS = (
    "instance", "size", "group", "method", "params", "seed", "makespan", "best_known", "gap", "lower_bound",
    "status", "wall_time_s", "published", "commit", "versions",
)  # fmt: skip
#: Published columns shown beside ours, with their labels (``instances.published``).
PUBLISHED_LABELS = {
    "cpsat_900s_8workers": "CP-SAT 900 s, 8 workers (published)",
    "cpoptimizer_900s_8workers": "CP Optimizer 900 s, 8 workers (published)",
    "ortools_1800s": "OR-Tools 1800 s (published)",
    "FIFO": "FIFO + EET (published)",
    "MOR": "MOR + EET (published)",
    "MWKR": "MWKR + EET (published)",
    "SPT": "SPT + EET (published)",
}


def group_of(name: str, size: str) -> str:
    """The group a row is reported in: its size, or for a flexible family other than sd1 the family."""
    family = instances.family_of(name)
    flexible = family in instances.catalogue.FLEXIBLE_FAMILIES and family != "sd1"
    return family if flexible else (f"sd1 {size}" if family == "sd1" else size)


def published_label(key: str) -> str:
    """'DANIELG+10x5' -> 'DANIEL greedy, trained on 10x5 (published)'; the fixed labels above."""
    for prefix, what in (("DANIELG+", "DANIEL greedy"), ("DANIELS+", "DANIEL best of 100"),
                         ("DRLG+", "HGNN greedy"), ("DRLS+", "HGNN best of 100")):  # fmt: skip
        if key.startswith(prefix):
            return f"{what}, trained on {key[len(prefix) :]} (published)"
    return PUBLISHED_LABELS.get(key, key)


@functools.lru_cache(maxsize=1)
def provenance() -> tuple[str, str]:
    """(commit, versions JSON) of this checkout, computed once per process."""
    versions = package_versions(("sched-env", "numba", "numpy", "ortools"))
    return git_commit(), json.dumps(versions, sort_keys=True)


@functools.lru_cache(maxsize=1)
def _warm() -> None:
    """Load the compiled kernels once per process, so no row's time includes compilation."""
    import sched_env

    sched_env.warm_up()


def run(name: str, method: str, seed: int = 0, instance_dir: str | None = None, workers: int = 2) -> dict[str, Any]:
    """One benchmark row: solve ``name`` with ``method`` and describe the result."""
    from baselines import deciders

    _warm()
    instance = instances.load(name, directory=instance_dir)
    result = deciders.solve(instance, method, seed=seed, workers=workers)
    best = instances.best_known(instance.name)
    gap = result.gap_to(best)
    commit, versions = provenance()
    size = f"{instance.n_jobs}x{instance.n_machines}"
    published = {k: v for k, v in instances.published(instance.name).items() if not k.endswith("lower_bound")}
    return {
        "instance": instance.name,
        "size": size,
        "group": group_of(instance.name, size),
        "method": method,
        "params": json.dumps(result.params, sort_keys=True),
        "seed": seed,
        "makespan": result.objective,
        "best_known": best,
        "gap": None if gap is None else round(gap, 6),
        "lower_bound": result.lower_bound,
        "status": result.status,
        "wall_time_s": round(result.wall_time_s, 4),
        "published": json.dumps(published, sort_keys=True) if published else "",
        "commit": commit,
        "versions": versions,
    }


def run_matrix(
    names: Sequence[str],
    methods: Sequence[str],
    *,
    seeds: Iterable[int] = (0,),
    parallel: int = 1,
    ray_address: str | None = None,
    instance_dir: str | None = None,
    workers: int = 2,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """All rows of the matrix, sorted by (instance, method, seed). Ctrl-C raises
    :class:`~sched_env.parallel.MapInterrupted` with the rows completed so far."""
    from baselines import deciders

    for method in methods:
        deciders.make(method, workers=workers)  # fail before starting anything
    for name in names:
        instances.load(name, directory=instance_dir)
    tasks = [(n, m, s, instance_dir, workers) for n in names for m in methods for s in seeds]
    bar = progress_bar(len(tasks), show_progress)
    order = {(n, m): i for i, (n, m) in enumerate((n, m) for n in names for m in methods)}

    def ranked(rows: list[dict]) -> list[dict]:
        return sorted(rows, key=lambda r: (order[r["instance"], r["method"]], r["seed"]))

    try:
        rows = map_tasks(run, tasks, parallel=parallel, ray_address=ray_address, progress=bar.update)
    except MapInterrupted as stop:  # Ctrl-C: the completed runs, in order, for the caller to write
        raise MapInterrupted(ranked(stop.results)) from None
    finally:
        bar.close()
    return ranked(rows)


class _PlainProgress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled, self.started = total, 0, enabled, time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled:
            print(f"\r{self.done}/{self.total} runs, {time.perf_counter() - self.started:.0f} s", end="", flush=True)

    def close(self) -> None:
        if self.enabled:
            print()


def progress_bar(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, enabled)
    return tqdm(total=total, unit="run", disable=not enabled)


# ---------------------------------------------------------------------- outputs
def write_csv(rows: Sequence[dict], path: Path, columns: Sequence[str] = COLUMNS) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _group_key(group: str) -> tuple:
    """Sizes in size order, then the families by name."""
    size = group.removeprefix("sd1 ")
    if all(part.isdigit() for part in size.split("x")):
        return (group.startswith("sd1"), tuple(int(x) for x in size.split("x")), "")
    return (True, (), group)


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per (group, method): runs, mean/min/max gap, runs without a schedule, mean wall time; a
    group is a size, or a flexible family (see :func:`group_of`)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("group") or row["size"], row["method"]), []).append(row)
    sizes = sorted({g for g, _ in groups}, key=_group_key)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = []
    for size in sizes:
        for method in methods:
            group = groups.get((size, method))
            if not group:
                continue
            gaps = [r["gap"] for r in group if r["gap"] not in (None, "")]
            summary.append(
                {
                    "size": size,
                    "group": size,
                    "method": method,
                    "runs": len(group),
                    "no_schedule": sum(r["makespan"] in (None, "") for r in group),
                    "mean_gap": float(np.mean(gaps)) if gaps else None,
                    "min_gap": float(np.min(gaps)) if gaps else None,
                    "max_gap": float(np.max(gaps)) if gaps else None,
                    "optimal": sum(r["status"] == "optimal" for r in group),
                    "mean_time_s": float(np.mean([float(r["wall_time_s"]) for r in group])),
                }
            )
    return summary


def markdown_report(rows: Sequence[dict], title: str, command: str, wall_s: float | None = None) -> str:
    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f} %"

    commit = rows[0]["commit"] if rows else "unknown"
    took = f" in {wall_s:.0f} s (the whole matrix, every plan validated)" if wall_s is not None else ""
    lines = [
        f"# {title}",
        "",
        f"Commit `{commit}`; {len(rows)} runs{took}. Regenerate: `{command}`.",
        "Gap = makespan / best-known upper bound - 1 (`instances/data/bounds.csv`; flexible families"
        " `fjsp_bounds.csv`, where sd1's reference is OR-Tools' 1800 s makespan). Groups: sizes, or flexible families.",
        "",
        "| group | method | runs | mean gap | min gap | max gap | proven optimal | no schedule | mean time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summarise(rows):
        lines.append(
            f"| {s['size']} | {s['method']} | {s['runs']} | {pct(s['mean_gap'])} | {pct(s['min_gap'])}"
            f" | {pct(s['max_gap'])} | {s['optimal']} | {s['no_schedule']} | {s['mean_time_s']:.3f} s |"
        )
    published = published_summary(rows)
    if published:
        lines += [
            "",
            "Published results on the same instances (same gap definition; `instances/data/fjsp_bounds.csv`,"
            " `sd1_results.csv`):",
            "",
            "| group | published method | instances | mean gap |",
            "|---|---|---:|---:|",
        ]
        lines += [f"| {p['group']} | {p['method']} | {p['runs']} | {pct(p['mean_gap'])} |" for p in published]
    return "\n".join(lines) + "\n"


def published_summary(rows: Sequence[dict]) -> list[dict]:
    """Per group, the mean gap of every published column that every instance of the group has."""
    per_group: dict[str, dict[str, tuple[float, float]]] = {}
    for row in rows:
        if not row.get("published") or not row.get("best_known"):
            continue
        group = per_group.setdefault(row.get("group") or row["size"], {})
        group[row["instance"]] = (float(row["best_known"]), json.loads(row["published"]))
    summary = []
    for group in sorted(per_group, key=_group_key):
        values = per_group[group]
        keys = set.intersection(*(set(v[1]) for v in values.values()))
        for key in sorted(
            keys,
            key=lambda k: (
                k not in PUBLISHED_LABELS,
                list(PUBLISHED_LABELS).index(k) if k in PUBLISHED_LABELS else 0,
                k,
            ),
        ):
            gaps = [published[key] / best - 1 for best, published in values.values()]
            summary.append(
                {"group": group, "method": published_label(key), "runs": len(gaps), "mean_gap": float(np.mean(gaps))}
            )
    return summary


def chart(rows: Sequence[dict], path: Path, title: str) -> Path | None:
    """Grouped bars: mean gap per size group and method (None if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    summary = summarise(rows)
    sizes = list(dict.fromkeys(s["size"] for s in summary))
    methods = list(dict.fromkeys(s["method"] for s in summary))
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(sizes) * max(1, len(methods) / 3)), 4.5), dpi=110)
    for i, method in enumerate(methods):
        values = [
            next(
                (
                    100 * s["mean_gap"]
                    for s in summary
                    if s["size"] == size and s["method"] == method and s["mean_gap"] is not None
                ),
                np.nan,
            )
            for size in sizes
        ]
        ax.bar(np.arange(len(sizes)) + (i - (len(methods) - 1) / 2) * width, values, width, label=method)
    ax.set_xticks(np.arange(len(sizes)))
    ax.set_xticklabels(sizes)
    ax.set_xlabel("instance size (jobs x machines)")
    ax.set_ylabel("mean gap to best known (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(
    rows: Sequence[dict], out: Path, name: str, title: str, command: str, wall_s: float | None = None
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(rows, out / f"{name}.csv")]
    (out / f"{name}.md").write_text(markdown_report(rows, title, command, wall_s))
    paths.append(out / f"{name}.md")
    png = chart(rows, out / f"{name}.png", title)
    if png is not None:
        paths.append(png)
    return paths


def default_parallel() -> int:
    return max(1, (os.cpu_count() or 2) // 2)
