"""The OPC UA bridge: a machine's OPC UA server's signals in as shop events, the plan out.

    sched-env serve --opcua cell-3.toml          # one mapping file per OPC UA server

The bridge is an OPC UA *client* (the ``asyncua`` package): it subscribes to the nodes its
mapping file names and turns their values into events of one shop session, through the same door
and limits as HTTP and MQTT (the shop's rate, the batch checks, the journal). A mapping file::

    endpoint = "opc.tcp://10.0.0.5:4840"        # the machine's OPC UA server
    shop = "shop-..."                            # the session these signals feed
    time_unit_s = 60                             # one unit of shop time, in seconds (default 1)
    epoch = "2026-12-01T00:00:00+00:00"          # shop time 0 (default: the Unix epoch)
    plan_node = "ns=2;s=Cell3.Plan"              # optional: a String node the current plan is written to

    [[node]]
    id = "ns=2;s=Lathe.Up"                       # Boolean (or "up"/"down"): the equipment's status
    kind = "equipment_status"
    equipment = "lathe"

    [[node]]
    id = "ns=2;s=Lathe.Job"                      # String "WO-1/turn" while it runs, "" when idle
    kind = "operation"
    equipment = "lathe"

    [[node]]
    id = "ns=2;s=WO7.Due"                        # a work order's field: "due" or "priority"
    kind = "due"
    work_order = "WO-7"

Events come from comparing a node's value with the shop's state (not with the node's last
value): a status node reading ``false`` while the shop has the equipment up is an
``equipment_down``; an operation node reading ``WO-1/turn`` while the equipment runs nothing is an
``operation_started`` (a different operation running: that one's ``operation_finished`` first).
So a value read twice, or read again after a reconnect, changes nothing, and each event's id is
the node id and the value's *source timestamp*: a repeat is acknowledged as a duplicate. The
event's shop time is the source timestamp in ``time_unit_s`` since ``epoch`` (never before the
shop's time).

**What "acknowledged" means here.** An OPC UA subscription has no per-value acknowledgement to
the machine: the server sends a value once. The bridge logs the derived events on disk (the same
journal as HTTP) before it handles the next value; a value that changes while the bridge or the
connection is down is not sent again by the server, so after every (re)connect the bridge reads
every mapped node's current value and reconciles the shop with it. What the bridge never sees is
an intermediate value that came and went while it was away (a start and finish both missed: the
operation stays waiting in the plan until the next signal about it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instances import SchedEnvError
from service.schemas import RequestError

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, as a package (the service extra installs it)
    import tomli as tomllib

LOG = logging.getLogger("sched_env.service.opcua")
KINDS = ("equipment_status", "operation", "due", "priority")
#: Seconds between reconnection attempts, and between connection checks.
RETRY_S = 2.0


class MappingError(SchedEnvError, ValueError):
    """A mapping file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class NodeMap:
    id: str
    kind: str
    equipment: str | None = None
    work_order: str | None = None


@dataclass(frozen=True)
class Mapping:
    endpoint: str
    shop: str
    nodes: tuple[NodeMap, ...]
    time_unit_s: float = 1.0
    epoch: datetime.datetime = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    plan_node: str | None = None
    source: str = field(default="", compare=False)

    def shop_time(self, stamp: datetime.datetime | None) -> int:
        """A source timestamp in shop time units since the epoch (0 without a timestamp)."""
        if stamp is None:
            return 0
        if stamp.tzinfo is None:  # OPC UA timestamps are UTC
            stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        return max(0, int((stamp - self.epoch).total_seconds() // self.time_unit_s))


def read_mapping(path: str | Path) -> Mapping:
    """A mapping file (TOML, see the module docstring), checked: MappingError names what is wrong."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise MappingError(f"{where}: {error}") from None
    for key in ("endpoint", "shop"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise MappingError(f'{where}: give {key} = "..." (the OPC UA endpoint and the shop session\'s id)')
    nodes = []
    for i, entry in enumerate(data.get("node", [])):
        kind = entry.get("kind")
        if kind not in KINDS or not isinstance(entry.get("id"), str):
            raise MappingError(f'{where}: node {i}: give id = "ns=..." and kind, one of {", ".join(KINDS)}')
        needs = "equipment" if kind in ("equipment_status", "operation") else "work_order"
        if not isinstance(entry.get(needs), str):
            raise MappingError(f"{where}: node {i} ({entry['id']}): a {kind} node names its {needs}")
        nodes.append(NodeMap(entry["id"], kind, entry.get("equipment"), entry.get("work_order")))
    if not nodes:
        raise MappingError(f"{where}: no [[node]] entries: map at least one node to an event kind")
    try:
        epoch = datetime.datetime.fromisoformat(data.get("epoch", "1970-01-01T00:00:00+00:00"))
    except ValueError:
        raise MappingError(f'{where}: epoch: give an ISO time, e.g. "2026-12-01T00:00:00+00:00"') from None
    if epoch.tzinfo is None:
        epoch = epoch.replace(tzinfo=datetime.timezone.utc)
    unit = data.get("time_unit_s", 1.0)
    if not isinstance(unit, int | float) or not unit > 0:
        raise MappingError(f"{where}: time_unit_s must be a positive number of seconds")
    return Mapping(data["endpoint"], data["shop"], tuple(nodes), float(unit), epoch, data.get("plan_node"), where)


def events_for(node: NodeMap, value: Any, stamp: datetime.datetime | None, state: dict, mapping: Mapping) -> list[dict]:
    """The events that bring the shop's ``state`` in line with ``node``'s ``value`` (none if it is)."""
    time = max(mapping.shop_time(stamp), state["time"])
    mark = f"opcua:{node.id}@{(stamp.isoformat() if stamp else 'none')}"
    base = {"time": time}
    if node.kind in ("equipment_status", "operation"):
        unit = next((e for e in state["equipment"] if e["id"] == node.equipment), None)
        if unit is None:
            raise MappingError(
                f"{mapping.source}: node {node.id}: shop {mapping.shop} has no equipment {node.equipment!r}"
            )
    if node.kind == "equipment_status":
        up = _is_up(value)
        if up == (unit["status"] == "up"):
            return []
        return [{**base, "event_id": mark, "type": "equipment_up" if up else "equipment_down", "equipment": unit["id"]}]
    if node.kind == "operation":
        running = unit.get("running")
        now = tuple(str(value).split("/", 1)) if value and "/" in str(value) else None
        was = (running["work_order"], running["operation"]) if running else None
        events = []
        if was is not None and was != now:
            events.append({**base, "event_id": mark + "#finish", "type": "operation_finished",
                           "work_order": was[0], "operation": was[1]})  # fmt: skip
        if now is not None and was != now:
            events.append({**base, "event_id": mark + "#start", "type": "operation_started", "work_order": now[0],
                           "operation": now[1], "equipment": unit["id"]})  # fmt: skip
        return events
    order = next((o for o in state["work_orders"] if o["id"] == node.work_order), None)
    if order is None or value is None or order[node.kind] == int(value):
        return []  # not (or no longer) in the shop, or already so
    return [{**base, "event_id": mark, "type": "work_order_changed", "work_order": order["id"], node.kind: int(value)}]


def _is_up(value: Any) -> bool:
    """A status node's value as up (True, 1, "up", "true") or down."""
    return value.strip().lower() in ("up", "true", "1") if isinstance(value, str) else bool(value)


class OpcUaBridge:
    """One OPC UA client on its own thread and event loop, feeding one shop through the door."""

    def __init__(self, mapping: Mapping, shops) -> None:
        try:
            import asyncua  # noqa: F401
        except ImportError:
            raise ImportError("the OPC UA bridge needs asyncua: pip install 'sched-env[service]'") from None
        self.mapping, self.shops = mapping, shops
        self.by_node: dict = {}  # asyncua NodeId -> NodeMap, once connected
        self.connected = threading.Event()
        self.applied = 0  # events acknowledged through this bridge (tests and logs)
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        self.client = None
        self.stopping = False
        self.thread = threading.Thread(target=self.loop.run_forever, name="opcua", daemon=True)
        if mapping.plan_node:
            shops.subscribe(on_plan=self._plan_made)

    def start(self) -> OpcUaBridge:
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        return self

    def stop(self) -> None:
        self.stopping = True
        self.task.cancel()
        if self.client is not None:
            asyncio.run_coroutine_threadsafe(self._disconnect(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    # ------------------------------------------------------------------ the loop (bridge thread)
    async def _run(self) -> None:
        from asyncua import Client

        self.queue, warned = asyncio.Queue(), False
        while not self.stopping:
            self.client = Client(url=self.mapping.endpoint, timeout=4)
            try:
                await self.client.connect()
                subscription = await self.client.create_subscription(100, self)
                nodes = [self.client.get_node(node.id) for node in self.mapping.nodes]
                self.by_node = {opc.nodeid: node for opc, node in zip(nodes, self.mapping.nodes)}
                await self._reconcile(nodes)  # what changed while away: read every node again
                await subscription.subscribe_data_change(nodes)
                LOG.info("OPC UA bridge connected to %s for shop %s", self.mapping.endpoint, self.mapping.shop)
                self.connected.set()
                warned = False
                await _until_one_fails(self._watch(), self._drain())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the machine's server away: retry, one warning per outage
                if not warned:
                    LOG.warning("OPC UA server %s: %s: retrying every %.0f s", self.mapping.endpoint,
                                type(error).__name__ + (f" ({error})" if str(error) else ""), RETRY_S)  # fmt: skip
                    warned = True
            self.connected.clear()
            await self._disconnect()
            await asyncio.sleep(RETRY_S)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(RETRY_S)
            await self.client.check_connection()

    async def _drain(self) -> None:
        """Handle values one at a time: each against the state its predecessor left."""
        while True:
            node, value, stamp = await self.queue.get()
            await self._apply(node, value, stamp)

    async def _reconcile(self, nodes) -> None:
        """Every node read again; applied in the order the shop allows: equipment back up, then
        operations (a finish or a start needs its equipment up), then equipment down, then fields."""
        values = []
        for node, opc_node in zip(self.mapping.nodes, nodes):
            data = await opc_node.read_data_value()
            values.append((node, data.Value.Value if data.Value else None, data.SourceTimestamp))

        def order(item) -> int:
            node, value, _ = item
            if node.kind == "equipment_status":
                return 0 if _is_up(value) else 2
            return 1 if node.kind == "operation" else 3

        for node, value, stamp in sorted(values, key=order):
            await self._apply(node, value, stamp)

    async def _apply(self, node: NodeMap, value, stamp) -> None:
        try:
            events = events_for(node, value, stamp, self.shops.state(self.mapping.shop), self.mapping)
            if not events:
                return
            self.shops.allow(self.mapping.shop)
            future = self.shops.submit_events(self.mapping.shop, _batch(events))
            answer = await asyncio.wrap_future(future)
            self.applied += answer["accepted"]
        except (RequestError, MappingError) as error:
            LOG.warning("OPC UA node %s (value %r): not applied: %s", node.id, value, error)

    async def _disconnect(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # already gone
                await self.client.disconnect()

    # ------------------------------------------------------------------ asyncua's subscription handler
    def datachange_notification(self, node, value, data) -> None:
        mapped = self.by_node.get(node.nodeid)
        if mapped is not None:
            self.queue.put_nowait((mapped, value, data.monitored_item.Value.SourceTimestamp))

    def status_change_notification(self, status) -> None:
        LOG.info("OPC UA subscription status: %s", status)

    # ------------------------------------------------------------------ the plan out (replanner threads)
    def _plan_made(self, shop_id: str, _version: int, body: bytes | None) -> None:
        if shop_id == self.mapping.shop and body is not None and self.connected.is_set():
            asyncio.run_coroutine_threadsafe(self._write_plan(body.decode()), self.loop)

    async def _write_plan(self, text: str) -> None:
        from asyncua import ua

        try:
            await self.client.get_node(self.mapping.plan_node).write_value(ua.Variant(text, ua.VariantType.String))
        except Exception as error:  # a node that refuses the write: said once per plan, never fatal
            LOG.warning("OPC UA: the plan could not be written to %s: %s", self.mapping.plan_node, error)


async def _until_one_fails(*coroutines) -> None:
    """Run the coroutines until one raises (a lost connection); the others are cancelled."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


def _batch(events: list[dict]) -> bytes:
    return json.dumps({"events": events}).encode()
