"""service/sessions.py, shops.py, store.py without a server: every event kind applied and every
refused kind named, batches all-or-none, repeats acknowledged once, the log replayed to the same
state and plan version, frozen horizons held, stability counted, and a replan per accepted batch."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from baselines.repair import hold_frozen
from experiments.replay_shops import stream as replay_stream  # noqa: E402
from sched_env.snapshot import plan_violations  # noqa: E402
from service.schemas import EventBatch, ShopCreate  # noqa: E402
from service.sessions import RefusedEventError, ShopSession, stability  # noqa: E402
from service.shops import ShopError, Shops  # noqa: E402
from service.store import EventStore, StoreError  # noqa: E402

SHOP = {
    "equipment": [{"id": "lathe"}, {"id": "mill"}, {"id": "drill", "maintenance": [{"start": 50, "end": 60}]}],
    "method": "mwkr", "budget_ms": 500,
    "work_orders": [
        {"id": "WO-1", "due": 20, "operations": [{"id": "turn", "equipment": "lathe", "duration": 5},
                                                 {"id": "face", "equipment": "mill", "duration": 3}]},
        {"id": "WO-2", "priority": 3, "operations": [{"id": "mill", "equipment": "mill", "duration": 4},
                                                     {"id": "turn", "equipment": "lathe", "duration": 2}]},
    ],
}  # fmt: skip


def session(**changes) -> ShopSession:
    return ShopSession(ShopCreate.model_validate({**SHOP, **changes}))


def events(*rows: dict) -> list:
    with_ids = [{"event_id": f"e{i}", **row} for i, row in enumerate(rows)]
    return EventBatch.model_validate({"events": with_ids}).events


def start(t, order, op, **extra):
    return {"type": "operation_started", "time": t, "work_order": order, "operation": op, **extra}


def finish(t, order, op):
    return {"type": "operation_finished", "time": t, "work_order": order, "operation": op}


def down(t, unit, until=None):
    return {"type": "equipment_down", "time": t, "equipment": unit} | ({"expected_until": until} if until else {})


def up(t, unit):
    return {"type": "equipment_up", "time": t, "equipment": unit}


def release(t, order, *ops, **extra):
    operations = [{"id": op, "equipment": unit, "duration": d} for op, unit, d in ops]
    return {"type": "work_order_released", "time": t, "work_order": {"id": order, "operations": operations, **extra}}


def test_a_work_order_runs_through_its_operations_and_completes():
    shop = session()
    shop.apply(events(start(0, "WO-1", "turn"), finish(5, "WO-1", "turn"), start(5, "WO-1", "face", equipment="mill"),
                      finish(8, "WO-1", "face")))  # fmt: skip
    state = shop.to_dict()
    assert state["time"] == 8 and state["events"] == 4 and state["last_event_id"] == "e3"
    assert [o["id"] for o in state["work_orders"]] == ["WO-2"] and state["work_orders_completed"] == 1


def test_a_running_operation_is_expected_to_end_after_its_duration_and_downtime_when_resumed():
    shop = session()
    shop.apply(events(start(0, "WO-1", "turn"), down(2, "lathe", until=6)))
    turn = shop.to_dict()["work_orders"][0]["operations"][0]
    assert (turn["status"], turn["start"], turn["end"]) == ("running", 0, 9)  # 2 done, 4 down, 3 to go
    shop.apply(events(up(7, "lathe")))
    assert shop.to_dict()["work_orders"][0]["operations"][0]["end"] == 10  # back at 7: 3 more


def test_restart_puts_a_cut_operation_back_to_waiting():
    shop = session(interruption="restart")
    shop.apply(events(start(0, "WO-1", "turn"), down(2, "lathe")))
    state = shop.to_dict()
    assert state["work_orders"][0]["operations"][0]["status"] == "waiting"
    lathe = state["equipment"][0]
    assert lathe["status"] == "down" and "running" not in lathe and lathe["planned_back"] == 2 + 60  # assumed_repair


def test_cancel_and_change_a_work_order():
    shop = session()
    shop.apply(events(start(0, "WO-2", "mill"), {"type": "work_order_cancelled", "time": 1, "work_order": "WO-2"},
                      {"type": "work_order_changed", "time": 1, "work_order": "WO-1", "due": None, "priority": 7}))  # fmt: skip
    state = shop.to_dict()
    assert state["work_orders_cancelled"] == 1 and "running" not in state["equipment"][1]
    assert state["work_orders"] == [{**state["work_orders"][0], "due": None, "priority": 7}]


REFUSED = [
    ([finish(1, "WO-1", "turn")], "operation", "has not started"),
    ([start(0, "WO-1", "face")], "operation", "operations run in order"),
    ([start(0, "WO-1", "turn"), start(1, "WO-1", "turn")], "operation", "already running"),
    ([start(0, "WO-1", "turn"), start(1, "WO-2", "turn")], "operation", "operations run in order"),
    ([start(0, "WO-1", "turn"), finish(5, "WO-1", "turn"), start(5, "WO-2", "mill"), start(5, "WO-1", "face")],
     "equipment", "is running operation 'mill'"),
    ([start(3, "WO-1", "turn"), finish(2, "WO-1", "turn")], "time", "before the shop's time 3"),
    ([start(0, "WO-9", "turn")], "work_order", "unknown work order 'WO-9'"),
    ([start(0, "WO-1", "bore")], "operation", "has no operation 'bore'"),
    ([start(0, "WO-1", "turn", equipment="mill")], "equipment", "runs on 'lathe', not 'mill'"),
    ([down(0, "press")], "equipment", "unknown equipment 'press'"),
    ([up(0, "lathe")], "equipment", "is not down"),
    ([down(0, "lathe", until=9), start(1, "WO-1", "turn")], "equipment", "is down since 0"),
    ([start(0, "WO-1", "turn"), down(1, "lathe", until=3), finish(2, "WO-1", "turn")], "equipment", "is down"),
    ([down(4, "lathe", until=4)], "expected_until", "not after the event's time"),
    ([release(0, "WO-1", ("x", "mill", 1))], "work_order.id", "already in the shop"),
    ([release(0, "WO-3", ("x", "saw", 1))], "work_order.operations[0].equipment", "unknown equipment 'saw'"),
    ([release(0, "WO-3", ("x", "mill", 1), ("x", "lathe", 1))], "work_order.operations[1].id", "duplicated"),
    ([release(0, "WO-3", ("x", "mill", 1), release=9), start(5, "WO-3", "x")], "time", "released at 9"),
    ([{"type": "work_order_cancelled", "time": 0, "work_order": "WO-1"}, start(1, "WO-1", "turn")],
     "work_order", "work order 'WO-1' is cancelled"),
    ([{"type": "work_order_changed", "time": 0, "work_order": "WO-1"}], "due", "give a new due date"),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "field", "reason"), REFUSED, ids=[f"{r[1]}: {r[2]}" for r in REFUSED])
def test_every_refused_event_names_the_event_and_the_field_and_changes_nothing(rows, field, reason):
    shop = session()
    before = shop.to_dict()
    with pytest.raises(RefusedEventError) as refused:
        shop.apply(events(*rows))
    last = len(rows) - 1
    assert refused.value.index == last and refused.value.field == field, str(refused.value)
    assert f"events[{last}] ({rows[-1]['type']} 'e{last}'): {field}: " in str(refused.value)
    assert reason in str(refused.value)
    assert shop.to_dict() == before, "a refused batch changed the state"


# ---------------------------------------------------------------------- the service's shops, in memory
@pytest.fixture(scope="module")
def models():
    from agents.loading import load_policy

    return {"static": load_policy(kind="static"), "dynamic": load_policy(kind="dynamic")}


def wait_for_version(shops: Shops, shop_id: str, version: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shop = shops.get(shop_id)
        if shop.plan_version >= version and not shop.in_flight:
            return json.loads(shops.plan(shop_id)[1])
        time.sleep(0.01)
    raise AssertionError(f"no plan version {version} within 60 s")


def post(shops: Shops, shop_id: str, *rows: dict, ids=None) -> dict:
    ids = ids or [f"x{time.perf_counter_ns()}-{i}" for i in range(len(rows))]
    body = {"events": [{"event_id": i, **row} for i, row in zip(ids, rows)]}
    return shops.ingest(shop_id, json.dumps(body).encode())


def test_a_repeated_event_is_acknowledged_once_and_a_reused_id_refused(models):
    shops = Shops(EventStore(None), models)
    shop_id = shops.create(json.dumps(SHOP).encode())["id"]
    first = post(shops, shop_id, start(0, "WO-1", "turn"), ids=["a"])
    again = post(shops, shop_id, start(0, "WO-1", "turn"), finish(5, "WO-1", "turn"), ids=["a", "b"])
    assert (first["accepted"], again["accepted"], again["duplicates"], again["events"]) == (1, 1, ["a"], 2)
    with pytest.raises(ShopError) as reused:
        post(shops, shop_id, up(6, "lathe"), ids=["b"])
    assert reused.value.status == 409 and "'b' was used for a different event" in reused.value.detail
    with pytest.raises(ShopError) as refused:
        post(shops, shop_id, start(6, "WO-1", "face"), finish(7, "WO-2", "mill"), ids=["c", "d"])
    assert refused.value.status == 409 and refused.value.detail.startswith("events[1] (operation_finished 'd')")
    assert shops.get(shop_id).session.applied == 2, "the refused batch's first event was applied"
    shops.close()


def test_each_accepted_batch_is_replanned_with_a_valid_plan_and_its_changes(models):
    shops = Shops(EventStore(None), models)
    shop_id = shops.create(json.dumps(SHOP).encode())["id"]
    first = wait_for_version(shops, shop_id, 1)
    assert first["events"] == 0 and first["stability"]["added"] == 4 and first["version"] == 1
    post(shops, shop_id, start(0, "WO-2", "mill"), down(1, "lathe", until=30))
    second = wait_for_version(shops, shop_id, 2)
    assert second["events"] == 2 and second["shop_time"] == 1 and second["decider"] == "mwkr"
    assert {r["status"] for r in second["plan"]} == {"running", "planned"}
    assert all(r["start"] >= 30 for r in second["plan"] if r["equipment"] == "lathe")
    shop = shops.get(shop_id)
    state, active = shop.session.shop_state()
    assert second["stability"]["compared"] == 3 and second["stability"]["moved"] >= 1
    assert second["response_time_ms"] > 0 and {"makespan", "total_weighted_tardiness"} <= set(second["objectives"])
    assert len(active) == 2 and state.time == 1
    shops.close()


def test_the_log_replays_to_the_same_state_and_plan_version(models, tmp_path):
    path = tmp_path / "shops.sqlite3"
    shops = Shops(EventStore(path), models)
    shop_id = shops.create(json.dumps({**SHOP, "interruption": "restart"}).encode())["id"]
    post(shops, shop_id, start(0, "WO-1", "turn"), down(2, "lathe"), release(3, "WO-3", ("x", "drill", 4), due=9))
    post(shops, shop_id, up(4, "lathe"), start(4, "WO-3", "x"), {"type": "work_order_changed", "time": 5,
                                                                  "work_order": "WO-2", "priority": 9})  # fmt: skip
    plan = wait_for_version(shops, shop_id, 1)
    while shops.get(shop_id).pending or shops.get(shop_id).in_flight:
        time.sleep(0.01)
    before, version = shops.state(shop_id), shops.get(shop_id).plan_version
    with pytest.raises(StoreError, match="in use by another sched-env server"):
        EventStore(path)
    shops.close()
    again = Shops(EventStore(path), models)
    assert again.restore() == 6
    assert again.state(shop_id) == before
    assert again.get(shop_id).plan_version == version and not again.get(shop_id).pending, "replanned what was planned"
    assert json.loads(again.plan(shop_id)[1])["events"] == 6 and plan["shop"] == shop_id
    again.close()


def test_replaying_ten_thousand_events_takes_under_five_seconds(models, tmp_path):
    path = tmp_path / "shops.sqlite3"
    shops = Shops(EventStore(path), models)
    equipment = [{"id": f"M{m}"} for m in range(10)]
    shop_id = shops.create(json.dumps({"equipment": equipment, "method": "mwkr"}).encode())["id"]
    rows = replay_stream(10_000)
    for first in range(0, len(rows), 1000):
        shops.ingest(shop_id, json.dumps({"events": rows[first : first + 1000]}).encode())
    applied = shops.get(shop_id).session.applied
    shops.close()
    again = Shops(EventStore(path), models)
    started = time.perf_counter()
    assert again.restore() == applied == 10_000
    seconds = time.perf_counter() - started
    again.close()
    assert seconds < 5, f"replaying 10 000 events took {seconds:.1f} s; the target is 5 s"


def test_a_frozen_horizon_keeps_the_previous_order_of_what_starts_soon(models):
    shop = session()
    state, active = shop.shop_state()
    from baselines import deciders

    plan = deciders.solve(state, "mwkr").schedule
    keys = [[(o.id, op.id) for op in o.operations] for o in active]
    # the previous plan ran WO-2's mill before WO-1's face (both on the mill), starting before the horizon
    previous = {("WO-2", "mill"): 0, ("WO-1", "turn"): 0, ("WO-1", "face"): 4, ("WO-2", "turn"): 5}
    held_plan, held = hold_frozen(state, plan, previous, keys, 10, "mwkr")
    assert held == 4 and not plan_violations(state, held_plan)
    rows = {(int(j), int(k)): int(s) for j, k, s in zip(held_plan.job, held_plan.op, held_plan.start)}
    assert rows[1, 0] < rows[0, 1], "WO-2's mill no longer comes first on the mill"
    unchanged, none = hold_frozen(state, plan, previous, keys, 0, "mwkr")
    assert none == 0 and unchanged is plan


def test_stability_counts_moved_positions_and_start_shifts():
    def row(order, op, unit, s):
        return {"work_order": order, "operation": op, "equipment": unit, "start": s, "end": s + 1, "status": "planned"}

    before = [row("A", "1", "m", 0), row("B", "1", "m", 1), row("C", "1", "n", 5)]
    after = [row("B", "1", "m", 0), row("A", "1", "m", 1), row("C", "1", "n", 8), row("D", "1", "n", 9)]
    figure = stability(before, after)
    assert (figure["compared"], figure["position_changes"], figure["moved"], figure["added"]) == (3, 2, 3, 1)
    assert figure["start_shift_max"] == 3 and figure["start_shift_mean"] == pytest.approx(5 / 3, abs=1e-3)
    assert stability(after, after)["moved"] == 0


def test_a_batch_the_database_cannot_write_is_refused_503_and_not_applied(models, tmp_path):
    shops = Shops(EventStore(tmp_path / "shops.sqlite3"), models)
    shop_id = shops.create(json.dumps(SHOP).encode())["id"]
    shops.store.db.execute("PRAGMA query_only = ON")  # as a full or read-only disk would: every write fails
    with pytest.raises(ShopError) as refused:
        post(shops, shop_id, start(0, "WO-1", "turn"), ids=["a"])
    assert refused.value.status == 503 and "nothing was applied" in refused.value.detail
    assert refused.value.headers["Retry-After"] == "5"
    assert shops.get(shop_id).session.applied == 0 and shops.get(shop_id).session.to_dict()["time"] == 0
    shops.store.db.execute("PRAGMA query_only = OFF")
    assert post(shops, shop_id, start(0, "WO-1", "turn"), ids=["a"])["accepted"] == 1, "the retry was not applied"
    shops.close()


def _restarted(path, models, shop_id: str, before: dict) -> None:
    """Restart on ``path``: the shop comes back with the state it had."""
    again = Shops(EventStore(path), models)
    again.restore()
    assert again.state(shop_id) == before
    again.close()


def _settled(shops: Shops, shop_id: str) -> dict:
    while shops.get(shop_id).pending or shops.get(shop_id).in_flight:
        time.sleep(0.01)
    return shops.state(shop_id)


@pytest.mark.parametrize("change", [{"due": 70}, {"priority": 5}, {"due": None}, {"due": 40, "priority": 2}])
def test_a_work_order_change_with_any_fields_replays_to_the_same_state(models, tmp_path, change):
    """Issue 27, finding 1: events were logged with every field, so a change with only ``due`` was
    refused on restart (every shop lost) and one with only ``priority`` cleared the due date."""
    path = tmp_path / "shops.sqlite3"
    shops = Shops(EventStore(path), models)
    shop_id = shops.create(json.dumps(SHOP).encode())["id"]
    post(shops, shop_id, {"type": "work_order_changed", "time": 1, "work_order": "WO-1", **change})
    before = _settled(shops, shop_id)
    wo1 = next(o for o in before["work_orders"] if o["id"] == "WO-1")
    assert wo1["due"] == change.get("due", 20) and wo1["priority"] == change.get("priority", 1)
    shops.close()
    _restarted(path, models, shop_id, before)


def test_a_format_1_log_is_migrated_when_opened(models, tmp_path):
    """A database written before the format version: every field logged, a left-out field as null."""
    import sqlite3

    from service.store import FORMAT

    path = tmp_path / "shops.sqlite3"
    shops = Shops(EventStore(path), models)
    shop_id = shops.create(json.dumps(SHOP).encode())["id"]
    post(shops, shop_id, {"type": "work_order_changed", "time": 1, "work_order": "WO-1", "priority": 4},
         {"type": "work_order_changed", "time": 2, "work_order": "WO-2", "due": 30})  # fmt: skip
    before = _settled(shops, shop_id)
    shops.close()
    db = sqlite3.connect(path)  # as the old version wrote it: all fields, no format row
    for seq, body in db.execute("SELECT seq, body FROM events").fetchall():
        event = {"due": None, "priority": None, **json.loads(body)}
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (json.dumps(event), seq))
    db.execute("DELETE FROM meta")
    db.commit()
    db.close()
    _restarted(path, models, shop_id, before)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == (str(FORMAT),)
    db.close()


def test_a_database_of_a_newer_format_is_refused_in_one_line(tmp_path):
    import sqlite3

    path = tmp_path / "shops.sqlite3"
    EventStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="format-99 event log, written by a newer sched-env"):
        EventStore(path)


def test_released_and_cancelled_orders_do_not_count_as_open_live_or_on_restart(models, tmp_path):
    """Issue 27, finding 2: the open-operation limit counted every order ever released in a batch,
    and a restart replays the whole log as one batch: 3 x 8 000 operations released and cancelled
    stopped every shop's start-up."""
    path = tmp_path / "shops.sqlite3"
    shops = Shops(EventStore(path), models)
    shop_id = shops.create(json.dumps({**SHOP, "work_orders": []}).encode())["id"]
    big = [(f"op{k}", "lathe", 1) for k in range(8_000)]
    rows = []
    for n in range(3):
        rows += [release(n, f"BIG-{n}", *big), {"type": "work_order_cancelled", "time": n, "work_order": f"BIG-{n}"}]
    post(shops, shop_id, *rows)  # one batch: never more than 8 000 open at once
    before = _settled(shops, shop_id)
    assert before["work_orders_cancelled"] == 3 and before["work_orders"] == []
    shops.close()
    _restarted(path, models, shop_id, before)


def test_released_work_is_bound_by_the_summed_duration_limit_and_an_order_without_due_is_never_late(models):
    """Issue 27, finding 7: released orders skipped the 10^11 summed-durations rule of /v1/schedule
    (5 000 x 10^9 gave a negative tardiness, and orders without a due date were reported late)."""
    from service.schemas import MAX_TOTAL_DURATION

    shops = Shops(EventStore(None), models)
    shop_id = shops.create(json.dumps({**SHOP, "work_orders": []}).encode())["id"]
    longest = 10**9  # the longest operation; 100 of them reach the limit
    half = [(f"op{k}", "lathe", longest) for k in range(MAX_TOTAL_DURATION // longest // 2)]
    post(shops, shop_id, release(0, "A", *half), release(0, "B", *half))
    with pytest.raises(ShopError) as refused:
        post(shops, shop_id, release(1, "C", ("z", "drill", 1)))
    assert refused.value.status == 409 and "the limit is 100,000,000,000" in refused.value.detail
    post(shops, shop_id, {"type": "work_order_cancelled", "time": 2, "work_order": "A"})
    post(shops, shop_id, release(3, "C", ("z", "drill", 7)))  # room again once A left
    plan = wait_for_version(shops, shop_id, 1)
    while shops.get(shop_id).pending or shops.get(shop_id).in_flight:
        time.sleep(0.01)
    plan = json.loads(shops.plan(shop_id)[1])
    assert plan["objectives"]["total_weighted_tardiness"] == 0, "no order has a due date: none can be late"
    shops.close()


class _Flaky:
    """A decider that plans with MWKR unless told to fail."""

    fail = False

    def __init__(self, spec: str) -> None:
        from baselines.rule_decider import RuleDecider

        self.spec, self.rule = spec, RuleDecider("mwkr", "mwkr")

    def solve(self, problem, *, budget_s=None, seed=0, hint=None):
        if _Flaky.fail:
            raise RuntimeError("the planner is out of order\nsecond line")
        return self.rule.solve(problem, budget_s=budget_s, seed=seed, hint=hint)


def test_a_failed_replan_is_visible_and_the_previous_plan_kept_and_marked_stale(models):
    """Issue 27, finding 4 / item 4: a replan that failed left the shop on its old plan, said only in the log."""
    from baselines import deciders

    deciders.register("flaky", lambda spec, **_: _Flaky(spec.text), qualifier="none")
    try:
        _fail_a_replan(models)
    finally:
        deciders._REGISTRY.pop("flaky", None)  # no other test sees it


def _fail_a_replan(models) -> None:
    shops = Shops(EventStore(None), models)
    heard = []
    shops.subscribe(on_failure=lambda shop, failure: heard.append((shop, failure)))
    shop_id = shops.create(json.dumps({**SHOP, "method": "flaky"}).encode())["id"]
    first = wait_for_version(shops, shop_id, 1)
    assert "stale" not in first
    _Flaky.fail = True
    try:
        post(shops, shop_id, start(0, "WO-1", "turn"), ids=["ev-1"])
        deadline = time.monotonic() + 30
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
        version, body = shops.plan(shop_id)
        stale = json.loads(body)
        assert version == 1 and stale["stale"] is True and stale["version"] == 1
        failure = stale["last_replan_failed"]
        assert failure["event"] == 1 and failure["last_event_id"] == "ev-1"
        assert failure["reason"] == "RuntimeError: the planner is out of order"
        assert heard == [(shop_id, failure)] and shops.replan_failures == 1
    finally:
        _Flaky.fail = False
    post(shops, shop_id, finish(5, "WO-1", "turn"))
    fresh = wait_for_version(shops, shop_id, 2)
    assert "stale" not in fresh and "last_replan_failed" not in fresh
    shops.close()


# ---------------------------------------------------------------------- issue 27: fairness and quarantine
def test_the_journal_takes_shops_in_turn_and_bounds_each_shops_queue():
    """Finding 4: 5 000 messages to one shop delayed another shop's event by 14 s (one FIFO)."""
    import threading

    from service.shops import Journal

    journal, gate, done = Journal(per_key=200), threading.Event(), []
    journal.submit("flooded", lambda: gate.wait(10) and done.append("flooded"))
    flood = [journal.submit("flooded", done.append, "flooded") for _ in range(150)]
    other = journal.submit("quiet", done.append, "quiet")
    with pytest.raises(ShopError) as refused:
        for _ in range(100):
            journal.submit("flooded", done.append, "flooded")
    assert refused.value.status == 503 and "already wait for this shop" in refused.value.detail
    gate.set()
    other.result(10)
    assert done.index("quiet") <= 2, f"the quiet shop's write waited behind {done.index('quiet')} flooded ones"
    for future in flood:
        future.result(10)
    journal.close()
    with pytest.raises(ShopError):
        journal.submit("late", done.append, "late")


def test_long_replans_never_take_the_last_thread():
    """Finding 5: two shops planning with cpsat:60 held both threads; a mwkr shop waited 57.9 s."""
    import threading
    from types import SimpleNamespace

    from service.shops import Replanners

    started, release = {}, threading.Event()

    def work(shop) -> None:
        started[shop.id] = time.monotonic()
        if shop.id.startswith("long"):
            release.wait(10)

    planners = Replanners(2, work)
    try:
        t0 = time.monotonic()
        planners.put(t0 + 60, SimpleNamespace(id="long-1"), long=True)
        planners.put(t0 + 60, SimpleNamespace(id="long-2"), long=True)
        time.sleep(0.2)
        planners.put(t0 + 0.3, SimpleNamespace(id="short"))
        deadline = time.monotonic() + 5
        while "short" not in started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "short" in started and "long-2" not in started, started
        release.set()
        while "long-2" not in started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "long-2" in started, "the second long replan never ran"
    finally:
        release.set()
        planners.stop()


def test_a_shop_budget_over_the_servers_cap_is_refused_naming_the_cap(models):
    from service.shops import ShopSettings

    shops = Shops(EventStore(None), models, ShopSettings(max_budget_ms=2_000))
    with pytest.raises(ShopError) as refused:
        shops.create(json.dumps({**SHOP, "budget_ms": 60_000}).encode())
    assert refused.value.status == 422 and "cap of 2000 ms" in refused.value.detail
    assert shops.create(json.dumps({**SHOP, "budget_ms": 2_000}).encode())["budget_ms"] == 2_000
    shops.close()


def test_long_polls_are_bounded_per_shop_and_in_all_and_leave_nothing_behind():
    import asyncio

    from service.shops import PlanWaiters

    async def scenario() -> None:
        waiters = PlanWaiters(per_shop=2, total=3)
        with waiters.waiting("a"), waiters.waiting("a"):
            with pytest.raises(ShopError, match="2 clients already wait for shop 'a'"), waiters.waiting("a"):
                pass
            with waiters.waiting("b") as woken:
                with pytest.raises(ShopError) as refused, waiters.waiting("c"):
                    pass
                assert refused.value.status == 503
                waiters.wake("b")
                await asyncio.wait_for(woken.wait(), 5)
        assert waiters.events == {} and waiters.count == 0

    asyncio.run(scenario())


def test_a_shop_whose_log_cannot_be_read_is_quarantined_alone(models, tmp_path, caplog):
    """Item 2: one unreadable log stopped every shop's start-up; now that shop answers 503 with why."""
    import logging
    import sqlite3

    path = tmp_path / "shops.sqlite3"
    shops = Shops(EventStore(path), models)
    broken, fine = (shops.create(json.dumps(SHOP).encode())["id"] for _ in range(2))
    for shop_id in (broken, fine):
        post(shops, shop_id, start(0, "WO-1", "turn"))
    shops.close()
    db = sqlite3.connect(path)
    db.execute('UPDATE events SET body = \'{"type": "truncated\' WHERE shop = ?', (broken,))
    db.commit()
    db.close()
    caplog.set_level(logging.ERROR, "sched_env")
    again = Shops(EventStore(path), models)
    assert again.restore() == 1
    assert again.state(fine)["events"] == 1
    with pytest.raises(ShopError) as refused:
        again.state(broken)
    assert (
        refused.value.status == 503 and "quarantined" in refused.value.detail and "Invalid JSON" in refused.value.detail
    )
    with pytest.raises(ShopError):
        again.submit_events(broken, b"{}")
    # (the first Shops' replanner may also log, late, about the closed database: look for the quarantine line)
    assert any(r.getMessage().startswith(f"shop {broken} is quarantined") for r in caplog.records)
    listed = {row["id"]: row for row in again.shop_list()}
    assert "quarantined" in listed[broken] and listed[fine]["events"] == 1
    again.delete(broken)  # a quarantined shop can be ended
    assert broken not in {row["id"] for row in again.shop_list()}
    again.close()
    final = Shops(EventStore(path), models)
    assert final.restore() == 1 and final.quarantined == {}, "the deleted shop's log is still there"
    final.close()


def test_a_writer_may_wait_for_room_in_a_full_queue_instead_of_being_refused():
    """The MQTT bridge waits (back-pressure on the broker): refusing dropped 1 827 of 3 000 messages."""
    import threading

    from service.shops import Journal

    journal, gate, running, done = Journal(per_key=2), threading.Event(), threading.Event(), []
    journal.submit("shop", lambda: running.set() or gate.wait(10))
    assert running.wait(10)
    journal.submit("shop", done.append, 1)
    journal.submit("shop", done.append, 2)
    threading.Timer(0.3, gate.set).start()
    journal.submit("shop", done.append, 3, wait_s=10).result(10)
    assert done == [1, 2, 3]
    journal.close()


def test_a_session_order_without_a_due_date_is_never_tardy(models):
    """Issue 27, finding 7: orders with no due date were reported late (tardiness 1.275e12)."""
    shops = Shops(EventStore(None), models)
    orders = [{"id": f"W{i}", "operations": [{"id": "a", "equipment": "lathe", "duration": 10**9}]} for i in range(5)]
    orders[0]["due"] = 10
    shop_id = shops.create(json.dumps({**SHOP, "work_orders": orders}).encode())["id"]
    plan = wait_for_version(shops, shop_id, 1)
    end_of_w0 = next(r["end"] for r in plan["plan"] if r["work_order"] == "W0")
    assert plan["objectives"]["total_weighted_tardiness"] == end_of_w0 - 10  # W0 alone is late
    shops.close()
