"""The MQTT bridge: shop events in, plans out, through a broker the shop floor already runs.

    sched-env serve --mqtt broker.local:1883

- Subscribes to ``sched-env/shops/+/events`` (QoS 1): a message holds the same JSON as
  ``POST /v1/shops/{id}/events`` (or one event object). A message is acknowledged to the broker
  (PUBACK) only once its events are on disk, so a message the server had not logged when it
  died is delivered again (the bridge's session is persistent: a fixed client id, clean session
  off) and its ``event_id`` makes the repeat harmless.
- Publishes every new plan to ``sched-env/shops/{id}/plan`` (retained, QoS 1: a client that
  subscribes later gets the current plan at once); a deleted shop's retained plan is cleared.
- The limits of HTTP hold for messages alike: at most 8 MiB, the same counts (events, operations,
  summed durations), the shop's rate (``--shop-rate`` batches per second). A message that is
  refused (over a limit, bad JSON, a refused event, an unknown shop) is answered on
  ``sched-env/shops/{id}/errors`` with the status and reason *and acknowledged*, so it never blocks
  the queue, and the bridge goes on.
- Security: ``--mqtt-username`` with its password from ``$SCHED_ENV_MQTT_PASSWORD`` or
  ``--mqtt-password-file``; TLS with ``--mqtt-ca`` (and ``--mqtt-cert``/``--mqtt-key`` for a broker
  that asks for client certificates). The README gives a mosquitto password file and ACL that keep
  each device to its own shop's events topic and only the bridge to the plan and errors topics.
- When the broker goes away the bridge reconnects (1 s to 5 s apart), subscribes again and
  publishes each shop's current plan again.
"""

from __future__ import annotations

import json
import logging
import re
import threading

from service.schemas import MAX_BODY_BYTES, RequestError

LOG = logging.getLogger("sched_env.service.mqtt")
#: The topics' first level; servers that share a broker each take their own (``--mqtt-topic-root``),
#: or each would answer 404 on the errors topic for the other's shops.
DEFAULT_ROOT = "sched-env"
#: How long a message waits for room in its shop's full journal queue (holding the broker's delivery).
QUEUE_WAIT_S = 10.0
#: The bytes of a message quoted back on the errors topic.
QUOTED_BYTES = 200
#: A mosquitto ACL for the bridge (broker user ``sched-env``) and one device login per shop (the
#: user name is the shop's id): a device may send only its own shop's events and read only its own
#: plan and errors; only the bridge writes plans and errors. The README shows it; the tests run it.
ACL_EXAMPLE = """\
# the sched-env bridge: every shop's events in, plans and errors out
user sched-env
topic read sched-env/shops/+/events
topic write sched-env/shops/+/plan
topic write sched-env/shops/+/errors

# every other login is a device of the shop its user name names (the shop's id)
pattern write sched-env/shops/%u/events
pattern read sched-env/shops/%u/plan
pattern read sched-env/shops/%u/errors
"""


def broker_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``: port 1883; ``[::1]:1883`` for IPv6) as (host, port); ValueError if not."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]\s]+)(?::(\d{1,5}))?", text.strip())
    if match is None:
        raise ValueError(f"--mqtt {text!r}: give the broker as HOST:PORT, e.g. localhost:1883")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or 1883)
    if not 0 < port < 65536:
        raise ValueError(f"--mqtt {text!r}: the port must be 1-65535")
    return host, port


def topic(shop_id: str, kind: str, root: str = DEFAULT_ROOT) -> str:
    return f"{root}/shops/{shop_id}/{kind}"


def check_root(root: str) -> str:
    """A topic root (``plant-1/line-3``) as given; ValueError if MQTT would not take it as one."""
    if not root or root.startswith("/") or root.endswith("/") or any(c in root for c in "+#\0"):
        raise ValueError(f"--mqtt-topic-root {root!r}: give topic levels without wildcards, e.g. sched-env/line-1")
    return root


class MqttBridge:
    """One paho-mqtt client on its own network thread, feeding the shops' journal."""

    def __init__(self, settings, shops, client_id: str) -> None:
        """``settings``: the service's :class:`~service.app.Settings` (broker, login, TLS files);
        ``shops``: the door, :class:`~service.shops.Shops`."""
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ImportError("the MQTT bridge needs paho-mqtt: pip install 'sched-env[service]'") from None
        self.host, self.port = broker_address(settings.mqtt)
        self.shops, self.root = shops, settings.mqtt_topic_root
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311, manual_ack=True)  # fmt: skip
        if settings.mqtt_username is not None:
            self.client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if settings.mqtt_ca or settings.mqtt_cert:
            self.client.tls_set(ca_certs=settings.mqtt_ca, certfile=settings.mqtt_cert, keyfile=settings.mqtt_key)
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect, self.client.on_disconnect = self._connected, self._disconnected
        self.client.on_message = self._received
        self.client.on_connect_fail = self._unreachable
        self.warned = False  # one warning per outage, not one per retry
        shops.subscribe(on_plan=self.publish_plan, on_failure=self.publish_failure)

    def start(self) -> MqttBridge:
        """Connect in the background (a broker not up yet is retried, as after a restart)."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ callbacks (the network thread)
    def _connected(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            LOG.warning("MQTT broker %s:%d refused the bridge: %s", self.host, self.port, reason_code)
            return
        LOG.info("MQTT bridge connected to %s:%d", self.host, self.port)
        self.warned = False
        client.subscribe(topic("+", "events", self.root), qos=1)
        for shop_id, version, body in self.shops.current_plans():  # again: the broker may have lost them
            self.publish_plan(shop_id, version, body)
        self.connected.set()

    def _disconnected(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connected.clear()
        LOG.warning("MQTT bridge lost the broker %s:%d (%s): reconnecting", self.host, self.port, reason_code)

    def _unreachable(self, _client, _userdata) -> None:
        if not self.warned:
            LOG.warning("MQTT broker %s:%d is not reachable: retrying every 1-5 s", self.host, self.port)
            self.warned = True

    def _received(self, client, _userdata, message) -> None:
        parts = message.topic[len(self.root) + 1 :].split("/")  # shops/<id>/events
        shop_id = parts[1] if len(parts) == 3 else ""
        try:  # the HTTP route's checks, in its order: the shop, its rate, the size, then the journal
            self.shops.allow(shop_id)
            if len(message.payload) > MAX_BODY_BYTES:
                raise RequestError(f"a message of {len(message.payload)} bytes; the limit is {MAX_BODY_BYTES}", 413)
            # a full queue holds this thread (and so the broker's delivery) rather than refusing: back-pressure
            future = self.shops.submit_events(shop_id, bytes(message.payload), True, wait_s=QUEUE_WAIT_S)
        except RequestError as error:
            self._answered(error, shop_id, message)
            return
        future.add_done_callback(lambda done: self._answered(done.exception(), shop_id, message))

    def _answered(self, error: BaseException | None, shop_id: str, message) -> None:
        """After the journal (or a refusal before it): answer a refusal on the errors topic, then
        acknowledge the message (a refused one too: it must not come back and block the queue)."""
        if error is not None:
            refused = isinstance(error, RequestError)
            status, detail = (error.status, error.detail) if refused else (500, "internal error")
            if not refused:
                LOG.error("shop %s: an MQTT message failed: %r", shop_id, error)
            answer = {"shop": shop_id, "status": status, "detail": detail,
                      "message": bytes(message.payload[:QUOTED_BYTES]).decode("utf-8", "replace")}  # fmt: skip
            self.client.publish(topic(shop_id, "errors", self.root), json.dumps(answer), qos=1)
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    # ------------------------------------------------------------------ plans out (replanner threads)
    def publish_failure(self, shop_id: str, failure: dict) -> None:
        """A failed replan on the errors topic (the retained plan stays the previous one)."""
        answer = {"shop": shop_id, "status": 500, "detail": f"replanning after event {failure['event']} failed:"
                  f" {failure['reason']}; the previous plan stands", "replan_failed": failure}  # fmt: skip
        self.client.publish(topic(shop_id, "errors", self.root), json.dumps(answer), qos=1)

    def publish_plan(self, shop_id: str, _version: int, body: bytes | None) -> None:
        """The shop's new plan, retained; ``None`` (the shop was deleted) clears it."""
        self.client.publish(topic(shop_id, "plan", self.root), body or b"", qos=1, retain=True)
