"""The MQTT bridge against a real mosquitto (Debian's package, started here) and a real server on
127.0.0.1: events in, retained plans out, refusals on the errors topic (the bridge goes on), the
broker restarted (the bridge reconnects), and events sent while the server is away applied when
it is back (the bridge's broker session is persistent)."""

from __future__ import annotations

import json
import queue
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed: pip install 'sched-env[service]'")
httpx = pytest.importorskip("httpx")

from experiments.broker import Broker, mosquitto_path  # noqa: E402
from service.app import Settings  # noqa: E402
from tests.test_service import LiveServer  # noqa: E402
from tests.test_service_shops import STREAM_SHOP, stream  # noqa: E402

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed: apt-get install"
                                                                  " mosquitto (.ci/run installs it)")  # fmt: skip


class Listener:
    """A paho client that queues every message of the topics it subscribes to."""

    def __init__(self, broker: Broker, *topics: str) -> None:
        self.messages: queue.Queue = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        # an errors-topic answer is not retained: a listener must be subscribed before anything is sent
        assert subscribed.wait(30), f"the broker did not confirm the subscription to {topics} within 30 s"

    def publish(self, topic: str, payload) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload)
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def next(self, suffix: str, accept=lambda body: True, timeout: float = 30):
        """The next message on a topic ending in ``suffix`` whose JSON ``accept`` takes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if message.topic.endswith(suffix) and message.payload and accept(json.loads(message.payload)):
                return message, json.loads(message.payload)
        raise AssertionError(f"no message on ...{suffix} within {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    running = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def bridged(broker, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "shops.sqlite3"
    live = LiveServer(Settings(db=str(db), mqtt=broker.address, mqtt_client_id="sched-env-test"))
    live.db = db
    yield live
    live.stop()


def assert_retained(broker, shop_id: str, events: int) -> None:
    """A client subscribing now gets the shop's current plan at once, flagged retained."""
    late = Listener(broker, f"sched-env/shops/{shop_id}/plan")
    try:
        message, retained = late.next("/plan")
        assert message.retain and retained["events"] == events, f"the plan answering {events} events is not retained"
    finally:
        late.close()


def open_shop(server) -> str:
    answer = httpx.post(server.url + "/v1/shops", json=STREAM_SHOP, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_events_in_by_mqtt_and_the_plan_out_retained(broker, bridged):
    shop_id = open_shop(bridged)
    listener = Listener(broker, f"sched-env/shops/{shop_id}/#")
    try:
        events = stream(2)
        listener.publish(f"sched-env/shops/{shop_id}/events", {"events": events[:3]})
        listener.publish(f"sched-env/shops/{shop_id}/events", events[3])  # one event object is a batch of one
        _, plan = listener.next("/plan", lambda plan: plan["events"] == 4)
        assert plan["shop"] == shop_id and plan["last_event_id"] == "ev-3" and plan["decider"] == "mwkr"
        state = httpx.get(bridged.url + f"/v1/shops/{shop_id}").json()
        assert state["events"] == 4 and state["equipment"][0]["status"] == "down"
    finally:
        listener.close()
    assert_retained(broker, shop_id, events=4)


def test_a_refused_or_malformed_message_is_answered_on_the_errors_topic_and_the_bridge_goes_on(broker, bridged):
    shop_id = open_shop(bridged)
    listener = Listener(broker, f"sched-env/shops/{shop_id}/errors", f"sched-env/shops/{shop_id}/plan",
                        "sched-env/shops/shop-unknown/errors")  # fmt: skip
    topic = f"sched-env/shops/{shop_id}/events"
    try:
        listener.publish(topic, b"{not json")
        _, error = listener.next("/errors")
        assert error["status"] == 400 and "not valid JSON" in error["detail"] and error["message"] == "{not json"
        listener.publish(topic, {"events": [{"event_id": "f", "type": "operation_finished", "time": 0,
                                             "work_order": "WO0", "operation": "op"}]})  # fmt: skip
        _, error = listener.next("/errors")
        assert error["status"] == 409 and error["detail"].startswith("events[0] (operation_finished 'f'): work_order")
        listener.publish(topic, {"events": [{"event_id": "g", "type": "equipment_up"}]})
        _, error = listener.next("/errors")
        assert error["status"] == 422 and "equipment_up" in error["detail"]
        listener.publish("sched-env/shops/shop-unknown/events", {"events": stream(1)[:1]})
        _, error = listener.next("/errors")
        assert error["status"] == 404 and error["shop"] == "shop-unknown"
        listener.publish(topic, {"events": stream(1)[:2]})
        _, plan = listener.next("/plan", lambda plan: plan["events"] == 2)
        assert plan["last_event_id"] == "ev-1"
    finally:
        listener.close()


def test_the_bridge_reconnects_after_a_broker_restart(broker, bridged):
    shop_id = open_shop(bridged)
    broker.restart()
    listener = Listener(broker, f"sched-env/shops/{shop_id}/plan")
    try:
        _, first = listener.next("/plan")  # kept by the broker, or published again on reconnect
        assert first["shop"] == shop_id
        deadline = time.monotonic() + 30
        events = stream(1)
        while True:  # the bridge needs up to its reconnect delay (1-5 s) to be back
            listener.publish(f"sched-env/shops/{shop_id}/events", {"events": events[:1]})
            try:
                _, plan = listener.next("/plan", lambda plan: plan["events"] == 1, timeout=2)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the bridge did not come back within 30 s of the broker"
        assert plan["last_event_id"] == "ev-0"
    finally:
        listener.close()
    assert_retained(broker, shop_id, events=1)


def test_events_sent_while_the_server_is_away_are_applied_when_it_is_back(broker, tmp_path):
    db = tmp_path / "shops.sqlite3"
    settings = Settings(db=str(db), mqtt=broker.address, mqtt_client_id="sched-env-away")
    server = LiveServer(settings)
    shop_id = open_shop(server)
    listener = Listener(broker, f"sched-env/shops/{shop_id}/plan")
    try:
        listener.next("/plan")
        server.stop()  # the broker keeps the bridge's session and queues what comes meanwhile
        events = stream(3)
        for event in events:
            listener.publish(f"sched-env/shops/{shop_id}/events", event)
        server = LiveServer(settings)
        _, plan = listener.next("/plan", lambda plan: plan["events"] == len(events), timeout=60)
        state = httpx.get(server.url + f"/v1/shops/{shop_id}").json()
        assert state["events"] == len(events) and state["work_orders_completed"] == 3
    finally:
        listener.close()
        server.stop()
