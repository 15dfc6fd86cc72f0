"""``sched-env fit-shop``: estimate a shop's stream generator (a :class:`~sched_env.shop_spec.ShopSpec`)
from what the service recorded of it.

From one shop session's event log (the SQLite database of ``sched-env serve``):

* arrivals: a Poisson process whose mean gap is the observed span over the number of gaps (its
  maximum-likelihood estimate); the report gives the gaps' coefficient of variation (1 for a
  Poisson process) so a user sees when that model is wrong;
* routings: every distinct routing (equipment options and planned durations per operation) with
  its share of the released orders: a shop with a catalogue of products gets its templates, a
  shop where every order differs gets its orders resampled;
* durations: per equipment, the quantiles of real / planned duration of the operations it ran
  (real = finish - start minus the time the equipment was down in between);
* breakdowns: per equipment, the mean repair time over the repairs seen, and the mean time
  between failures = the observed up-time / the breakdowns (the exponential model's estimate,
  with a breakdown still open at the end counted);
* due dates: the quantiles of (due - release) / planned work; priorities: their shares.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from instances import SchedEnvError
from sched_env.shop_spec import ShopSpec, Template, quantiles_of

#: Allowance written when no order has a due date (never late: tardiness is then always 0).
NO_DUE_ALLOWANCE = 1000.0


def fit_history(history, *, warmup: int = 300, recorded: int = 1500) -> tuple[ShopSpec, dict[str, Any]]:
    """A :class:`ShopSpec` of a :class:`~service.history.ShopHistory`, and what was estimated from what."""
    orders = history.orders
    released = sorted(o.release for o in orders)
    if len(released) < 3:
        raise SchedEnvError(f"shop {history.shop!r}: {len(released)} work orders in its log; fitting needs at least 3")
    gaps = np.diff(released)
    span = released[-1] - released[0]
    if span <= 0:
        raise SchedEnvError(f"shop {history.shop!r}: every work order was released at once; no arrival rate to fit")
    mean_gap = span / (len(released) - 1)
    index = {e: m for m, e in enumerate(history.equipment)}
    routings = Counter(tuple(tuple((index[e], int(d)) for e, d in op.options) for op in o.operations) for o in orders)
    templates = tuple(Template(ops, count / len(orders)) for ops, count in routings.most_common())
    ratios: dict[str, list[float]] = {e: [] for e in history.equipment}
    for order in orders:
        for op in order.operations:
            if op.end is not None and op.equipment is not None:
                planned = dict(op.options)[op.equipment]
                ratios[op.equipment].append(history.real_duration(op) / planned)
    noise = tuple(tuple(quantiles_of(ratios[e])) if ratios[e] else (1.0, 1.0) for e in history.equipment)
    observed = history.end_time - history.start_time
    mtbf, mttr, breakdowns = [], [], {}
    for e in history.equipment:
        spans = history.downtimes[e]
        repairs = [back - down for down, back in spans if back is not None]
        down_time = history.down_overlap(e, history.start_time, history.end_time)
        if spans and repairs:
            mtbf.append(round((observed - down_time) / len(spans), 2))
            mttr.append(round(float(np.mean(repairs)), 2))
        else:
            mtbf.append(0.0)
            mttr.append(0.0)
        breakdowns[e] = {"breakdowns": len(spans), "repairs_seen": len(repairs), "mtbf": mtbf[-1], "mttr": mttr[-1]}
    dated = [o for o in orders if o.due is not None]
    allowance = (quantiles_of([(o.due - o.release) / max(o.planned_work, 1e-9) for o in dated]) if dated
                 else [NO_DUE_ALLOWANCE, NO_DUE_ALLOWANCE])  # fmt: skip
    allowance = [max(0.0, a) for a in allowance]
    priorities = Counter(o.priority for o in orders)
    spec = ShopSpec(
        equipment=tuple(history.equipment), mean_interarrival=round(mean_gap, 4), templates=templates, noise=noise,
        mtbf=tuple(mtbf), mttr=tuple(mttr), allowance=tuple(allowance),
        priorities={w: round(c / len(orders), 4) for w, c in sorted(priorities.items())},
        label=history.shop, warmup=warmup, recorded=recorded,
    )  # fmt: skip
    report = {
        "shop": history.shop, "events": history.n_events, "events_by_type": dict(history.counts),
        "period": [history.start_time, history.end_time], "work_orders": len(orders),
        "arrivals": {"orders": len(released), "mean_interarrival": round(mean_gap, 3), "rate": round(1 / mean_gap, 6),
                     "rate_95ci": [round(r / mean_gap, 6) for r in _poisson_ci(len(released) - 1)],
                     "gap_cv": round(float(gaps.std() / max(gaps.mean(), 1e-9)), 3)},
        "routings": {"distinct": len(routings), "most_common_share": round(templates[0].share, 4)},
        "operations_timed": {e: len(v) for e, v in ratios.items()},
        "noise_mean": {e: round(float(np.mean(v)), 4) for e, v in ratios.items() if v},
        "breakdowns": breakdowns, "due_dates": len(dated),
        "utilisation": round(spec.utilisation, 4),
    }  # fmt: skip
    return spec, report


def _poisson_ci(n: int) -> tuple[float, float]:
    """Approximate 95 % interval of a rate estimated from ``n`` exponential gaps, as factors."""
    half = 1.96 / math.sqrt(max(n, 1))
    return (max(0.0, 1 - half), 1 + half)


def report_markdown(report: dict[str, Any], spec_path: str | Path) -> str:
    a, lines = report["arrivals"], []
    lines.append(f"# Shop {report['shop']}: fitted from {report['events']:,} events")
    lines.append("")
    lines.append(f"Spec: `{spec_path}`. Period {report['period'][0]}..{report['period'][1]};"
                 f" {report['work_orders']:,} work orders; events by type: "
                 + ", ".join(f"{k} {v:,}" for k, v in report["events_by_type"].items() if v))  # fmt: skip
    lines.append("")
    lines.append(f"- arrivals: Poisson, mean gap {a['mean_interarrival']} (rate {a['rate']:.6f}, 95 % interval"
                 f" {a['rate_95ci'][0]:.6f}..{a['rate_95ci'][1]:.6f}) from {a['orders']:,} releases; gaps' CV"
                 f" {a['gap_cv']} (a Poisson process has 1)")  # fmt: skip
    r = report["routings"]
    lines.append(f"- routings: {r['distinct']:,} distinct (the most common is {100 * r['most_common_share']:.1f} %"
                 " of the orders)")  # fmt: skip
    lines.append(f"- planned utilisation of the fitted stream: {report['utilisation']:.3f}")
    lines.append(f"- due dates: {report['due_dates']:,} of {report['work_orders']:,} orders have one")
    lines.append("")
    lines.append("| equipment | operations timed | real / planned (mean) | breakdowns | repairs seen | MTBF | MTTR |")
    lines.append("|---|---|---|---|---|---|---|")
    for e, b in report["breakdowns"].items():
        noise = report["noise_mean"].get(e)
        lines.append(f"| {e} | {report['operations_timed'][e]:,} | {'-' if noise is None else noise} |"
                     f" {b['breakdowns']} | {b['repairs_seen']} | {b['mtbf'] or '-'} | {b['mttr'] or '-'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def fit_shop(db: str | Path, shop: str, out: str | Path, *, warmup: int = 300, recorded: int = 1500) -> dict:
    """Read shop ``shop`` of database ``db``, write the spec to ``out`` and its report beside it
    (``.md``); returns the report."""
    from service.history import read_history

    spec, report = fit_history(read_history(db, shop), warmup=warmup, recorded=recorded)
    out = Path(out)
    spec.save(out)
    out.with_suffix(".md").write_text(report_markdown(report, out))
    return report
