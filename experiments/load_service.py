"""Load check of the scheduling service: bounded, self-stopping, loopback only.

Starts ``sched-env serve`` on a free port of 127.0.0.1, then for each case (15x15 and 50x20
``/v1/schedule`` with ``policy`` and ``mwkr``, ``/v1/reschedule`` of a 15x15 shop with
``hybrid:1``) and each concurrency (1, 8, 32) sends a fixed number of requests, stopping early
at a time cap; reports requests/s, p50/p99 latency and the error count (non-2xx, 503 counted
apart), then stops the server.

    python -m experiments.load_service                  # experiments/results/load_service.{md,json}
    python -m experiments.load_service --requests 50 --cap 20
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import instances
from experiments.provenance import git_commit, machine_description

RESULTS = Path(__file__).resolve().parent / "results"


def schedule_body(instance, method: str) -> dict:
    """A /v1/schedule body for a JobShopInstance: equipment M0.., work orders WO0.. with ops op0..
    (an operation with several machines lists them as alternatives)."""

    def operation(j: int, k: int) -> dict:
        options = instance.alternatives(j, k)
        if len(options) == 1:
            return {"id": f"op{k}", "equipment": f"M{options[0][0]}", "duration": options[0][1]}
        return {"id": f"op{k}", "alternatives": [{"equipment": f"M{m}", "duration": d} for m, d in options]}

    orders = [{"id": f"WO{j}", "operations": [operation(j, k) for k in range(int(instance.n_ops[j]))]}
              for j in range(instance.n_jobs)]  # fmt: skip
    return {"method": method, "equipment": [{"id": f"M{m}"} for m in range(instance.n_machines)], "work_orders": orders}


def reschedule_body(instance, method: str) -> dict:
    """The shop a third of the way into its MWKR schedule: done, running and waiting work, one machine down."""
    from baselines.rules import dispatch

    plan = dispatch(instance, "mwkr").schedule
    now = plan.makespan // 3
    ops = {(int(j), int(k)): (int(s), int(e)) for j, k, s, e in zip(plan.job, plan.op, plan.start, plan.end)}
    orders = []
    for j in range(instance.n_jobs):
        operations, waiting = [], False
        for k in range(instance.n_ops[j]):
            start, end = ops[j, k]
            status = "waiting" if waiting or start > now else ("done" if end <= now else "running")
            waiting = waiting or status == "waiting"
            op = {"id": f"op{k}", "equipment": f"M{int(instance.machines[j, k])}", "duration": int(instance.durations[j, k]),
                  "status": status}  # fmt: skip
            if status != "waiting":
                op.update(start=start, end=end)
            operations.append(op)
        orders.append({"id": f"WO{j}", "due": int(1.2 * plan.makespan), "operations": operations})
    busy = {op["equipment"] for o in orders for op in o["operations"] if op["status"] == "running"}
    down = next((f"M{m}" for m in range(instance.n_machines) if f"M{m}" not in busy), None)  # None: all are busy
    equipment = [{"id": f"M{m}"} if f"M{m}" != down else {"id": down, "status": "down", "down_until": now + 100}
                 for m in range(instance.n_machines)]  # fmt: skip
    events = [{"kind": "breakdown", "time": now, "equipment": down}] if down else []
    return {"time": now, "method": method, "equipment": equipment, "work_orders": orders, "events": events}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, threads: int, queue: int, *extra: str, token: str | None = None) -> subprocess.Popen:
    """``sched-env serve`` on 127.0.0.1:``port`` (``extra``: more serve options), once it is ready."""
    import httpx

    env = os.environ.copy()
    if token is not None:
        env["SCHED_ENV_TOKEN"] = token
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; not a pipe, which a chatty server could fill)
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "serve", "--port", str(port), "--threads", str(threads),
         "--queue", str(queue), *extra], stdout=subprocess.DEVNULL, stderr=log, env=env,
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server stopped: {log.read().decode()[-500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not become ready in 180 s")


def load(url: str, body: dict, concurrency: int, requests: int, cap_s: float) -> dict:
    """``requests`` POSTs from ``concurrency`` clients, stopping at ``cap_s`` seconds."""
    import httpx

    latencies: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()
    remaining = [requests]
    started = time.perf_counter()
    payload = json.dumps(body).encode()

    def client() -> None:
        with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as session:
            while True:
                with lock:
                    if remaining[0] <= 0 or time.perf_counter() - started > cap_s:
                        return
                    remaining[0] -= 1
                t0 = time.perf_counter()
                try:
                    code = session.post(url, content=payload).status_code
                except httpx.HTTPError:
                    code = 0
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    codes.append(code)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1e3
    ok = [c for c in codes if 200 <= c < 300]
    return {
        "concurrency": concurrency, "requests": len(codes), "seconds": round(elapsed, 2),
        "requests_per_s": round(len(ok) / elapsed, 2), "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2), "errors": len(codes) - len(ok),
        "refused_503": codes.count(503), "server_errors_5xx": sum(500 <= c < 600 and c not in (503, 504) for c in codes),
        "timeouts_504": codes.count(504),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=200, help="requests per case and concurrency (default 200)")
    parser.add_argument("--cap", type=float, default=30.0, help="seconds per case and concurrency at most (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="server decider threads (default 2)")
    parser.add_argument("--queue", type=int, default=64, help="server queue (default 64)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ta01, big = instances.load("ta01"), instances.random_instance(50, 20, seed=0)
    cases = [
        ("schedule 15x15 policy", "/v1/schedule", schedule_body(ta01, "policy")),
        ("schedule 15x15 mwkr", "/v1/schedule", schedule_body(ta01, "mwkr")),
        ("schedule 50x20 policy", "/v1/schedule", schedule_body(big, "policy")),
        ("schedule 50x20 mwkr", "/v1/schedule", schedule_body(big, "mwkr")),
        ("reschedule 15x15 hybrid:1", "/v1/reschedule", reschedule_body(ta01, "hybrid:1")),
    ]
    server = start_server(port, args.threads, args.queue)
    rows = []
    try:
        for label, path, body in cases:
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                count = args.requests if "hybrid" not in label else max(10, args.requests // 10)
                row = {"case": label, **load(base + path, body, concurrency, count, args.cap)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    machine = machine_description()
    lines = [
        "# Service load: requests/s and latency under concurrent clients (loopback)",
        "",
        f"Commit `{git_commit()}`, {machine['cpu']}, {machine['cores']} cores (server and clients on the same 2"
        f" cores). `python -m experiments.load_service {' '.join(argv or [])}`: one `sched-env serve` process,"
        f" {args.threads} decider threads, queue {args.queue}; each row {args.requests} requests (hybrid:1: a tenth)"
        f" or {args.cap:g} s, whichever ends first. Latency is the client's, request sent to response read.",
        "",
        "| case | concurrency | requests | req/s | p50 ms | p99 ms | errors | 503 | 504 | other 5xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['concurrency']} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} |"
                     f" {r['p99_ms']} | {r['errors']} | {r['refused_503']} | {r['timeouts_504']} | {r['server_errors_5xx']} |")  # fmt: skip
    out = Path(args.out)
    (out / "load_service.md").write_text("\n".join(lines) + "\n")
    (out / "load_service.json").write_text(
        json.dumps({"commit": git_commit(), "machine": machine, "rows": rows}, indent=1)
    )
    print("\n".join(lines))
    return 0 if all(r["server_errors_5xx"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
