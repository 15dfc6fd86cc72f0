"""An abuse probe of ``sched-env serve`` on loopback: the issue-18 targets, measured side by side.

Starts the real server (a bearer token set, 2 decider threads, queue 16) and measures:

1. recovery: after each abusive request (``hybrid:nan``, ``random:4000``, ``cpsat:86400``, ...)
   how long after that request's deadline a normal request gets its plan (target <= 2 s);
2. ``/healthz`` latency while the queue is full of ~7 MiB bodies (target p99 <= 50 ms);
3. plans' client-side latency minus their budget, p99, on 15x15 and 50x20 (target <= 50 ms);
4. a concurrency probe: mixed deciders, schedule and reschedule, down equipment and maintenance,
   every plan checked by an independent checker on the wire data (target 0 invalid, 0 5xx);
5. schemathesis ``--checks all`` over the OpenAPI document (target 0 failures).

    python -m experiments.service_probe            # experiments/results/service_probe.{md,json}
    python -m experiments.service_probe --quick    # fewer requests (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import instances
from experiments.load_service import free_port, reschedule_body, schedule_body, start_server
from experiments.provenance import git_commit, machine_description

RESULTS = Path(__file__).resolve().parent / "results"
SCHEMATHESIS_CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
TOKEN = "probe-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


def wire_violations(body: dict, plan: list[dict]) -> list[str]:
    """What is wrong with a plan, checked on the request's JSON alone (not with sched-env's own
    checker): every operation once, on its equipment, for its duration (done and running work
    as given), in order, after its release, not before now, no two at once per equipment,
    none inside a known downtime."""
    now = body.get("time", 0)
    planned = {(p["work_order"], p["operation"]): p for p in plan}
    expected = {(o["id"], op["id"]) for o in body["work_orders"] for op in o["operations"]}
    if set(planned) != expected or len(plan) != len(expected):
        return [f"planned {len(plan)} operations, expected {len(expected)}"]
    down: dict[str, list[tuple[int, int]]] = {}
    for e in body["equipment"]:
        down[e["id"]] = [(w["start"], w["end"]) for w in e.get("maintenance", [])]
        if e.get("status") == "down" and e["down_until"] > now:
            down[e["id"]].append((now, e["down_until"]))
    problems: list[str] = []
    for order in body["work_orders"]:
        previous_end = order.get("release", 0)
        for op in order["operations"]:
            p = planned[order["id"], op["id"]]
            problems += _operation_violations(op, p, now, down[op["equipment"]], previous_end)
            previous_end = p["end"]
    by_machine: dict[str, list[tuple[int, int]]] = {}
    for p in plan:
        by_machine.setdefault(p["equipment"], []).append((p["start"], p["end"]))
    for machine, intervals in by_machine.items():
        intervals.sort()
        problems += [f"overlap on {machine} at {b[0]}" for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]]
    return problems


def _operation_violations(op: dict, p: dict, now: int, downtimes: list, previous_end: int) -> list[str]:
    status, problems = op.get("status", "waiting"), []
    if p["equipment"] != op["equipment"]:
        problems.append(f"{op['id']} moved to {p['equipment']}")
    if status == "done" and (p["start"], p["end"]) != (op["start"], op["end"]):
        problems.append(f"done {op['id']} moved")
    if status == "running" and p["start"] != op["start"]:
        problems.append(f"running {op['id']} moved")
    if status == "waiting":
        if p["end"] - p["start"] != op["duration"]:
            problems.append(f"{op['id']} runs {p['end'] - p['start']}, not {op['duration']}")
        if p["start"] < now:
            problems.append(f"{op['id']} starts before now")
        if any(p["start"] < e and s < p["end"] for s, e in downtimes):
            problems.append(f"{op['id']} runs in a downtime of {op['equipment']}")
    if p["start"] < previous_end:
        problems.append(f"{op['id']} starts at {p['start']} before {previous_end}")
    return problems


def with_maintenance(state: dict) -> dict:
    """A reschedule body with a maintenance window on its first equipment, after the running work."""
    busy_until = max(
        [op["end"] for o in state["work_orders"] for op in o["operations"] if "end" in op] + [state["time"]]
    )
    state["equipment"][0]["maintenance"] = [{"start": busy_until + 3, "end": busy_until + 9}]
    return state


def big_body(n_orders: int = 1000, n_ops: int = 20, method: str = "mwkr", budget_ms: int = 2000) -> dict:
    """About 7 MiB of valid work: 20 000 operations with long ids."""
    equipment = [{"id": f"machine-{m:03d}-" + "e" * 90} for m in range(n_ops)]
    orders = [{"id": f"order-{j:05d}-" + "w" * 150, "due": 50_000, "operations": [
        {"id": f"operation-{k:02d}-" + "o" * 150, "equipment": equipment[(j + k) % n_ops]["id"], "duration": 1 + (j * k) % 9}
        for k in range(n_ops)]} for j in range(n_orders)]  # fmt: skip
    return {"method": method, "budget_ms": budget_ms, "equipment": equipment, "work_orders": orders}


def _post(client, url: str, body: dict | bytes) -> tuple[int, float, dict | None]:
    import httpx

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.perf_counter()
    try:
        response = client.post(url, content=raw, headers=AUTH)
    except httpx.HTTPError:
        return 0, time.perf_counter() - started, None
    elapsed = time.perf_counter() - started
    return response.status_code, elapsed, response.json() if response.status_code == 200 else None


def _post_into(codes: list[int], client, url: str, body: dict) -> None:
    codes.append(_post(client, url, body)[0])


def recovery(base: str) -> list[dict]:
    """Two abusive requests at once (both decider threads), then a normal one: when it is answered,
    counted from the abusive requests' deadline."""
    import httpx

    shop = schedule_body(instances.random_instance(30, 15, seed=1), "mwkr")
    normal = schedule_body(instances.random_instance(10, 5, seed=2), "mwkr")
    rows = []
    for method, budget_ms in (("hybrid:nan", 500), ("cpsat:inf", 500), ("policy:1000000000000", 500),
                              ("random:4000", 500), ("random:10000", 500), ("cpsat:86400", 500),
                              ("hybrid:86400", 500), ("tabu:86400", 500), ("policy:10000", 500)):  # fmt: skip
        body = {**shop, "method": method, "budget_ms": budget_ms}
        codes: list[int] = []
        with httpx.Client(timeout=120) as client:
            sent = time.perf_counter()
            threads = [threading.Thread(target=_post_into, args=(codes, client, base + "/v1/schedule", body))
                       for _ in range(2)]  # fmt: skip
            for thread in threads:
                thread.start()
            time.sleep(0.05)
            code, _, _ = _post(client, base + "/v1/schedule", normal)
            answered = time.perf_counter() - sent - budget_ms / 1000
            for thread in threads:
                thread.join()
        rows.append({"abusive": method, "budget_ms": budget_ms, "abusive_status": sorted(codes),
                     "normal_status": code, "normal_after_deadline_s": round(answered, 3)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def health_under_big_bodies(base: str, seconds: float, senders: int = 18) -> dict:
    """``senders`` clients post ~7 MiB bodies back to back (the queue full) while /healthz is polled."""
    import httpx

    raw = json.dumps(big_body()).encode()
    stop = time.perf_counter() + seconds
    codes: list[int] = []

    def send() -> None:
        with httpx.Client(timeout=120) as client:
            while time.perf_counter() < stop:
                codes.append(_post(client, base + "/v1/schedule", raw)[0])

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the queue fills
    poller = subprocess.run(  # in its own process: not slowed by the senders' GIL
        [sys.executable, "-c", "import json, sys; from experiments.service_probe import poll_health;"
         " print(json.dumps(poll_health(sys.argv[1], float(sys.argv[2]))))", base, str(stop - time.perf_counter())],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    latencies = json.loads(poller.stdout)
    for thread in threads:
        thread.join()
    ms = np.array(latencies) * 1e3
    return {"body_mib": round(len(raw) / 2**20, 2), "senders": senders, "seconds": seconds, "polls": len(ms),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2), "answers": {str(c): codes.count(c) for c in sorted(set(codes))}}  # fmt: skip


def uploads_memory(base: str, pid: int) -> dict:
    """The server's resident memory before and after 128 MiB chunked uploads, with a wrong token
    (refused before the body is read) and with the right one (413 as the bytes pass 8 MiB)."""
    import httpx

    def rss_mb() -> int:
        status = Path(f"/proc/{pid}/status")
        lines = status.read_text().splitlines() if status.exists() else []
        return next((int(line.split()[1]) // 1024 for line in lines if line.startswith("VmRSS")), -1)

    def body():
        block = b" " * 2**20
        for _ in range(128):
            yield block

    before, answers = rss_mb(), []
    for token in ("wrong", TOKEN, "wrong", TOKEN):
        try:
            answers.append(httpx.post(base + "/v1/schedule", content=body(), timeout=60,
                                      headers={**AUTH, "Authorization": f"Bearer {token}"}).status_code)  # fmt: skip
        except httpx.HTTPError as error:
            answers.append(type(error).__name__)
    return {"rss_before_mb": before, "rss_after_mb": rss_mb(), "answers": answers}


def poll_health(base: str, seconds: float) -> list[float]:
    """GET /healthz every 10 ms for ``seconds``: each latency in seconds."""
    import httpx

    latencies, stop = [], time.perf_counter() + seconds
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            client.get(base + "/healthz")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    return latencies


def budgets(base: str, repeats: int) -> list[dict]:
    """Client-side latency minus budget, one request at a time (the decider threads otherwise idle)."""
    import httpx

    rows = []
    shops = {"15x15": instances.random_instance(15, 15, seed=7), "50x20": instances.random_instance(50, 20, seed=7)}
    for label, shop in shops.items():
        for method in ("policy", "policy:16", "tabu:5", "cpsat:5", "hybrid:5"):
            for budget_ms in (100, 1000):
                over, flags = [], []
                with httpx.Client(timeout=60) as client:
                    for _ in range(repeats):
                        code, elapsed, answer = _post(client, base + "/v1/schedule",
                                                      {**schedule_body(shop, method), "budget_ms": budget_ms})  # fmt: skip
                        over.append(1000 * elapsed - budget_ms if code == 200 else float("inf"))
                        flags.append(answer["over_budget"] if answer else None)
                over_ms = np.array(over)
                rows.append({"shop": label, "method": method, "budget_ms": budget_ms, "requests": repeats,
                             "p50_over_ms": round(float(np.percentile(over_ms, 50)), 1),
                             "p99_over_ms": round(float(np.percentile(over_ms, 99)), 1),
                             "flagged_over": sum(f is True for f in flags), "failed": int(np.isinf(over_ms).sum())})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def concurrency(base: str, requests: int, clients: int = 16) -> dict:
    """Mixed requests from many clients; every 200 plan checked by :func:`wire_violations`."""
    import httpx

    cases = []
    for i, method in enumerate(["policy", "policy:8", "mwkr", "wspt", "cpsat:1", "tabu:1", "hybrid:1", "random:16"]):
        shop = instances.random_instance(10 + 2 * i, 5 + i % 3, seed=i)
        cases.append(("/v1/schedule", {**schedule_body(shop, method), "budget_ms": 20_000}))
        cases.append(("/v1/reschedule", with_maintenance({**reschedule_body(shop, method), "budget_ms": 20_000})))
    results: list[tuple[int, list[str]]] = []
    lock = threading.Lock()
    counter = [0]

    def client() -> None:
        with httpx.Client(timeout=120) as session:
            while True:
                with lock:
                    if counter[0] >= requests:
                        return
                    path, body = cases[counter[0] % len(cases)]
                    counter[0] += 1
                code, _, answer = _post(session, base + path, body)
                problems = wire_violations(body, answer["plan"]) if answer else []
                with lock:
                    results.append((code, problems))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = [c for c, _ in results]
    return {"requests": len(results), "clients": clients, "answers": {str(c): codes.count(c) for c in sorted(set(codes))},
            "invalid_plans": sum(bool(p) for _, p in results), "server_errors_5xx": sum(500 <= c < 600 for c in codes)}  # fmt: skip


def schemathesis(base: str, examples: int) -> dict:
    """schemathesis ``--checks all`` over the OpenAPI document, with the token."""
    if shutil.which("schemathesis") is None:
        return {"skipped": "schemathesis is not installed (pip install 'sched-env[dev]')"}
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.run(
            ["schemathesis", "--config-file", str(SCHEMATHESIS_CONFIG), "run", base + "/openapi.json", "--checks", "all",
             "--max-examples", str(examples),
             "--seed", "1", "--no-color", "-H", f"Authorization: Bearer {TOKEN}"],
            capture_output=True, text=True, timeout=1200, cwd=folder,
        )  # fmt: skip
    summary = [line.strip() for line in process.stdout.splitlines() if line.strip()][-12:]
    return {"returncode": process.returncode, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke run")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(port, 2, 16, token=TOKEN)
    started = time.perf_counter()
    try:
        report = {
            "uploads": uploads_memory(base, server.pid),
            "recovery": recovery(base),
            "health": health_under_big_bodies(base, 10 if args.quick else 30),
            "budgets": budgets(base, 5 if args.quick else 30),
            "concurrency": concurrency(base, 100 if args.quick else 600),
            "schemathesis": schemathesis(base, 10 if args.quick else 100),
        }
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
    one_thread = start_server(port, 1, 16, token=TOKEN)  # a core left to the event loop on a 2-core machine
    try:
        report["health_one_thread"] = health_under_big_bodies(base, 10 if args.quick else 30)
    finally:
        one_thread.terminate()
        one_thread.wait(timeout=30)
    report.update(commit=git_commit(), machine=machine_description(), seconds=round(time.perf_counter() - started, 1),
                  command="python -m experiments.service_probe" + (" --quick" if args.quick else ""), alive=alive)  # fmt: skip
    out = Path(args.out)
    (out / "service_probe.json").write_text(json.dumps(report, indent=1))
    (out / "service_probe.md").write_text(render(report))
    print(render(report))
    return 0


def _table(rows: list[dict], columns: dict[str, str]) -> list[str]:
    """A Markdown table: ``columns`` maps each header to its key in the rows."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(row[key]) for key in columns.values()) + " |" for row in rows]


def render(report: dict) -> str:
    """The probe's report as Markdown, each section against its target."""
    machine = report["machine"]
    lines = ["# Service abuse probe (issue 18): recovery, a free loop, honest budgets, valid plans", "",
             f"`{report['command']}` at commit `{report['commit']}`, {machine['cpu']}, {machine['cores']} cores"
             f" (server and clients on the same cores), {report['seconds']} s. One `sched-env serve` process with a"
             " token, 2 decider threads, queue 16. The server was alive at the end: " + str(report["alive"]) + ".",
             "", "## 128 MiB chunked uploads (finding 3: RSS 294 -> 674 MB before)", "",
             "Four uploads (wrong token, right token, twice): answers {answers}; server RSS {rss_before_mb} MB"
             " before, {rss_after_mb} MB after.".format(**report["uploads"]),
             "", "## After an abusive request (target: a normal request answered <= 2 s after its deadline)", ""]  # fmt: skip
    lines += _table(report["recovery"], {"abusive method": "abusive", "budget ms": "budget_ms", "its answers":
                    "abusive_status", "normal request": "normal_status", "answered after the deadline, s":
                    "normal_after_deadline_s"})  # fmt: skip
    h = report["health"]
    lines += ["", "## /healthz while the queue is full of big bodies (target: p99 <= 50 ms)", "",
              f"{h['senders']} clients posting {h['body_mib']} MiB bodies (20 000 operations) back to back for"
              f" {h['seconds']} s; {h['polls']} polls: p50 {h['p50_ms']} ms, **p99 {h['p99_ms']} ms**, max"
              f" {h['max_ms']} ms. The big requests' answers: {h['answers']}.", "",
              "The same with `--threads 1` (one core left to the event loop): p50 {p50_ms} ms, **p99 {p99_ms} ms**,"
              " max {max_ms} ms; answers {answers}.".format(**report["health_one_thread"]),
              "", "## Plans against their budget (target: p99 <= budget + 50 ms, client-side)", ""]  # fmt: skip
    lines += _table(report["budgets"], {"shop": "shop", "method": "method", "budget ms": "budget_ms", "requests":
                    "requests", "p50 over ms": "p50_over_ms", "p99 over ms": "p99_over_ms", "flagged over_budget":
                    "flagged_over", "failed": "failed"})  # fmt: skip
    c = report["concurrency"]
    lines += ["", "## Concurrency probe (target: 0 invalid plans, 0 5xx)", "",
              f"{c['requests']} mixed requests (8 deciders, schedule and reschedule, down equipment, maintenance) from"
              f" {c['clients']} clients: answers {c['answers']}, **invalid plans {c['invalid_plans']}** (independent"
              f" checker on the wire data), **5xx {c['server_errors_5xx']}**.",
              "", "## schemathesis --checks all (target: 0 failures)", ""]  # fmt: skip
    s = report["schemathesis"]
    lines += [f"Skipped: {s['skipped']}"] if "skipped" in s else [f"Exit status {s['returncode']}.", "", "```",
                                                                 *s["summary"], "```"]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
