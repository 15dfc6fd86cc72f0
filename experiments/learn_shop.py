"""A shop with known parameters, run through the service, to check ``sched-env fit-shop`` against
the truth (the "learn your own shop" loop of the README, on a shop whose answers are known).

``record`` draws a history of the true shop (:func:`true_shop`: 8 machines, 10 products, noisy
durations, breakdowns on four machines, Poisson orders with the bottleneck at 90 % load),
dispatches it with the shop's practice (a rule), and sends every event (orders released,
operations started and finished, breakdowns and repairs) to a ``sched-env serve`` on localhost
in batches, as an MES would; the service's event log then holds the history. ``compare`` sets a
fitted spec beside the truth.

    python -m experiments.learn_shop record --db shop.sqlite3 --truth true_shop.json
    sched-env fit-shop --db shop.sqlite3 --shop press-shop --out my_shop.json
    python -m experiments.learn_shop compare --truth true_shop.json --fitted my_shop.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments.provenance import git_commit, machine_description
from sched_env.shop_spec import ShopSpec, Template

RESULTS = Path(__file__).resolve().parent / "results"
EQUIPMENT = ("saw", "lathe", "mill", "drill", "heat", "grind", "paint", "inspect")
NOISE = ((0.95, 1.1), (0.85, 1.35), (0.9, 1.25), (0.95, 1.05), (1.0, 1.5), (0.8, 1.3), (0.9, 1.2), (0.7, 1.4))
BREAKDOWNS = {"lathe": (800.0, 40.0), "mill": (1200.0, 90.0), "heat": (2000.0, 150.0), "grind": (500.0, 20.0)}
BOTTLENECK_LOAD = 0.90


def true_shop(label: str = "true-shop") -> ShopSpec:
    """The shop with known parameters (deterministic)."""
    rng = np.random.default_rng(2026)
    M = len(EQUIPMENT)
    templates = []
    for rank in range(10):
        route = rng.permutation(M)[: int(rng.integers(2, 7))]
        templates.append(Template(tuple(((int(m), int(rng.integers(5, 61))),) for m in route), 1.0 / (rank + 1)))
    mtbf = tuple(BREAKDOWNS.get(e, (0.0, 0.0))[0] for e in EQUIPMENT)
    mttr = tuple(BREAKDOWNS.get(e, (0.0, 0.0))[1] for e in EQUIPMENT)
    total = sum(t.share for t in templates)
    load = np.zeros(M)  # expected busy time per machine per order, with noise and downtime
    for t in templates:
        for ((m, d),) in t.operations:
            up = 1.0 if mtbf[m] == 0 else mtbf[m] / (mtbf[m] + mttr[m])
            load[m] += t.share / total * d * np.mean(NOISE[m]) / up
    return ShopSpec(
        equipment=EQUIPMENT, mean_interarrival=round(float(load.max() / BOTTLENECK_LOAD), 3), templates=tuple(templates),
        noise=NOISE, mtbf=mtbf, mttr=mttr, allowance=(1.5, 4.0), priorities={1: 0.5, 2: 0.3, 4: 0.2}, label=label,
    )  # fmt: skip


def history_events(spec: ShopSpec, scenario, schedule) -> list[dict]:
    """The events an MES would send for this run of the shop, in time order."""
    jobs = scenario.jobs
    rows = []  # (time, rank, event): at one time repairs, then ends, breakdowns, releases, starts
    for j in range(jobs.n_jobs):
        ops = [_operation(spec, jobs.alternatives(j, k), k) for k in range(int(jobs.n_ops[j]))]
        order = {"id": f"WO{j}", "release": int(jobs.release_dates[j]), "due": int(jobs.due_dates[j]),
                 "priority": int(jobs.weights[j]), "operations": ops}  # fmt: skip
        rows.append(
            (order["release"], 3, {"type": "work_order_released", "time": order["release"], "work_order": order})
        )
    for j, k, m, s, e in zip(schedule.job, schedule.op, schedule.machine, schedule.start, schedule.end):
        where = {"work_order": f"WO{int(j)}", "operation": f"op{int(k)}", "equipment": spec.equipment[int(m)]}
        rows.append((int(s), 4, {"type": "operation_started", "time": int(s), **where}))
        rows.append((int(e), 1, {"type": "operation_finished", "time": int(e), **where}))
    last = int(schedule.end.max())
    for m, s, e, _ in scenario.downtimes.tolist():
        if s < last:
            rows.append((s, 2, {"type": "equipment_down", "time": s, "equipment": spec.equipment[m]}))
            rows.append((e, 0, {"type": "equipment_up", "time": e, "equipment": spec.equipment[m]}))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [{"event_id": f"e{n}", **event} for n, (_, _, event) in enumerate(rows)]


def _operation(spec: ShopSpec, options: list[tuple[int, int]], k: int) -> dict:
    if len(options) == 1:
        return {"id": f"op{k}", "equipment": spec.equipment[options[0][0]], "duration": options[0][1]}
    return {"id": f"op{k}", "alternatives": [{"equipment": spec.equipment[m], "duration": d} for m, d in options]}


def record(db: Path, *, jobs: int = 3000, seed: int = 0, practice: str = "fifo", batch: int = 500,
           label: str = "press-shop") -> dict:  # fmt: skip
    """Run the true shop for ``jobs`` orders (at least 201: a stream ends with 200 or more) dispatched
    by ``practice`` and log every event through a ``sched-env serve --db db`` on localhost. Returns
    what was sent."""
    import httpx

    from baselines import deciders
    from experiments.load_service import free_port, start_server

    spec = true_shop()
    recorded = next(
        (r for r in range(jobs, 0, -1) if spec.scaled(0, r).n_jobs <= jobs), 1
    )  # jobs in all (the tail too)
    scenario = spec.scaled(0, recorded).scenario(seed, "train")  # a history, never a test stream
    result = deciders.dispatch_online(deciders.make(practice), [scenario], window=scenario.jobs.n_jobs)[0]
    events = history_events(spec, scenario, result.schedule)
    port = free_port()
    server = start_server(port, 1, 64, "--db", str(db))
    started = time.perf_counter()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            body = {"name": label, "equipment": [{"id": e} for e in spec.equipment], "method": practice, "time": 0}
            answer = client.post("/v1/shops", json=body)
            answer.raise_for_status()
            shop_id = answer.json()["id"]
            for first in range(0, len(events), batch):
                _send(client, shop_id, events[first : first + batch])
    finally:
        server.terminate()
        server.wait(30)
    return {"shop": shop_id, "name": label, "events": len(events), "jobs": scenario.jobs.n_jobs,
            "practice": practice, "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def _send(client, shop_id: str, events: list[dict]) -> None:
    for _ in range(100):
        answer = client.post(f"/v1/shops/{shop_id}/events", json={"events": events})
        if answer.status_code == 429:
            time.sleep(float(answer.headers.get("Retry-After", 1)))
            continue
        if answer.status_code >= 400:
            raise RuntimeError(f"the service refused a batch ({answer.status_code}): {answer.text[:500]}")
        return
    raise RuntimeError("the service kept refusing a batch as over its rate")


def compare(truth: ShopSpec, fitted: ShopSpec) -> dict:
    """Fitted against true: the arrival rate, and per machine the breakdown rate and repair time."""
    rate_error = truth.mean_interarrival / fitted.mean_interarrival - 1
    machines = []
    for m, name in enumerate(truth.equipment):
        row = {"equipment": name, "true_mtbf": truth.mtbf[m], "fitted_mtbf": fitted.mtbf[m],
               "true_mttr": truth.mttr[m], "fitted_mttr": fitted.mttr[m],
               "true_noise_mean": round(float(np.mean(truth.noise[m])), 4),
               "fitted_noise_mean": round(float(np.mean(fitted.noise[m])), 4)}  # fmt: skip
        if truth.mtbf[m]:
            row["breakdown_rate_error"] = round(truth.mtbf[m] / fitted.mtbf[m] - 1, 4) if fitted.mtbf[m] else None
            row["repair_time_error"] = round(fitted.mttr[m] / truth.mttr[m] - 1, 4)
        machines.append(row)
    return {"arrival_rate_error": round(rate_error, 4), "true_mean_interarrival": truth.mean_interarrival,
            "fitted_mean_interarrival": fitted.mean_interarrival, "machines": machines,
            "true_templates": len(truth.templates), "fitted_templates": len(fitted.templates)}  # fmt: skip


def compare_markdown(result: dict, command: str, history: dict | None) -> str:
    lines = ["# Fitting a shop with known parameters", "", f"Command: `{command}`  ",
             f"Commit: {git_commit()}, machine: {machine_description()['cpu']} ({machine_description()['cores']} cores).",
             ""]  # fmt: skip
    if history:
        lines += [f"History: {history['events']:,} events of {history['jobs']:,} work orders, sent to `sched-env serve`"
                  f" in batches ({history['seconds']} s), dispatched by `{history['practice']}`.", ""]  # fmt: skip
    lines += [f"- arrival rate: fitted mean gap {result['fitted_mean_interarrival']} against the true"
              f" {result['true_mean_interarrival']}: rate error **{100 * result['arrival_rate_error']:+.2f} %**"
              " (target within 5 %)",
              f"- routings: {result['fitted_templates']} fitted, {result['true_templates']} true", "",
              "| equipment | MTBF true / fitted | breakdown rate error | MTTR true / fitted | repair time error |"
              " real/planned mean true / fitted |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["machines"]:
        if "breakdown_rate_error" in r:
            rate = "-" if r["breakdown_rate_error"] is None else f"**{100 * r['breakdown_rate_error']:+.1f} %**"
            broken = (f"{r['true_mtbf']:g} / {r['fitted_mtbf']:g} | {rate} | {r['true_mttr']:g} / {r['fitted_mttr']:g}"
                      f" | {100 * r['repair_time_error']:+.1f} %")  # fmt: skip
        else:
            broken = f"none / {r['fitted_mtbf'] or 'none'} | | | "
        lines.append(f"| {r['equipment']} | {broken} | {r['true_noise_mean']} / {r['fitted_noise_mean']} |")
    lines.append("")
    lines.append("Breakdown rate = 1 / MTBF; targets: within 20 %.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="run the true shop through a local sched-env serve into --db")
    p.add_argument("--db", required=True, help="the service database to write (a new file)")
    p.add_argument("--truth", help="also write the true shop's spec here (JSON)")
    p.add_argument("--jobs", type=int, default=3000, help="work orders in the history (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--practice", default="fifo", help="the rule the shop dispatched by (default fifo)")
    p = sub.add_parser("compare", help="a fitted spec against the truth; experiments/results/learn_shop_fit.{md,json}")
    p.add_argument("--truth", required=True)
    p.add_argument("--fitted", required=True)
    p.add_argument("--history", help="the JSON `record` printed (for the report)")
    p.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.command == "record":
        if args.truth:
            true_shop().save(args.truth)
        print(json.dumps(record(Path(args.db), jobs=args.jobs, seed=args.seed, practice=args.practice)))
        return 0
    result = compare(ShopSpec.load(args.truth), ShopSpec.load(args.fitted))
    history = json.loads(Path(args.history).read_text()) if args.history else None
    out = Path(args.out)
    command = "python -m experiments.learn_shop " + " ".join(sys.argv[1:] if argv is None else argv)
    (out / "learn_shop_fit.json").write_text(json.dumps({"command": command, "history": history, **result}, indent=1))
    (out / "learn_shop_fit.md").write_text(compare_markdown(result, command, history))
    print(compare_markdown(result, command, history))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
