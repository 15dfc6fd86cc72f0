"""Alternative equipment in the service: operations that list eligible equipment (each with its
duration) or name an ISA-95 equipment class; plans say which equipment each operation uses; a
start is accepted on any eligible, free, up equipment; stability counts equipment changes; bad
equipment lists are 422 naming the work order and operation, and a start on ineligible equipment
is refused naming both. Over HTTP (stateless routes and sessions), MQTT and OPC UA, and through a
`kill -9` of the server."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")

import instances  # noqa: E402
from experiments.replay_shops import stream as replay_stream  # noqa: E402
from sched_env import validate_schedule  # noqa: E402
from sched_env.snapshot import plan_violations  # noqa: E402
from service.schemas import (  # noqa: E402
    EventBatch,
    InvalidRequestError,
    RescheduleRequest,
    ScheduleRequest,
    ShopCreate,
    parse_request,
    to_state,
)
from service.sessions import RefusedEventError, ShopSession, stability  # noqa: E402
from tests.test_service import as_schedule, example, server, shop_request  # noqa: E402, F401  (fixture)
from tests.test_sessions import down, events, finish, models, start  # noqa: E402, F401  (fixture)

CELL = {
    "equipment": [{"id": "lathe-1", "classes": ["lathe"]}, {"id": "lathe-2", "classes": ["lathe"]}, {"id": "mill"}],
    "method": "mwkr", "budget_ms": 500,
    "work_orders": [
        {"id": "WO-1", "due": 20, "operations": [
            {"id": "turn", "alternatives": [{"equipment": "lathe-1", "duration": 5},
                                            {"equipment": "lathe-2", "duration": 8}]},
            {"id": "face", "equipment": "mill", "duration": 3}]},
        {"id": "WO-2", "priority": 3, "operations": [
            {"id": "mill", "equipment": "mill", "duration": 4},
            {"id": "turn", "equipment_class": "lathe", "duration": 2}]},
    ],
}  # fmt: skip


def cell(**changes) -> ShopSession:
    return ShopSession(ShopCreate.model_validate({**CELL, **changes}))


def flexible_request(**changes) -> dict:
    return json.loads(json.dumps(ScheduleRequest.model_config["json_schema_extra"]["examples"][1])) | changes


# ---------------------------------------------------------------------- sessions
def test_a_start_on_an_alternative_takes_its_duration_and_shows_the_equipment_used():
    shop = cell()
    shop.apply(events(start(0, "WO-1", "turn", equipment="lathe-2"), start(0, "WO-2", "mill")))
    state = shop.to_dict()
    turn = state["work_orders"][0]["operations"][0]
    assert (turn["equipment_used"], turn["start"], turn["end"]) == ("lathe-2", 0, 8)
    assert turn["alternatives"] == CELL["work_orders"][0]["operations"][0]["alternatives"]
    units = {e["id"]: e for e in state["equipment"]}
    assert (
        units["lathe-2"]["running"] == {"work_order": "WO-1", "operation": "turn"} and "running" not in units["lathe-1"]
    )
    shop.apply(events(finish(4, "WO-2", "mill"), start(4, "WO-2", "turn", equipment="lathe-1")))
    assert shop.to_dict()["work_orders"][1]["operations"][1]["equipment_used"] == "lathe-1"
    state_now, _ = shop.shop_state()
    assert state_now.jobs.is_flexible and state_now.running[:, 2].tolist() == [1, 0]  # lathe-2, lathe-1


REFUSED = [
    ([start(0, "WO-1", "turn", equipment="mill")], "equipment", "equipment 'mill' cannot run operation 'turn' of"
                                                                " work order 'WO-1' (eligible: 'lathe-1', 'lathe-2')"),
    ([start(0, "WO-1", "turn")], "equipment", "can run on 'lathe-1', 'lathe-2': name the one it started on"),
    ([start(0, "WO-1", "turn", equipment="lathe-1"), start(0, "WO-2", "mill"), finish(4, "WO-2", "mill"),
      start(4, "WO-2", "turn", equipment="lathe-1")], "equipment", "is running operation 'turn'"),
    ([down(0, "lathe-2"), start(1, "WO-1", "turn", equipment="lathe-2")], "equipment", "is down since 0"),
    ([start(0, "WO-1", "turn", equipment="lathe-1"), finish(5, "WO-1", "turn") | {"equipment": "lathe-2"}],
     "equipment", "runs on 'lathe-1', not 'lathe-2'"),
]  # fmt: skip


@pytest.mark.parametrize("rows, field, reason", REFUSED)
def test_starts_on_ineligible_busy_or_down_equipment_are_refused_by_name(rows, field, reason):
    shop = cell()
    before = shop.to_dict()
    with pytest.raises(RefusedEventError) as caught:
        shop.apply(events(*rows))
    assert caught.value.field == field and reason in str(caught.value), str(caught.value)
    assert shop.to_dict() == before


def test_restart_frees_a_cut_operation_to_start_on_another_eligible_unit():
    shop = cell(interruption="restart")
    shop.apply(events(start(0, "WO-1", "turn", equipment="lathe-1"), down(2, "lathe-1")))
    turn = shop.to_dict()["work_orders"][0]["operations"][0]
    assert turn["status"] == "waiting" and "equipment_used" not in turn
    shop.apply(events(start(3, "WO-1", "turn", equipment="lathe-2")))
    assert shop.to_dict()["work_orders"][0]["operations"][0]["end"] == 3 + 8


def test_a_frozen_horizon_keeps_held_work_on_its_previous_unit():
    from baselines import deciders
    from baselines.repair import hold_frozen

    state, active = cell().shop_state()
    plan = deciders.solve(state, "mwkr+eet").schedule
    rows = {(int(j), int(k)): int(m) for j, k, m in zip(plan.job, plan.op, plan.machine)}
    assert rows[0, 0] == 0  # the new plan turns WO-1 on lathe-1 (5 there, 8 on lathe-2)
    keys = [[(o.id, op.id) for op in o.operations] for o in active]
    previous = {("WO-1", "turn"): (0, 1), ("WO-2", "mill"): (0, 2)}  # the last plan had it on lathe-2
    held_plan, held = hold_frozen(state, plan, previous, keys, 10, "mwkr+eet")
    assert held == 2 and not plan_violations(state, held_plan)
    kept = {(int(j), int(k)): (int(m), int(e) - int(s)) for j, k, m, s, e in
            zip(held_plan.job, held_plan.op, held_plan.machine, held_plan.start, held_plan.end)}  # fmt: skip
    assert kept[0, 0] == (1, 8), "the held turning left lathe-2 (or kept lathe-1's duration)"


def test_stability_counts_operations_that_changed_equipment():
    def row(order, unit, s):
        return {"work_order": order, "operation": "op", "equipment": unit, "start": s, "end": s + 1,
                "status": "planned"}  # fmt: skip

    before = [row("A", "lathe-1", 0), row("B", "lathe-1", 1)]
    after = [row("A", "lathe-1", 0), row("B", "lathe-2", 0)]
    changes = stability(before, after)
    assert (changes["equipment_changes"], changes["moved"], changes["position_changes"]) == (1, 1, 1)
    assert changes["changes"][0] | {} == {"work_order": "B", "operation": "op", "equipment": "lathe-2",
                                         "equipment_from": "lathe-1", "start_from": 1, "start_to": 0,
                                         "position_from": 1, "position_to": 0}  # fmt: skip
    assert stability(None, after)["equipment_changes"] == 0


def test_a_session_replans_a_breakdown_onto_the_other_lathe(models):  # noqa: F811
    import tempfile
    from pathlib import Path

    from service.shops import Shops
    from service.store import EventStore
    from tests.test_sessions import wait_for_version

    with tempfile.TemporaryDirectory() as folder:
        shops = Shops(EventStore(Path(folder) / "shops.sqlite3"), models)
        try:
            shop_id = shops.create(json.dumps(CELL | {"method": "tabu:0.3"}).encode())["id"]
            wait_for_version(shops, shop_id, 1)
            batch = {"events": [{"event_id": "d", "type": "equipment_down", "time": 0, "equipment": "lathe-1",
                                 "expected_until": 100}]}  # fmt: skip
            shops.ingest(shop_id, json.dumps(batch).encode())
            plan = wait_for_version(shops, shop_id, 2)
            used = {(r["work_order"], r["operation"]): r["equipment"] for r in plan["plan"]}
            assert used["WO-1", "turn"] == "lathe-2" and used["WO-2", "turn"] == "lathe-2"
            assert plan["stability"]["equipment_changes"] >= 1
        finally:
            shops.close()


# ---------------------------------------------------------------------- bad input
BAD_OPERATIONS = [
    ({"id": "turn", "alternatives": []}, "lists no eligible equipment"),
    ({"id": "turn", "alternatives": [{"equipment": "lathe-1", "duration": 5}, {"equipment": "lathe-1", "duration": 6}]},
     "lists equipment 'lathe-1' twice"),
    ({"id": "turn", "alternatives": [{"equipment": "lathe-9", "duration": 5}]}, "unknown equipment 'lathe-9'"),
    ({"id": "turn", "alternatives": [{"equipment": "lathe-1", "duration": 0}]}, "greater than 0"),
    ({"id": "turn", "equipment_class": "grinder", "duration": 4}, "no equipment belongs to class 'grinder'"),
    ({"id": "turn", "equipment_class": "lathe"}, "gives equipment_class without a duration"),
    ({"id": "turn", "equipment": "mill", "alternatives": [{"equipment": "mill", "duration": 1}]},
     "gives equipment and alternatives"),
    ({"id": "turn", "duration": 3}, "names no equipment"),
    ({"id": "turn", "duration": 3, "alternatives": [{"equipment": "mill", "duration": 1}]}, "gives duration and"),
]  # fmt: skip


@pytest.mark.parametrize("operation, reason", BAD_OPERATIONS)
def test_bad_equipment_lists_are_422_naming_the_work_order_and_operation(server, operation, reason):  # noqa: F811
    body = flexible_request()
    body["work_orders"][0]["operations"][0] = operation
    with pytest.raises(InvalidRequestError, match=reason) as caught:
        parse_request(json.dumps(body).encode(), ScheduleRequest)
    assert "work order 'WO-1' operation 'turn'" in str(caught.value), str(caught.value)
    response = httpx.post(server.url + "/v1/schedule", json=body, timeout=30)
    assert response.status_code == 422 and reason in response.json()["detail"], response.text


def test_a_started_operation_with_several_options_must_say_where_it_runs():
    body = json.loads(json.dumps(RescheduleRequest.model_config["json_schema_extra"]["examples"][1]))
    del body["work_orders"][0]["operations"][0]["equipment_used"]
    with pytest.raises(InvalidRequestError, match="can run on 'lathe-1', 'lathe-2': give equipment_used"):
        parse_request(json.dumps(body).encode(), RescheduleRequest)
    body["work_orders"][0]["operations"][0]["equipment_used"] = "mill"
    with pytest.raises(InvalidRequestError, match="on 'mill', which cannot run it"):
        parse_request(json.dumps(body).encode(), RescheduleRequest)


# ---------------------------------------------------------------------- stateless routes over HTTP
@pytest.mark.parametrize("method", ["mwkr+eet", "spt+spt", "cpsat:1", "tabu:1", "hybrid:1", "policy", "policy:8"])
def test_schedule_plans_alternative_equipment(server, method):  # noqa: F811
    shop = instances.load("mk01")
    response = httpx.post(server.url + "/v1/schedule", json=shop_request(shop, method, budget_ms=3000), timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    plan = validate_schedule(shop, as_schedule(body["plan"]))  # every operation on an eligible machine
    assert body["objectives"]["makespan"] == plan.makespan and len(set(plan.machine.tolist())) == shop.n_machines
    classic = httpx.post(server.url + "/v1/schedule", json=example(ScheduleRequest) | {"method": "mwkr"}, timeout=30)
    assert classic.status_code == 200 and {p["equipment"] for p in classic.json()["plan"]} == {"lathe", "mill"}


@pytest.mark.parametrize("method", ["atc+eet", "cpsat:1", "tabu:1", "hybrid:1"])
def test_reschedule_moves_waiting_work_off_a_down_unit(server, method):  # noqa: F811
    body = json.loads(json.dumps(RescheduleRequest.model_config["json_schema_extra"]["examples"][1])) | {
        "method": method}  # fmt: skip
    response = httpx.post(server.url + "/v1/reschedule", json=body, timeout=30)
    assert response.status_code == 200, response.text
    by_id = {(p["work_order"], p["operation"]): p for p in response.json()["plan"]}
    assert by_id["WO-1", "turn"]["equipment"] == "lathe-1" and (by_id["WO-1", "turn"]["end"]) == 3  # done stays
    assert by_id["WO-2", "turn"]["equipment"] == "lathe-2", "the waiting turning stayed on the down lathe"
    state, active = to_state(RescheduleRequest.model_validate(body))
    index = {"lathe-1": 0, "lathe-2": 1, "mill": 2}
    rows = [(i, k, index[by_id[o.id, op.id]["equipment"]], by_id[o.id, op.id]["start"], by_id[o.id, op.id]["end"])
            for i, o in enumerate(active) for k, op in enumerate(o.operations)]  # fmt: skip
    from sched_env.schedule import Schedule

    assert not plan_violations(state, Schedule(*zip(*rows)))


def test_the_openapi_schema_shows_alternatives_and_equipment_classes(server):  # noqa: F811
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    operation = schema["components"]["schemas"]["Operation"]["properties"]
    assert {"alternatives", "equipment_class", "equipment", "duration"} <= set(operation)
    examples = schema["components"]["schemas"]["ScheduleRequest"]["examples"]
    assert any("alternatives" in json.dumps(e) and "equipment_class" in json.dumps(e) for e in examples)


# ---------------------------------------------------------------------- kill -9 with flexible events
FLEXIBLE_STREAM_SHOP = {"equipment": [{"id": f"M{m}", "classes": ["cell"]} for m in range(4)], "method": "mwkr",
                        "budget_ms": 300}  # fmt: skip


def test_flexible_events_survive_kill_9(tmp_path):
    from tests.test_service_shops import AUTH, Served, create, send_with_retries, wait_quiet

    served, stop = Served(tmp_path / "shops.sqlite3").start(), threading.Event()
    try:
        shop_id = create(served, FLEXIBLE_STREAM_SHOP)
        url = served.url + f"/v1/shops/{shop_id}/events"
        rows, acknowledged = replay_stream(150, units=4, prefix="fx-", flexible=True), []

        def sender() -> None:
            for first in range(0, len(rows), 3):
                send_with_retries(url, rows[first : first + 3], acknowledged, stop)
                time.sleep(0.01)

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        while len(acknowledged) < 60:
            time.sleep(0.01)
        served.kill()
        served.start()
        thread.join(timeout=120)
        assert not thread.is_alive() and len(acknowledged) == len(rows)
        state = httpx.get(served.url + f"/v1/shops/{shop_id}", headers=AUTH).json()
        expected = ShopSession(ShopCreate.model_validate(FLEXIBLE_STREAM_SHOP))
        expected.apply(EventBatch.model_validate({"events": rows}).events)
        assert {k: state[k] for k in expected.to_dict()} == expected.to_dict()
        quiet = wait_quiet(served, shop_id, len(rows))
        assert quiet["events"] == len(rows)
    finally:
        stop.set()
        served.stop()
