"""How long a restarted service takes to rebuild its shops from the event log.

Logs ``--events`` events (work orders released, started and finished, breakdowns and repairs)
into a fresh SQLite file through the service's own journal (one shop, then the same spread over
20 shops), then times :meth:`Shops.restore` on a new instance, as ``sched-env serve`` does on
start, and checks that the rebuilt states equal the states before.

    python -m experiments.replay_shops               # experiments/results/replay_shops.{md,json}
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from experiments.provenance import git_commit, machine_description, write_report

RESULTS = Path(__file__).resolve().parent / "results"
MACHINES = 10


def stream(n_events: int, units: int = MACHINES, prefix: str = "e", flexible: bool = False) -> list[dict]:
    """``n_events`` valid events: per work order release, start, finish, a breakdown and its repair
    (five events per work order, on equipment M0, M1, ... in turn). ``flexible``: each operation
    may run on two pieces of equipment (alternatives, or the equipment class ``cell`` every unit
    belongs to, in turn) and starts on the second."""
    rows = []
    for j in range(n_events // 5 + 1):
        unit, t = f"M{j % units}", 2 * j
        op: dict = {"id": "op", "equipment": unit, "duration": 1}
        if flexible:
            unit = f"M{(j + 1) % units}"
            op = {"id": "op", "equipment_class": "cell", "duration": 1} if j % 2 else {
                "id": "op", "alternatives": [{"equipment": f"M{j % units}", "duration": 1},
                                             {"equipment": unit, "duration": 2}]}  # fmt: skip
        order = {"id": f"WO{j}", "due": t + 9, "operations": [op]}
        started = {"equipment": unit} if flexible else {}
        rows += [{"type": "work_order_released", "time": t, "work_order": order},
                 {"type": "operation_started", "time": t, "work_order": f"WO{j}", "operation": "op", **started},
                 {"type": "operation_finished", "time": t + 1, "work_order": f"WO{j}", "operation": "op"},
                 {"type": "equipment_down", "time": t + 1, "equipment": unit, "expected_until": t + 2},
                 {"type": "equipment_up", "time": t + 2, "equipment": unit}]  # fmt: skip
    return [{"event_id": f"{prefix}{i}", **row} for i, row in enumerate(rows[:n_events])]


def replay(n_events: int, n_shops: int, models: dict) -> dict:
    from service.shops import Shops
    from service.store import EventStore

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shops.sqlite3"
        shops = Shops(EventStore(path), models)
        config = json.dumps({"equipment": [{"id": f"M{m}"} for m in range(MACHINES)], "method": "mwkr"}).encode()
        ids = [shops.create(config)["id"] for _ in range(n_shops)]
        started = time.perf_counter()
        for shop_id in ids:
            events = stream(n_events // n_shops)
            for first in range(0, len(events), 500):
                shops.ingest(shop_id, json.dumps({"events": events[first : first + 500]}).encode())
        logged_s = time.perf_counter() - started
        before = {shop_id: shops.state(shop_id) for shop_id in ids}
        shops.close()
        again = Shops(EventStore(path), models)
        started = time.perf_counter()
        replayed = again.restore()
        seconds = time.perf_counter() - started
        equal = all(again.state(shop_id)["events"] == before[shop_id]["events"] and
                    {k: v for k, v in again.state(shop_id).items() if k != "plan_version"} ==
                    {k: v for k, v in before[shop_id].items() if k != "plan_version"} for shop_id in ids)  # fmt: skip
        again.close()
    return {"events": replayed, "shops": n_shops, "replay_s": round(seconds, 3), "log_s": round(logged_s, 3),
            "events_per_s": round(replayed / seconds), "states_equal": equal}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--out", default=str(RESULTS / "replay_shops"), help="path without suffix (.md and .json)")
    args = parser.parse_args(argv)
    from agents.loading import load_policy

    models = {"static": load_policy(kind="static"), "dynamic": load_policy(kind="dynamic")}
    rows = [replay(args.events, n, models) for n in (1, 20)]
    report = {"command": f"python -m experiments.replay_shops --events {args.events}", "commit": git_commit(),
              "machine": machine_description(), "rows": rows}  # fmt: skip
    lines = ["# Replaying the shop log on start", "",
             f"`{report['command']}` at commit `{report['commit']}`; machine: {report['machine']}.", "",
             "Target: 10 000 events replayed in at most 5 s.", "",
             "| shops | events | replay (s) | events/s | logging them (s) | rebuilt states equal |", "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['shops']} | {r['events']:,} | {r['replay_s']} | {r['events_per_s']:,} | {r['log_s']} |"
              f" {'yes' if r['states_equal'] else '**no**'} |" for r in rows]  # fmt: skip
    write_report(args.out, report, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
