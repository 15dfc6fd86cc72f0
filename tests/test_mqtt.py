"""The MQTT bridge against a real mosquitto (Debian's package, started here) and a real server on
127.0.0.1: events in, retained plans out, refusals on the errors topic (the bridge goes on), the
broker restarted (the bridge reconnects), and events sent while the server is away applied when
it is back (the bridge's broker session is persistent)."""

from __future__ import annotations

import contextlib
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


# ---------------------------------------------------------------------- issue 27: a secured broker
BRIDGE_PASSWORD = "bridge-secret"


def login(broker, username: str | None, password: str | None = None, subscribe: tuple = ()) -> tuple:
    """A client logged in as ``username`` (None: anonymous): (client, connect reason, queue of messages)."""
    messages: queue.Queue = queue.Queue()
    answered, reason = threading.Event(), []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if username is not None:
        client.username_pw_set(username, password)

    def connected(c, _u, _f, code, _p) -> None:
        reason.append(code)
        if not code.is_failure and subscribe:
            c.subscribe([(t, 1) for t in subscribe])
        answered.set()

    client.on_connect = connected
    client.on_message = lambda _c, _u, message: messages.put(message)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert answered.wait(10), "the broker did not answer the connection"
    time.sleep(0.3)  # the subscription is in place
    return client, reason[0], messages


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """mosquitto with allow_anonymous false, a password file and the README's ACL; a server whose
    bridge logs in from $SCHED_ENV_MQTT_PASSWORD-style settings; two shops, one device login each."""
    from service.mqtt import ACL_EXAMPLE

    folder = tmp_path_factory.mktemp("secured")
    users = {"sched-env": BRIDGE_PASSWORD}
    broker = Broker(folder / "broker", users=users, acl=ACL_EXAMPLE)
    broker.start()
    settings = Settings(db=str(folder / "shops.sqlite3"), mqtt=broker.address, mqtt_client_id="sched-env-secured",
                        mqtt_username="sched-env", mqtt_password=BRIDGE_PASSWORD, shop_rate=2.0)  # fmt: skip
    server = LiveServer(settings)
    shops = [open_shop(server), open_shop(server)]
    broker.stop()  # the devices' logins, named after their shops (as an operator adds them)
    broker = Broker(folder / "broker", port=broker.port, users={**users, **{s: f"pw-{s}" for s in shops}},
                    acl=ACL_EXAMPLE).start()  # fmt: skip
    yield broker, server, shops
    server.stop()
    broker.stop()


def wait_for_events(server, shop_id: str, count: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(server.url + f"/v1/shops/{shop_id}").json()
        if state["events"] >= count:
            return state
        time.sleep(0.1)
    raise AssertionError(f"shop {shop_id} did not reach {count} events within {timeout} s")


def test_a_secured_broker_refuses_anonymous_and_wrong_passwords_and_the_bridge_logs_in(secured):
    broker, server, (shop, other) = secured
    for username, password in ((None, None), ("sched-env", "wrong"), (shop, "wrong")):
        client, reason, _ = login(broker, username, password)
        client.loop_stop()
        assert reason.is_failure, f"{username or 'anonymous'} was let in"
    device, reason, answers = login(broker, shop, f"pw-{shop}", subscribe=(f"sched-env/shops/{shop}/plan",))
    try:
        assert not reason.is_failure
        device.publish(f"sched-env/shops/{shop}/events", json.dumps(stream(1)[0]), qos=1).wait_for_publish(10)
        assert wait_for_events(server, shop, 1)["last_event_id"] == "ev-0"  # the bridge logged in and read it
        plan = answers.get(timeout=30)  # the retained plan, readable by this shop's device
        assert plan.topic == f"sched-env/shops/{shop}/plan"
    finally:
        device.loop_stop()
        device.disconnect()


def test_a_device_cannot_write_another_shops_events_nor_read_its_plan_nor_fake_plans(secured):
    broker, server, (shop, other) = secured
    before = httpx.get(server.url + f"/v1/shops/{other}").json()["events"]
    device, _, seen = login(broker, shop, f"pw-{shop}", subscribe=(f"sched-env/shops/{other}/#",))
    spy, _, heard = login(broker, other, f"pw-{other}", subscribe=(f"sched-env/shops/{other}/plan",))
    try:
        heard.get(timeout=30)  # the other shop's own device gets its retained plan
        device.publish(f"sched-env/shops/{other}/events", json.dumps(stream(1)[0]), qos=1).wait_for_publish(10)
        device.publish(f"sched-env/shops/{other}/plan", json.dumps({"version": 999}), qos=1, retain=True)
        time.sleep(1.0)
        assert httpx.get(server.url + f"/v1/shops/{other}").json()["events"] == before, "a device wrote another shop"
        assert seen.empty(), "a device read another shop's topics"
        assert heard.empty(), "a device published a plan (only the bridge may)"
    finally:
        for client in (device, spy):
            client.loop_stop()
            client.disconnect()


def test_mqtt_messages_meet_the_rate_and_size_limits_and_refusals_are_acknowledged(secured):
    """Issue 27, finding 4: MQTT bypassed every limit. Now: the shop's rate (2 batches/s here) and the
    8 MiB size hold, each refusal is answered on the errors topic and acknowledged (the queue goes on)."""
    from service.schemas import MAX_BODY_BYTES

    broker, server, (shop, _) = secured
    start = httpx.get(server.url + f"/v1/shops/{shop}").json()["events"]
    device, _, answers = login(broker, shop, f"pw-{shop}", subscribe=(f"sched-env/shops/{shop}/errors",))
    topic = f"sched-env/shops/{shop}/events"
    try:
        time.sleep(2.5)  # the bucket is full again
        now = httpx.get(server.url + f"/v1/shops/{shop}").json()["time"]
        events = [{"event_id": f"rate-{i}", "type": "work_order_released", "time": now, "work_order": {
            "id": f"R{i}", "operations": [{"id": "a", "equipment": "M0", "duration": 3}]}} for i in range(7)]  # fmt: skip
        for event in events[:6]:  # a burst: the bucket holds 4 (twice the rate); the rest are 429
            device.publish(topic, json.dumps(event), qos=1).wait_for_publish(10)
        deadline, refused, applied = time.monotonic() + 30, [], 0
        while applied + len(refused) < 6:  # every message applied or answered (a slow machine refills more)
            assert time.monotonic() < deadline, f"{applied} applied and {len(refused)} refused of 6 within 30 s"
            with contextlib.suppress(queue.Empty):
                refused.append(json.loads(answers.get(timeout=0.2).payload)["status"])
            applied = httpx.get(server.url + f"/v1/shops/{shop}").json()["events"] - start
        assert refused and set(refused) == {429} and 4 <= applied < 6, (applied, refused)
        time.sleep(1.5)
        device.publish(topic, json.dumps(events[6]), qos=1).wait_for_publish(10)  # the queue still goes on
        assert wait_for_events(server, shop, start + applied + 1)["last_event_id"] == "rate-6"
        device.publish(topic, b" " * (MAX_BODY_BYTES + 1), qos=1).wait_for_publish(30)
        answer = json.loads(answers.get(timeout=30).payload)
        assert answer["status"] == 413 and str(MAX_BODY_BYTES) in answer["detail"]
        assert answers.empty()
    finally:
        device.loop_stop()
        device.disconnect()


def make_certificates(folder) -> tuple:
    """A CA and a server certificate for 127.0.0.1 (openssl), as a plant's PKI would issue them."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: apt-get install openssl")
    ca_key, ca, key, request, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    run = lambda *args: subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "2",
        "-subj",
        "/CN=plant CA",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1")
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", extensions)  # fmt: skip
    return ca, cert, key


def test_the_bridge_speaks_tls_to_a_broker_that_requires_it(tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    broker = Broker(tmp_path / "broker", users={"sched-env": BRIDGE_PASSWORD}, tls=(ca, cert, key)).start()
    settings = Settings(db=str(tmp_path / "shops.sqlite3"), mqtt=broker.address, mqtt_client_id="sched-env-tls",
                        mqtt_username="sched-env", mqtt_password=BRIDGE_PASSWORD, mqtt_ca=str(ca))  # fmt: skip
    server = LiveServer(settings)
    try:
        assert server.server.config.app.state.internal.mqtt.connected.wait(30), "the bridge did not connect over TLS"
        plain, answered = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), threading.Event()
        plain.username_pw_set("sched-env", BRIDGE_PASSWORD)
        plain.on_connect = lambda *_: answered.set()
        plain.connect_async("127.0.0.1", broker.port)
        plain.loop_start()
        assert not answered.wait(3), "a client without TLS was answered"
        plain.loop_stop()
    finally:
        server.stop()
        broker.stop()


def test_a_flood_of_messages_to_one_shop_is_applied_whole_in_order(tmp_path):
    """Issue 27, finding 4: 5 000 messages to one shop. Every one is applied, in order, none refused
    for a full queue (the bridge holds the broker back instead). Its own broker: another server's
    bridge on the same broker would answer 404 for a shop it does not hold."""
    broker = Broker(tmp_path / "broker").start()
    server = LiveServer(Settings(db=str(tmp_path / "shops.sqlite3"), mqtt=broker.address,
                                 mqtt_client_id="sched-env-flood", shop_rate=100_000.0))  # fmt: skip
    shop_id = open_shop(server)
    listener = Listener(broker, f"sched-env/shops/{shop_id}/errors")
    try:
        count = 3_000
        for i in range(count):  # each machine down, up, down, ...: valid only in order
            kind = "equipment_down" if (i // 4) % 2 == 0 else "equipment_up"
            listener.client.publish(f"sched-env/shops/{shop_id}/events", json.dumps(
                {"event_id": f"f{i}", "type": kind, "time": 0, "equipment": f"M{i % 4}"}), qos=1)  # fmt: skip
        state = wait_for_events(server, shop_id, count, timeout=120)
        answers = [m.payload.decode()[:300] for m in list(listener.messages.queue)]
        assert state["events"] == count and not answers, answers
    finally:
        listener.close()
        server.stop()
        broker.stop()


def test_servers_sharing_a_broker_keep_to_their_topic_roots(broker, bridged, tmp_path):
    """Replicas on one broker: each under its own --mqtt-topic-root, or each answers 404 for the other's shops."""
    other = LiveServer(Settings(db=str(tmp_path / "line-2.sqlite3"), mqtt=broker.address, mqtt_client_id="line-2",
                                mqtt_topic_root="plant-1/line-2"))  # fmt: skip
    shop_id = open_shop(other)
    listener = Listener(broker, "+/shops/+/errors", "plant-1/line-2/shops/+/plan", "sched-env/shops/+/plan")
    try:
        listener.publish(f"plant-1/line-2/shops/{shop_id}/events", stream(1)[0])
        message, plan = listener.next("/plan", lambda plan: plan["shop"] == shop_id and plan["events"] == 1)
        assert message.topic == f"plant-1/line-2/shops/{shop_id}/plan"
        time.sleep(0.5)
        assert not [m.topic for m in list(listener.messages.queue) if "errors" in m.topic], (
            "a server answered for another's shop"
        )
    finally:
        listener.close()
        other.stop()
    with pytest.raises(ValueError, match="without wildcards"):
        Settings(mqtt="localhost:1883", mqtt_topic_root="plant/+/x")


def test_flexible_events_in_by_mqtt_and_plans_name_the_equipment_used(broker, bridged):
    """Operations with alternatives or an equipment class, started on one of their units over MQTT:
    the state says where each ran and the plan assigns every waiting operation an eligible unit."""
    from experiments.replay_shops import stream as replay_stream
    from tests.test_service_flexible import FLEXIBLE_STREAM_SHOP

    answer = httpx.post(bridged.url + "/v1/shops", json=FLEXIBLE_STREAM_SHOP, timeout=30)
    assert answer.status_code == 201, answer.text
    shop_id = answer.json()["id"]
    listener = Listener(broker, f"sched-env/shops/{shop_id}/#")
    try:
        events = replay_stream(
            7, units=4, prefix="fx-", flexible=True
        )  # WO0 released, started on M1 (an alternative), done; WO1 released...
        listener.publish(f"sched-env/shops/{shop_id}/events", {"events": events})
        _, plan = listener.next("/plan", lambda plan: plan["events"] == 7)
        state = httpx.get(bridged.url + f"/v1/shops/{shop_id}").json()
        assert state["work_orders"][0]["operations"][0]["equipment_used"] == "M2"  # WO1 runs on M2 (class 'cell')
        assert {r["equipment"] for r in plan["plan"]} <= {f"M{m}" for m in range(4)}
    finally:
        listener.close()
