"""service/: real HTTP calls to uvicorn on 127.0.0.1: round trips whose plans pass the validator,
every kind of bad input answered 4xx naming the field, the token, capacity (503) and budgets
(504), metrics, a schemathesis run over the OpenAPI schema, and the README's curl example."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")

import instances  # noqa: E402
from sched_env import validate_schedule  # noqa: E402
from sched_env.schedule import Schedule  # noqa: E402
from service.app import Settings, create_app  # noqa: E402
from service.protocol import GuardedH11Protocol  # noqa: E402
from service.schemas import MAX_BODY_BYTES, MAX_OPERATIONS, RescheduleRequest, ScheduleRequest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread: real sockets, real HTTP."""

    def __init__(self, settings: Settings, protocol: type = GuardedH11Protocol) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            http=protocol,
            timeout_keep_alive=5,
        )  # what `sched-env serve` runs
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the test server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    live = LiveServer(Settings(workers=2, queue=8))
    yield live
    live.stop()


def example(model) -> dict:
    return json.loads(json.dumps(model.model_config["json_schema_extra"]["examples"][0]))


def shop_request(instance, method: str, **extra) -> dict:
    """A /v1/schedule body for a JobShopInstance (equipment M0.., work orders WO0..)."""
    from experiments.load_service import schedule_body

    return {**schedule_body(instance, method), **extra}


def as_schedule(plan: list[dict]) -> Schedule:
    rows = [(int(p["work_order"][2:]), int(p["operation"][2:]), int(p["equipment"][1:]), p["start"], p["end"])
            for p in plan]  # fmt: skip
    return Schedule(*np.array(rows, dtype=np.int64).T)


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("method", ["policy", "policy:8", "mwkr", "cpsat:1", "tabu:1", "hybrid:1"])
def test_schedule_round_trip_gives_a_valid_plan(server, method):
    instance = instances.random_instance(8, 5, seed=3)
    response = httpx.post(server.url + "/v1/schedule", json=shop_request(instance, method, budget_ms=3000), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    schedule = validate_schedule(instance, as_schedule(body["plan"]))
    assert body["objectives"]["makespan"] == schedule.makespan and body["method"] == method
    assert not body["over_budget"]


def test_schedule_plans_around_down_equipment_and_maintenance(server):
    body = example(ScheduleRequest)
    body["equipment"] = [{"id": "lathe", "status": "down", "down_until": 10},
                         {"id": "mill", "maintenance": [{"start": 0, "end": 6}]}]  # fmt: skip
    response = httpx.post(server.url + "/v1/schedule", json=body, timeout=30)
    assert response.status_code == 200, response.text
    for op in response.json()["plan"]:
        if op["equipment"] == "lathe":
            assert op["start"] >= 10
        else:
            assert op["start"] >= 6 or op["end"] <= 0


@pytest.mark.parametrize("method", ["policy", "atc", "cpsat:1", "tabu:1", "hybrid:1"])
def test_reschedule_keeps_done_and_running_work_and_plans_the_rest(server, method):
    from sched_env.snapshot import plan_violations
    from service.schemas import to_state

    body = example(RescheduleRequest) | {"method": method}
    response = httpx.post(server.url + "/v1/reschedule", json=body, timeout=30)
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    by_id = {(p["work_order"], p["operation"]): p for p in plan}
    assert (by_id["WO-1", "turn"]["start"], by_id["WO-1", "turn"]["end"]) == (0, 3)
    assert (by_id["WO-1", "face"]["start"], by_id["WO-1", "face"]["end"]) == (3, 6)
    state, active = to_state(RescheduleRequest(**body))
    index = {(o.id, op.id): (j, k) for j, o in enumerate(active) for k, op in enumerate(o.operations)}
    equipment = {e["id"]: m for m, e in enumerate(body["equipment"])}
    rows = [(*index[p["work_order"], p["operation"]], equipment[p["equipment"]], p["start"], p["end"]) for p in plan]
    assert plan_violations(state, Schedule(*np.array(rows).T)) == []
    lathe = [p for p in plan if p["equipment"] == "lathe" and p["start"] >= 4]
    assert all(p["start"] >= 9 for p in lathe), "nothing may start on the lathe while it is down"


# ---------------------------------------------------------------------- bad input
def _bad(change):
    body = example(ScheduleRequest)
    change(body)
    return body


BAD_REQUESTS = [
    ("negative duration", _bad(lambda b: b["work_orders"][0]["operations"][0].update(duration=-3)), "duration"),
    ("zero duration", _bad(lambda b: b["work_orders"][0]["operations"][0].update(duration=0)), "duration"),
    ("huge duration", _bad(lambda b: b["work_orders"][0]["operations"][0].update(duration=10**15)), "duration"),
    ("duration as text", _bad(lambda b: b["work_orders"][0]["operations"][0].update(duration="five")), "duration"),
    ("unknown equipment", _bad(lambda b: b["work_orders"][0]["operations"][0].update(equipment="drill")), "'drill'"),
    ("no work orders", _bad(lambda b: b.update(work_orders=[])), "work_orders"),
    ("empty work order", _bad(lambda b: b["work_orders"][0].update(operations=[])), "operations"),
    ("duplicated work order", _bad(lambda b: b["work_orders"][1].update(id="WO-1")), "duplicated work order id 'WO-1'"),
    (
        "duplicated operation",
        _bad(lambda b: b["work_orders"][0]["operations"][1].update(id="turn")),
        "duplicated operation",
    ),
    ("duplicated equipment", _bad(lambda b: b["equipment"].append({"id": "lathe"})), "duplicated equipment id"),
    ("unknown field", _bad(lambda b: b.update(colour="red")), "colour"),
    ("unknown method", _bad(lambda b: b.update(method="magic")), "unknown method 'magic'"),
    ("model path from a request", _bad(lambda b: b.update(method="policy@/etc/passwd")), "this host reads none"),
    ("zero budget", _bad(lambda b: b.update(budget_ms=0)), "budget_ms"),
    ("negative budget", _bad(lambda b: b.update(budget_ms=-5)), "budget_ms"),
    ("down without until", _bad(lambda b: b["equipment"][0].update(status="down")), "down_until"),
    ("window backwards", _bad(lambda b: b["equipment"][0].update(maintenance=[{"start": 5, "end": 2}])), "window"),
    ("negative priority", _bad(lambda b: b["work_orders"][0].update(priority=0)), "priority"),
]


@pytest.mark.parametrize(("what", "body", "field"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_schedule_requests_get_422_naming_the_field(server, what, body, field):
    response = httpx.post(server.url + "/v1/schedule", json=body, timeout=10)
    assert response.status_code == 422, f"{what}: {response.status_code} {response.text}"
    assert field in response.json()["detail"], f"{what}: {response.json()['detail']}"


def test_malformed_json_gets_400_and_wrong_types_422(server):
    response = httpx.post(server.url + "/v1/schedule", content=b'{"work_orders": [', timeout=10,
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    response = httpx.post(server.url + "/v1/schedule", json=["not", "an", "object"], timeout=10)
    assert response.status_code == 422


def test_bad_reschedule_states_get_422_naming_the_problem(server):
    running_on_down = example(RescheduleRequest)
    running_on_down["equipment"][1] = {"id": "mill", "status": "down", "down_until": 20}
    out_of_order = example(RescheduleRequest)
    out_of_order["work_orders"][1]["operations"][1].update(status="done", start=0, end=2)
    future_done = example(RescheduleRequest)
    future_done["work_orders"][0]["operations"][0].update(end=50)
    no_times = example(RescheduleRequest)
    no_times["work_orders"][0]["operations"][1].pop("start")
    for body, message in ((running_on_down, "which is down"), (out_of_order, "after a waiting operation"),
                          (future_done, "do not fit a done operation"), (no_times, "give its start and end")):  # fmt: skip
        response = httpx.post(server.url + "/v1/reschedule", json=body, timeout=10)
        assert response.status_code == 422 and message in response.json()["detail"], response.text


def test_oversized_bodies_and_too_many_operations_get_413_naming_the_limit(server):
    response = httpx.post(server.url + "/v1/schedule", content=b" " * (MAX_BODY_BYTES + 1), timeout=30,
                          headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413 and str(MAX_BODY_BYTES) in response.json()["detail"]
    many = instances.random_instance(MAX_OPERATIONS // 20 + 1, 20, seed=0)
    response = httpx.post(server.url + "/v1/schedule", json=shop_request(many, "mwkr"), timeout=60)
    assert response.status_code == 413 and f"{MAX_OPERATIONS:,}" in response.json()["detail"]


def test_a_third_party_decider_is_served_asked_what_it_is_and_kept_from_files(server, third_party):
    instance = instances.random_instance(6, 4, seed=2)
    response = httpx.post(server.url + "/v1/schedule", json=shop_request(instance, "slowpoke:0.3", budget_ms=2000),
                          timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    validate_schedule(instance, as_schedule(response.json()["plan"]))
    refused = httpx.post(server.url + "/v1/schedule", json=shop_request(instance, "reverse@/etc/passwd"), timeout=30)
    assert refused.status_code == 422 and "this host reads none" in refused.json()["detail"]


def test_a_budget_is_enforced_with_a_plan_or_a_clear_504(server):
    big = instances.random_instance(100, 20, seed=1)  # its greedy plan alone takes far longer than 20 ms
    response = httpx.post(server.url + "/v1/schedule", json=shop_request(big, "policy:64", budget_ms=20), timeout=30)
    assert response.status_code == 200, response.text  # anytime: a rule's plan stands, and the status says so
    assert response.json()["status"] == "start-plan" and len(response.json()["plan"]) == big.n_operations
    medium = instances.random_instance(20, 10, seed=1)
    response = httpx.post(
        server.url + "/v1/schedule", json=shop_request(medium, "hybrid:30", budget_ms=1500), timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["wall_time_ms"] <= 1500 * 1.05 + 50


def test_over_capacity_is_answered_503_with_retry_after():
    live = LiveServer(Settings(workers=1, queue=0))
    try:
        body = shop_request(instances.random_instance(15, 15, seed=0), "cpsat:1.5")
        with httpx.Client(timeout=30) as client:
            results: list[httpx.Response] = []
            threads = [threading.Thread(target=lambda: results.append(client.post(live.url + "/v1/schedule", json=body)))
                       for _ in range(3)]  # fmt: skip
            for t in threads:
                t.start()
                time.sleep(0.05)
            for t in threads:
                t.join()
        codes = sorted(r.status_code for r in results)
        assert codes[0] == 200 and 503 in codes, codes
        refused = next(r for r in results if r.status_code == 503)
        assert refused.headers["retry-after"] == "1"
    finally:
        live.stop()


def test_bearer_token_is_required_when_set():
    live = LiveServer(Settings(token="s3cret"))
    try:
        body = example(ScheduleRequest)
        assert httpx.post(live.url + "/v1/schedule", json=body).status_code == 401
        assert (
            httpx.post(live.url + "/v1/schedule", json=body, headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        ok = httpx.post(live.url + "/v1/schedule", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert httpx.get(live.url + "/healthz").status_code == 200  # probes stay open
    finally:
        live.stop()


# ---------------------------------------------------------------------- the other endpoints
def test_health_model_methods_and_metrics(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
    model = httpx.get(server.url + "/v1/model").json()
    assert model["static"]["backend"] == "onnx" and len(model["static"]["sha256"]) == 64
    assert model["dynamic"]["kind"] == "dynamic" and "algo" in model["dynamic"]["config"]
    assert model["flexible"]["kind"] == "flexible" and model["flexible"]["config"]["shop"] == "flexible"
    names = {m["name"] for m in httpx.get(server.url + "/v1/methods").json()}
    assert {"policy", "hybrid", "cpsat", "mwkr", "atc"} <= names
    httpx.post(server.url + "/v1/schedule", json=example(ScheduleRequest))
    text = httpx.get(server.url + "/metrics").text
    assert 'sched_env_requests_total{endpoint="/v1/schedule",status="200"}' in text
    assert "sched_env_request_seconds_bucket" in text and "sched_env_budget_overruns_total" in text
    httpx.get(server.url + "/no/such/path/" + "x" * 50)
    assert "/no/such/path" not in httpx.get(server.url + "/metrics").text, "unknown paths must not become labels"


def test_openapi_has_a_worked_example_per_endpoint(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    for name in ("ScheduleRequest", "RescheduleRequest", "ShopCreate", "EventBatch"):
        assert schema["components"]["schemas"][name].get("examples"), f"{name} has no example"
    for path in ("/v1/shops", "/v1/shops/{shop_id}/events"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert body.rsplit("/", 1)[1] in schema["components"]["schemas"], f"{path} does not document its body"
    assert set(schema["paths"]["/v1/shops"]["post"]["responses"]["201"]["links"]) == {"events", "state", "plan", "end"}


def test_the_openapi_examples_of_shop_sessions_are_accepted(server):
    from service.schemas import EventBatch, ShopCreate

    shop = httpx.post(server.url + "/v1/shops", json=example(ShopCreate), timeout=30)
    assert shop.status_code == 201, shop.text
    answer = httpx.post(server.url + f"/v1/shops/{shop.json()['id']}/events", json=example(EventBatch), timeout=30)
    assert answer.status_code == 200 and answer.json()["accepted"] == 3, answer.text


@pytest.mark.skipif(shutil.which("schemathesis") is None, reason="schemathesis is not installed (the dev extra)")
def test_schemathesis_all_checks_pass(server, tmp_path):
    process = subprocess.run(
        ["schemathesis", "--config-file", str(REPO / "experiments" / "schemathesis.toml"), "run",
         server.url + "/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-2000:]
    assert "5xx" not in process.stdout.lower() or "0 5xx" in process.stdout.lower()


def test_the_readme_curl_example_works_as_written(server):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(curl [^`]*?/v1/schedule[^`]*?)\n```", readme, re.S)
    assert block, "the README has no curl example for /v1/schedule"
    command = block.group(1).replace("http://127.0.0.1:8000", server.url).replace("\\\n", " ")
    process = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    body = json.loads(process.stdout)
    assert body["plan"] and body["method"] == "policy"


def test_serve_refuses_a_corrupt_model_in_one_line(tmp_path):
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"garbage")
    process = subprocess.run([sys.executable, "-m", "experiments.cli", "serve", "--model", str(corrupt), "--port",
                              str(free_port())], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert process.returncode == 2
    assert "not a readable ONNX policy" in process.stderr and len(process.stderr.strip().splitlines()) == 1


def test_docs_work_offline_from_the_installed_swagger_ui(server):
    pytest.importorskip("swagger_ui_bundle")
    page = httpx.get(server.url + "/docs", timeout=10)
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    script = httpx.get(server.url + "/docs-assets/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 100_000


def test_a_plan_that_breaks_the_state_is_a_500_with_a_request_id(server, monkeypatch):
    from baselines import deciders
    from instances import InvalidPlanError

    def broken(*args, **kwargs):
        raise InvalidPlanError("mwkr produced a plan that breaks the shop state: (test)")

    monkeypatch.setattr(deciders, "solve", broken)
    instance = instances.random_instance(4, 3, seed=0)
    response = httpx.post(server.url + "/v1/schedule", json=shop_request(instance, "mwkr"), timeout=30)
    assert response.status_code == 500 and "request id" in response.json()["detail"]


def test_plan_requests_for_unknown_shops_leave_nothing_behind(server):
    """Issue 27, finding 6: each unknown id's plan request kept a waiter entry (+100 MB over 12 000)."""
    waiters = server.server.config.app.state.internal.shops._waiters.events
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(300):
            for params in ({}, {"after": 0, "wait_ms": 1}):
                response = client.get(f"/v1/shops/shop-{'x' * 200}{i}/plan", params=params)
                assert response.status_code == 404, response.text
    assert not [key for key in waiters if key.startswith("shop-x")], f"{len(waiters)} waiters left for unknown shops"


def test_a_client_that_leaves_mid_body_is_one_log_line_not_a_traceback(server, caplog):
    """Issue 27, finding 9: a client that disconnected mid-body wrote a 66-line traceback per upload."""
    import logging
    import socket

    caplog.set_level(logging.INFO)
    head = (b"POST /v1/schedule HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(head + b'{"work_orders": [')
        time.sleep(0.3)
    deadline = time.time() + 10
    while time.time() < deadline and not any("went away" in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "went away" in r.getMessage()]
    assert len(lines) == 1 and "POST /v1/schedule" in lines[0], lines
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
