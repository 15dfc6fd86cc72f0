"""Shop sessions over real HTTP: `sched-env serve --db` in a subprocess on 127.0.0.1, the token on
every session route, per-shop rate limits, size limits, plans waited for, and `kill -9` during an
event stream: after a restart the state equals a replay of every acknowledged event, and a quiet
shop keeps its plan version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")

from experiments.replay_shops import stream as replay_stream  # noqa: E402
from service.schemas import MAX_EVENTS, EventBatch, ShopCreate  # noqa: E402
from service.sessions import ShopSession  # noqa: E402
from tests.test_service import free_port  # noqa: E402
from tests.test_sessions import REFUSED, SHOP  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKEN = "shop-floor-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Served:
    """`sched-env serve` in a subprocess (so that it can be killed with SIGKILL and started again)."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.db, self.extra, self.port = db, extra, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> Served:
        env = {**os.environ, "SCHED_ENV_TOKEN": TOKEN}
        log = self.db.with_suffix(".log")
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "experiments.cli", "serve", "--port", str(self.port), "--db", str(self.db),
                 "--threads", "1", *self.extra], cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited: " + log.read_text()[-2000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready in 180 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = Served(tmp_path_factory.mktemp("shops") / "shops.sqlite3", "--shop-rate", "5").start()
    yield server
    server.stop()


def create(server, body: dict | None = None) -> str:
    response = httpx.post(server.url + "/v1/shops", json=body or SHOP, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/shops/{response.json()['id']}"
    return response.json()["id"]


def stream(n_orders: int) -> list[dict]:
    """A valid event stream: each work order released, started, finished; a breakdown and repair between."""
    return replay_stream(5 * n_orders, units=4, prefix="ev-")


STREAM_SHOP = {"equipment": [{"id": f"M{m}"} for m in range(4)], "method": "mwkr", "budget_ms": 300}


def test_every_session_route_needs_the_token(served):
    shop_id = create(served)
    routes = [("POST", "/v1/shops", SHOP), ("GET", "/v1/shops", None), ("GET", f"/v1/shops/{shop_id}", None),
              ("POST", f"/v1/shops/{shop_id}/events", {"events": stream(1)[:1]}),
              ("GET", f"/v1/shops/{shop_id}/plan", None), ("DELETE", f"/v1/shops/{shop_id}", None)]  # fmt: skip
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = httpx.request(method, served.url + path, json=body, headers=headers, timeout=30)
            assert response.status_code == 401, f"{method} {path} with {headers}: {response.status_code}"
    assert httpx.get(served.url + f"/v1/shops/{shop_id}", headers=AUTH).json()["events"] == 0


def test_a_shop_over_its_rate_gets_429_with_retry_after_and_nothing_applied(served):
    shop_id = create(served, STREAM_SHOP)
    events = stream(8)
    answers = [httpx.post(served.url + f"/v1/shops/{shop_id}/events", json={"events": [event]}, headers=AUTH)
               for event in events[:20]]  # fmt: skip
    statuses = [a.status_code for a in answers]
    assert 429 in statuses and statuses[:10] == [200] * 10, statuses  # a bucket of 2 x 5 batches, then 429
    refused = answers[statuses.index(429)]
    assert int(refused.headers["retry-after"]) >= 1 and "event batches per second" in refused.json()["detail"]
    state = httpx.get(served.url + f"/v1/shops/{shop_id}", headers=AUTH).json()
    assert state["events"] == statuses.count(200), "a 429 batch was applied"
    metrics = httpx.get(served.url + "/metrics", headers=AUTH).text
    assert 'endpoint="/v1/shops/{shop_id}/events",status="429"' in metrics, "session routes are not labelled by route"
    other = create(served, STREAM_SHOP)  # the limit is per shop
    assert (
        httpx.post(served.url + f"/v1/shops/{other}/events", json={"events": events[:1]}, headers=AUTH).status_code
        == 200
    )


def test_size_limits_unknown_shops_and_bad_bodies_are_refused_by_name(served):
    shop_id = create(served, STREAM_SHOP)
    url = served.url + f"/v1/shops/{shop_id}/events"
    too_many = {"events": [{"event_id": f"e{i}", "type": "equipment_up", "time": 0, "equipment": "M0"}
                           for i in range(MAX_EVENTS + 1)]}  # fmt: skip
    answer = httpx.post(url, json=too_many, headers=AUTH, timeout=60)
    assert answer.status_code == 413 and "the limit is 10,000" in answer.json()["detail"]
    time.sleep(0.3)  # the bucket refills
    answer = httpx.post(url, json={"events": [{"event_id": "x", "type": "operation_started", "time": 0}]}, headers=AUTH)
    assert answer.status_code == 422 and "events.0.operation_started.work_order" in answer.json()["detail"]
    answer = httpx.post(url, content=b"{", headers=AUTH)
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["detail"]
    answer = httpx.post(url, content=b" " * (8 * 2**20 + 1), headers=AUTH, timeout=60)
    assert answer.status_code == 413 and "the limit is 8388608" in answer.json()["detail"]
    missing = httpx.get(served.url + "/v1/shops/shop-nope", headers=AUTH)
    assert missing.status_code == 404 and "create one with POST /v1/shops" in missing.json()["detail"]
    bad = httpx.post(served.url + "/v1/shops", json={**SHOP, "method": "no-such-rule"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("method:")


def test_a_second_server_on_the_same_database_is_refused_in_one_line(served):
    process = subprocess.run([sys.executable, "-m", "experiments.cli", "serve", "--port", str(free_port()), "--db",
                              str(served.db)], cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert process.returncode == 2 and "in use by another sched-env server" in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr


def test_a_repeated_event_is_acknowledged_once_over_http(served):
    shop_id = create(served)
    url = served.url + f"/v1/shops/{shop_id}/events"
    started = {"event_id": "mes-1", "type": "operation_started", "time": 0, "work_order": "WO-1", "operation": "turn"}
    finished = {**started, "event_id": "mes-2", "type": "operation_finished", "time": 5}
    first = httpx.post(url, json={"events": [started]}, headers=AUTH).json()
    again = httpx.post(url, json={"events": [started, finished]}, headers=AUTH).json()
    assert (first["accepted"], again["accepted"], again["duplicates"], again["events"]) == (1, 1, ["mes-1"], 2)
    reused = httpx.post(url, json={"events": [{**finished, "time": 6}]}, headers=AUTH)
    assert reused.status_code == 409 and "'mes-2' was used for a different event" in reused.json()["detail"]
    assert httpx.get(served.url + f"/v1/shops/{shop_id}", headers=AUTH).json()["events"] == 2


@pytest.mark.parametrize(("rows", "field", "reason"), REFUSED, ids=[f"{r[1]}: {r[2]}" for r in REFUSED])
def test_every_refused_event_kind_is_409_over_http_and_changes_nothing(served, rows, field, reason):
    shop_id = create(served)
    before = httpx.get(served.url + f"/v1/shops/{shop_id}", headers=AUTH).json()
    events = [{"event_id": f"e{i}", **row} for i, row in enumerate(rows)]
    answer = httpx.post(served.url + f"/v1/shops/{shop_id}/events", json={"events": events}, headers=AUTH)
    last = len(rows) - 1
    assert answer.status_code == 409, answer.text
    assert answer.json()["detail"].startswith(f"events[{last}] ({rows[-1]['type']} 'e{last}'): {field}: ")
    assert reason in answer.json()["detail"]
    after = httpx.get(served.url + f"/v1/shops/{shop_id}", headers=AUTH).json()
    assert {**after, "plan_version": 0} == {**before, "plan_version": 0}, "a refused batch changed the state"


def test_a_plan_can_be_waited_for_and_a_deleted_shop_is_gone(served):
    shop_id = create(served, STREAM_SHOP | {"work_orders": SHOP["work_orders"][:0]})
    first = httpx.get(served.url + f"/v1/shops/{shop_id}/plan?after=0&wait_ms=20000", headers=AUTH, timeout=30)
    assert first.status_code == 200 and first.json()["version"] >= 1
    version = first.json()["version"]
    httpx.post(served.url + f"/v1/shops/{shop_id}/events", json={"events": stream(1)[:1]}, headers=AUTH)
    newer = httpx.get(served.url + f"/v1/shops/{shop_id}/plan?after={version}&wait_ms=20000", headers=AUTH, timeout=30)
    plan = newer.json()
    assert plan["version"] == version + 1 and plan["events"] == 1 and plan["last_event_id"] == "ev-0"
    assert [r["work_order"] for r in plan["plan"]] == ["WO0"] and plan["decider"] == "mwkr"
    assert httpx.delete(served.url + f"/v1/shops/{shop_id}", headers=AUTH).status_code == 204
    assert httpx.get(served.url + f"/v1/shops/{shop_id}/plan", headers=AUTH).status_code == 404
    assert shop_id not in [s["id"] for s in httpx.get(served.url + "/v1/shops", headers=AUTH).json()]


def send_with_retries(url: str, batch: list[dict], acknowledged: list[dict], stop: threading.Event) -> None:
    """Post a batch until the server acknowledges it (it may be down, or die mid-request)."""
    while not stop.is_set():
        try:
            answer = httpx.post(url, json={"events": batch}, headers=AUTH, timeout=10)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if answer.status_code == 429:
            time.sleep(int(answer.headers["retry-after"]) / 10)
            continue
        assert answer.status_code == 200, answer.text
        acknowledged.extend(batch)
        return


def replayed(events: list[dict]) -> dict:
    shop = ShopSession(ShopCreate.model_validate(STREAM_SHOP))
    shop.apply(EventBatch.model_validate({"events": events}).events)
    return shop.to_dict()


def test_kill_9_during_a_stream_loses_no_acknowledged_event(tmp_path):
    server, stop = Served(tmp_path / "shops.sqlite3").start(), threading.Event()
    try:
        shop_id = create(server, STREAM_SHOP)
        url = server.url + f"/v1/shops/{shop_id}/events"
        events, acknowledged = stream(60), []

        def sender() -> None:
            for first in range(0, len(events), 3):
                send_with_retries(url, events[first : first + 3], acknowledged, stop)
                time.sleep(0.01)  # a stream, not a burst: the kill comes in the middle of it

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        while len(acknowledged) < 90:
            time.sleep(0.01)
        server.kill()  # mid-stream: acknowledged events are on disk, the one in flight may or may not be
        at_kill = len(acknowledged)
        server.start()
        thread.join(timeout=120)
        assert not thread.is_alive() and len(acknowledged) == len(events) and at_kill < len(events)
        state = httpx.get(server.url + f"/v1/shops/{shop_id}", headers=AUTH).json()
        expected = replayed(events)
        assert {k: state[k] for k in expected} == expected, "the rebuilt state is not the acknowledged events' state"

        quiet = wait_quiet(server, shop_id, len(events))
        server.kill()
        server.start()
        assert httpx.get(server.url + f"/v1/shops/{shop_id}", headers=AUTH).json() == quiet
        plan = httpx.get(server.url + f"/v1/shops/{shop_id}/plan", headers=AUTH).json()
        assert plan["version"] == quiet["plan_version"] and plan["events"] == len(events)
    finally:
        stop.set()
        server.stop()


def wait_quiet(server: Served, shop_id: str, n_events: int) -> dict:
    """The shop's state once its plan answers all ``n_events`` (and stays so for a moment)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        plan = httpx.get(server.url + f"/v1/shops/{shop_id}/plan", headers=AUTH).json()
        if plan["events"] == n_events:
            time.sleep(0.5)
            state = httpx.get(server.url + f"/v1/shops/{shop_id}", headers=AUTH).json()
            if state["plan_version"] == plan["version"]:
                return state
        time.sleep(0.05)
    raise AssertionError("the plan never caught up with the events")


def test_a_model_registered_while_serving_is_selected_for_a_live_shop_and_kept_after_a_restart(tmp_path):
    """`serve --models DIR`: a file copied into DIR is `policy@NAME` at once (no restart), a live shop
    switches to it (PATCH), plans with it, and keeps it when the server starts again; a name is never
    read as a path, and an unknown name is refused with the names that exist."""
    import shutil

    from agents.loading import shipped_path

    models = tmp_path / "models"
    models.mkdir()
    server = Served(tmp_path / "shops.sqlite3", "--models", str(models)).start()
    try:
        shop_id = create(server, STREAM_SHOP)
        url = server.url + f"/v1/shops/{shop_id}"
        refused = httpx.patch(url, json={"method": "policy@press"}, headers=AUTH, timeout=30)
        assert refused.status_code == 422 and "no model 'press' is registered" in refused.text
        for name in ("../shops", "/etc/passwd"):
            refused = httpx.patch(url, json={"method": f"policy@{name}"}, headers=AUTH, timeout=30)
            assert refused.status_code == 422 and "this host reads none" in refused.text, refused.text
        refused = httpx.patch(url, json={"method": "policy@press:16"}, headers=AUTH, timeout=30)
        assert refused.status_code == 422 and "go before '@': policy:16@press" in refused.text, refused.text
        shutil.copy(shipped_path("dynamic", "onnx"), models / "press.onnx")  # registered while serving
        switched = httpx.patch(url, json={"method": "policy@press", "budget_ms": 400}, headers=AUTH, timeout=30)
        assert switched.status_code == 200 and switched.json()["method"] == "policy@press", switched.text
        assert switched.json()["budget_ms"] == 400
        httpx.post(url + "/events", json={"events": stream(2)}, headers=AUTH, timeout=30).raise_for_status()
        events = len(stream(2))
        for _ in range(100):
            plan = httpx.get(url + "/plan?after=0&wait_ms=5000", headers=AUTH, timeout=30).json()
            if plan["events"] == events:
                break
        assert plan["decider"] == "policy@press" and plan["events"] == events
        other = create(server, STREAM_SHOP | {"method": "policy:4@press"})
        assert httpx.get(server.url + f"/v1/shops/{other}", headers=AUTH).json()["method"] == "policy:4@press"
        server.stop()
        server.start()
        assert httpx.get(url, headers=AUTH, timeout=30).json()["method"] == "policy@press"
    finally:
        server.stop()
