"""The standard dynamic simulation benchmark: ``sched-env bench --dynamic standard``.

Every method runs every (setting, test seed) stream through the decider door
(``baselines.deciders.dispatch_online``): the rules of the portfolio and the learned dispatcher
decide at every epoch. The best rule of each setting is chosen on validation seeds (never on
the test seeds) and every method is reported as a ratio to it, with a paired 95 % interval over
the test seeds. Outputs: ``NAME.csv`` (one row per setting, seed, method), ``NAME.md`` (a table
per setting) and ``NAME.png`` (ratio to the best rule, methods x settings).

    sched-env bench --dynamic standard                                   # 8 settings x 50 seeds
    sched-env bench --dynamic standard --settings missing-0.80-3 --seeds 10 --methods atc,policy
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from baselines import deciders
from experiments.benchmark import write_csv
from experiments.provenance import git_commit, machine_description
from sched_env._names import RULES
from sched_env.parallel import MapInterrupted
from sched_env.standard import DEFAULT_WINDOW, STANDARD_SETTINGS, StandardSetting, recorded_metrics
from sched_env.standard import setting as setting_of

PORTFOLIO = ("atc", "covert", "pt+winq", "2pt+winq+npt", "wspt", "cr", "slack/opn", "edd", "spt", "fifo", "mwkr")
METRICS = ("weighted_tardiness_mean", "tardiness_mean", "flow_mean", "flow_max", "tardy_share", "utilisation")
COLUMNS = ("setting", "seed", "purpose", "method", *METRICS, "wall_time_s", "max_queued", "steady_to_end")
SEED_CHUNK = 5  # streams per task: one decider call runs them together


def portfolio(name: str) -> tuple[str, ...]:
    """The rules a setting's best rule is chosen from: on a flexible shop each crossed with the machine rules."""
    if setting_of(name).flexible:
        from experiments.bench_dynamic import FLEXIBLE_MACHINE_RULES

        return tuple(f"{rule}+{machine}" for rule in PORTFOLIO for machine in FLEXIBLE_MACHINE_RULES)
    return PORTFOLIO


def run_cell(setting_name: str, method: str, seeds: Sequence[int], purpose: str, window: int) -> list[dict[str, Any]]:
    """Rows of one method on some streams of one setting (a module-level function: pools and Ray run it)."""
    shop = setting_of(setting_name)
    scenarios = [shop.scenario(seed, purpose) for seed in seeds]
    decider = deciders.make(method, allow_files=True, objective="total_weighted_tardiness")
    started = time.perf_counter()
    if deciders.traits(decider).dispatches:  # decides at every epoch
        results = deciders.dispatch_online(decider, scenarios, window=window)
    else:  # a planner: replans the shop at every event, its plan carried out in sequence
        results = [replanned(decider, scenario, window) for scenario in scenarios]
    per_stream = (time.perf_counter() - started) / len(scenarios)
    rows = []
    for seed, scenario, result in zip(seeds, scenarios, results):
        jobs = scenario.jobs
        metrics = recorded_metrics(shop, scenario, result.schedule.start_matrix(jobs), result.schedule.end_matrix(jobs))
        rows.append({"setting": shop.name, "seed": seed, "purpose": purpose, "method": method, **metrics,
                     "wall_time_s": round(per_stream, 3), "max_queued": result.params.get("max_queued", 0)})  # fmt: skip
    return rows


def replanned(decider, scenario, window: int):
    """One stream run by a planner (``baselines.replan.Replanner``, sequence execution)."""
    from baselines.replan import Replanner
    from sched_env.dynamic import DynamicJobShopEnv

    return Replanner(decider, execution="sequence").run(DynamicJobShopEnv(scenario, max_jobs=window, allow_wait=True))


def run_table(settings: Sequence[str], methods: Sequence[str], seeds: int, validation_seeds: int, *,
              parallel: int = 2, ray_address: str | None = None, window: int = DEFAULT_WINDOW,
              progress=None) -> list[dict[str, Any]]:  # fmt: skip
    """The portfolio on the validation seeds (which picks each setting's best rule), then every
    method, and each setting's best rule, on the test seeds: one row per (setting, seed, method)."""
    from sched_env.parallel import TaskPool

    def cells(pairs, purpose, count):
        tasks = [(name, method, list(range(first, min(count, first + SEED_CHUNK))), purpose, window)
                 for name, method in pairs for first in range(0, count, SEED_CHUNK)]  # fmt: skip
        return sorted(tasks, key=lambda t: not t[1].startswith("policy"))  # the slow cells first

    validation: list[dict[str, Any]] = []
    try:
        with TaskPool(parallel=parallel, ray_address=ray_address) as pool:
            validation = [r for chunk in pool.map(run_cell, cells([(n, m) for n in settings for m in portfolio(n)],
                                                                  "validation", validation_seeds), progress)
                          for r in chunk]  # fmt: skip
            best = best_rules(validation)
            pairs = [(n, m) for n in settings for m in dict.fromkeys([*methods, best[setting_of(n).name]])]
            test = [r for chunk in pool.map(run_cell, cells(pairs, "test", seeds), progress) for r in chunk]
    except MapInterrupted as stop:  # Ctrl-C: every row completed so far
        raise MapInterrupted(validation + [r for chunk in stop.results for r in chunk]) from None
    return validation + test


# ---------------------------------------------------------------------- statistics
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 15: 2.13,
         20: 2.09, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}  # fmt: skip


def t975(df: int) -> float:
    """Student's t 97.5 % quantile (interpolated table; 1.96 beyond 120 degrees of freedom)."""
    if df < 1:
        return math.nan
    keys = sorted(_T975)
    for low, high in zip(keys, keys[1:]):
        if low <= df <= high:
            return _T975[low] + (_T975[high] - _T975[low]) * (df - low) / (high - low)
    return 1.96


def mean_interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval."""
    n = len(values)
    half = t975(n - 1) * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return float(values.mean()), half


def best_rules(rows: Sequence[dict]) -> dict[str, str]:
    """Per setting, the portfolio rule with the lowest mean weighted tardiness on the validation seeds."""
    best = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        means = {}
        for rule in dict.fromkeys(
            r["method"] for r in rows if r["setting"] == setting and r["purpose"] == "validation"
        ):
            values = [r["weighted_tardiness_mean"] for r in rows
                      if r["setting"] == setting and r["purpose"] == "validation" and r["method"] == rule]  # fmt: skip
            if values:
                means[rule] = float(np.mean(values))
        if means:
            best[setting] = min(means, key=means.get)
    return best


def summarise(rows: Sequence[dict]) -> list[dict[str, Any]]:
    """One summary per (setting, method) on the test seeds: means with intervals, and the ratio of
    mean weighted tardiness to the setting's best rule with its paired 95 % interval."""
    best = best_rules(rows)
    test = [r for r in rows if r["purpose"] == "test"]
    out = []
    for setting in dict.fromkeys(r["setting"] for r in test):
        by_method: dict[str, dict[int, dict]] = {}
        for r in test:
            if r["setting"] == setting:
                by_method.setdefault(r["method"], {})[r["seed"]] = r
        reference = by_method.get(best.get(setting, ""), {})
        for method, seeds in by_method.items():
            summary: dict[str, Any] = {"setting": setting, "method": method, "seeds": len(seeds),
                                       "best_rule": best.get(setting)}  # fmt: skip
            for metric in METRICS + ("wall_time_s",):
                summary[metric], summary[metric + "_ci"] = mean_interval(np.array([r[metric] for r in seeds.values()]))
            paired = sorted(set(seeds) & set(reference))
            if paired:
                ours = np.array([seeds[s]["weighted_tardiness_mean"] for s in paired])
                theirs = np.array([reference[s]["weighted_tardiness_mean"] for s in paired])
                difference, half = mean_interval(ours - theirs)
                base = float(theirs.mean())
                summary["ratio"] = float(ours.mean()) / base if base else math.nan
                summary["ratio_low"] = 1 + (difference - half) / base if base else math.nan
                summary["ratio_high"] = 1 + (difference + half) / base if base else math.nan
            summary["max_queued"] = max(r["max_queued"] for r in seeds.values())
            out.append(summary)
    return out


def geometric_mean_ratios(summaries: Sequence[dict], method: str) -> float:
    ratios = [s["ratio"] for s in summaries if s["method"] == method and math.isfinite(s.get("ratio", math.nan))]
    # a setting whose best rule is never late has no ratio (0 / 0): it is left out, and the table says so
    return float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan


# ---------------------------------------------------------------------- reports
def _ratio_cell(summary: dict | None) -> str:
    if summary is None or "ratio" not in summary:
        return ""
    if not math.isfinite(summary["ratio"]):
        return "n/a (best rule never late)"
    return f"{summary['ratio']:.3f}"


def _describe(method: str) -> str:
    rule = method.split("@")[0].lower()
    return f"{method} ({RULES[rule]})" if rule in RULES else method


def markdown_report(rows: Sequence[dict], command: str, wall_s: float) -> str:
    summaries = summarise(rows)
    best = best_rules(rows)
    seeds = max((s["seeds"] for s in summaries), default=0)
    lines = [
        "# The standard dynamic simulation", "",
        f"Command: `{command}`  ", f"Commit: {git_commit()}, machine: {machine_description()['cpu']}"
        f" ({machine_description()['cores']} cores); wall time {wall_s / 60:.1f} min.", "",
        f"{seeds} test seeds per setting; the best rule of each setting was chosen on the validation seeds"
        " (mean weighted tardiness). Ratio: mean weighted tardiness / the best rule's, with the paired 95 %"
        " interval over the test seeds. Means with 95 % confidence intervals; the best of each column in bold."
        " Settings and recorded window: `sched_env/standard.py` (1 000 warm-up jobs, the next 5 000"
        " recorded).", "",
    ]  # fmt: skip
    methods = list(dict.fromkeys(s["method"] for s in summaries))
    lines += ["## Summary: ratio to the best rule", "", "| setting | best rule | " + " | ".join(methods) + " |",
              "|---|---|" + "---|" * len(methods)]  # fmt: skip
    for setting in dict.fromkeys(s["setting"] for s in summaries):
        cells = {s["method"]: s for s in summaries if s["setting"] == setting}
        lines.append(f"| {setting} | {best.get(setting, '?')} | "
                     + " | ".join(_ratio_cell(cells.get(m)) for m in methods)
                     + " |")  # fmt: skip
    lines.append(
        "| **geometric mean** | | " + " | ".join(f"{geometric_mean_ratios(summaries, m):.3f}" for m in methods) + " |"
    )
    for setting in dict.fromkeys(s["setting"] for s in summaries):
        lines += _setting_table(setting, [s for s in summaries if s["setting"] == setting], best.get(setting))
    lines += ["", "## Rules and their parameters", ""]
    lines += [f"- `{rule}`: {RULES[rule]}" for rule in PORTFOLIO]
    lines += ["", "Slack = due - now - planned work left (this operation included); p = the next operation's"
              " planned duration; ties go to the first-arrived job; dispatching is non-delay.", ""]  # fmt: skip
    return "\n".join(lines)


def _setting_table(setting: str, summaries: list[dict], best: str | None) -> list[str]:
    columns = ("ratio",) + METRICS + ("wall_time_s",)
    lows = {c: min((s.get(c, math.inf) for s in summaries), default=math.nan) for c in columns}
    lows["utilisation"] = math.nan  # not a quality figure
    lines = ["", f"## {setting} (best rule on validation: {best})", "",
             "| method | ratio to best rule [95 % CI] | WT mean | T mean | flow mean | flow max | % tardy | utilisation | s per stream |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in sorted(summaries, key=lambda s: s.get("ratio", math.inf)):

        def cell(c, fmt, s=s):
            text = fmt.format(s[c]) + (f" ± {fmt.format(s[c + '_ci'])}" if c + "_ci" in s and c != "flow_max" else "")
            return f"**{text}**" if s.get(c) == lows[c] else text

        ratio = f"{s['ratio']:.3f} [{s['ratio_low']:.3f}, {s['ratio_high']:.3f}]" if "ratio" in s else ""
        ratio = f"**{ratio}**" if s.get("ratio") == lows["ratio"] else ratio
        lines.append(
            f"| {_describe(s['method'])} | {ratio} | {cell('weighted_tardiness_mean', '{:.1f}')} | {cell('tardiness_mean', '{:.1f}')}"
            f" | {cell('flow_mean', '{:.0f}')} | {cell('flow_max', '{:.0f}')} | {100 * s['tardy_share']:.1f} %"
            f" | {s['utilisation']:.3f} | {s['wall_time_s']:.2f} |"
        )  # fmt: skip
    return lines


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``standard.csv`` with their numbers back (to redraw or re-summarise a run)."""
    import csv

    with Path(path).open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["seed"], row["max_queued"] = int(row["seed"]), int(row["max_queued"])
        for key in METRICS + ("wall_time_s",):
            row[key] = float(row[key])
    return rows


def _ratio_ticks(ax, values: list[float]) -> None:
    """Readable ticks on a log axis of ratios near 1 (matplotlib would label only 10^0)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    finite = [v for v in values if v > 0 and math.isfinite(v)] or [1.0]
    candidates = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100]
    low, high = min(finite), max(finite)
    ticks = [t for t in candidates if low / 1.1 <= t <= high * 1.1] or [1.0]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def chart(rows: Sequence[dict], path: Path) -> Path | None:
    """Ratio to the best rule per setting (x) and method (markers), with the paired intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    summaries = [s for s in summarise(rows) if "ratio" in s]
    settings = list(dict.fromkeys(s["setting"] for s in summaries))
    methods = list(dict.fromkeys(s["method"] for s in summaries))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(settings)), 5))
    width = 0.8 / max(1, len(methods))
    colours = plt.get_cmap("tab20").colors
    for i, method in enumerate(methods):
        xs, ys, low, high = [], [], [], []
        for x, setting in enumerate(settings):
            for s in summaries:
                if s["setting"] == setting and s["method"] == method:
                    xs.append(x - 0.4 + (i + 0.5) * width)
                    ys.append(s["ratio"])
                    low.append(s["ratio"] - s["ratio_low"])
                    high.append(s["ratio_high"] - s["ratio"])
        learned = method.startswith("policy")
        ax.errorbar(xs, ys, yerr=[low, high], fmt="*" if learned else "o", ms=7 if learned else 4, capsize=2,
                    color=colours[(2 * i) % 20 + (i // 10) % 2], label=method)  # fmt: skip
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean weighted tardiness / best rule's")
    ax.set_yscale("log")
    _ratio_ticks(ax, [v for s in summaries for v in (s["ratio_low"], s["ratio_high"])])
    ax.set_title("Standard dynamic simulation: ratio to the best rule (paired 95 % intervals)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(rows: Sequence[dict], out: Path, name: str, command: str, wall_s: float) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(rows, out / f"{name}.csv", COLUMNS)]
    (out / f"{name}.md").write_text(markdown_report(rows, command, wall_s))
    paths.append(out / f"{name}.md")
    picture = chart(rows, out / f"{name}.png")
    return paths + ([picture] if picture else [])


def main(args) -> int:
    """``sched-env bench --dynamic standard`` (arguments parsed by the CLI)."""
    import shlex
    import sys

    settings = [
        s if s.startswith("shop:") else StandardSetting.parse(s).name
        for s in (args.settings.split(",") if args.settings else STANDARD_SETTINGS)
    ]
    methods = [m for m in (args.methods or ",".join(PORTFOLIO) + ",policy").split(",") if m]
    policy = getattr(args, "policy", "dynamic")
    if policy == "none":
        methods = [m for m in methods if m != "policy"]
    elif policy != "dynamic":  # --policy FILE: the policy rows use that model
        if not Path(policy).is_file():
            raise ValueError(f"--policy {policy}: no such model file")
        methods = [f"policy@{policy}" if m == "policy" else m for m in methods]
    for method in methods:  # refuse a bad spec now, not in a worker an hour later
        deciders.make(method, allow_files=True)
    seeds = args.seeds or 50
    started = time.perf_counter()
    from experiments.benchmark import progress_bar

    total = sum(math.ceil(args.validation_seeds / SEED_CHUNK) * len(portfolio(n)) + math.ceil(seeds / SEED_CHUNK)
                * len(methods) for n in settings)  # fmt: skip
    bar = progress_bar(total, not args.quiet)
    try:
        rows = run_table(settings, methods, seeds, args.validation_seeds, parallel=args.parallel,
                         ray_address=args.ray, progress=bar.update)  # fmt: skip
    except MapInterrupted as stop:
        bar.close()
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(stop.results, out / f"{args.name}_interrupted.csv", COLUMNS)
        print(f"interrupted: the {len(stop.results)} runs completed are in {out / f'{args.name}_interrupted.csv'}")
        return 130
    bar.close()
    wall = time.perf_counter() - started
    command = (
        "sched-env " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "sched-env bench --dynamic standard"
    )
    paths = write_outputs(rows, Path(args.out), args.name, command, wall)
    print((Path(args.out) / f"{args.name}.md").read_text().split("\n## ", 2)[1])
    print(f"{len(rows)} runs in {wall / 60:.1f} min; wrote " + ", ".join(str(p) for p in paths))
    return 0
