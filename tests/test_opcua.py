"""The OPC UA bridge against a real asyncua server started here (in-process, on 127.0.0.1):
equipment status, operation start/finish and work-order fields become session events, each once
(node id + source timestamp), values that changed while the server was away are read again after
the reconnect, and the plan is written to a node. Mapping files are checked in one line."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
pytest.importorskip("asyncua", reason="asyncua is not installed: pip install 'sched-env[service]'")

from asyncua import Server, ua  # noqa: E402

from service.opcua import MappingError, OpcUaBridge, read_mapping  # noqa: E402
from service.shops import Shops  # noqa: E402
from service.store import EventStore  # noqa: E402
from tests.test_service import free_port  # noqa: E402
from tests.test_sessions import models  # noqa: E402, F401  (the module's fixture)

EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
SHOP = {"equipment": [{"id": "lathe"}, {"id": "mill"}], "method": "mwkr", "budget_ms": 300, "work_orders": [
    {"id": "WO-1", "due": 50, "operations": [{"id": "turn", "equipment": "lathe", "duration": 5},
                                             {"id": "face", "equipment": "mill", "duration": 3}]}]}  # fmt: skip


class MachineServer:
    """An asyncua server on its own thread and loop: a lathe's status and job, WO-1's due, a plan node."""

    NODES = {"Lathe.Up": True, "Lathe.Job": "", "WO1.Due": 50, "Cell.Plan": ""}

    def __init__(self, port: int) -> None:
        self.port, self.loop = port, asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.values: dict = dict(self.NODES)

    def call(self, coroutine, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> MachineServer:
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.server = Server()
        await self.server.init()
        self.server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/machine/")
        index = await self.server.register_namespace("urn:sched-env:test")
        assert index == 2
        cell = await self.server.nodes.objects.add_object(index, "Cell")
        self.nodes = {}
        for name, value in self.values.items():
            node = await cell.add_variable(ua.NodeId(name, index), name, value)
            await node.set_writable()
            self.nodes[name] = node
        await self.server.start()

    def stop(self) -> None:
        self.call(self._stop())

    async def _stop(self) -> None:
        for name, node in self.nodes.items():
            self.values[name] = await node.read_value()
        await self.server.stop()

    def set(self, name: str, value, minutes: float) -> None:
        """A value with its source timestamp ``minutes`` after the epoch (one shop time unit: a minute)."""
        stamp = EPOCH + datetime.timedelta(minutes=minutes)
        variant = ua.Variant(value, ua.VariantType.String if isinstance(value, str) else None)
        self.call(self.nodes[name].write_value(ua.DataValue(variant, SourceTimestamp=stamp)))

    def read(self, name: str):
        return self.call(self.nodes[name].read_value())


def write_mapping(folder, port: int, shop_id: str) -> str:
    path = folder / "cell.toml"
    path.write_text(f"""
endpoint = "opc.tcp://127.0.0.1:{port}/machine/"
shop = "{shop_id}"
time_unit_s = 60
epoch = "{EPOCH.isoformat()}"
plan_node = "ns=2;s=Cell.Plan"

[[node]]
id = "ns=2;s=Lathe.Up"
kind = "equipment_status"
equipment = "lathe"

[[node]]
id = "ns=2;s=Lathe.Job"
kind = "operation"
equipment = "lathe"

[[node]]
id = "ns=2;s=WO1.Due"
kind = "due"
work_order = "WO-1"
""")
    return str(path)


def until(check, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


@pytest.fixture
def cell(models, tmp_path):  # noqa: F811
    shops = Shops(EventStore(tmp_path / "shops.sqlite3"), models)
    shop_id = shops.create(json.dumps(SHOP).encode())["id"]
    machine = MachineServer(free_port()).start()
    bridge = OpcUaBridge(read_mapping(write_mapping(tmp_path, machine.port, shop_id)), shops).start()
    assert bridge.connected.wait(30), "the bridge did not connect"
    yield shops, shop_id, machine, bridge
    bridge.stop()
    machine.stop()
    shops.close()


def lathe(shops, shop_id) -> dict:
    return next(e for e in shops.state(shop_id)["equipment"] if e["id"] == "lathe")


def test_machine_signals_become_events_once_and_the_plan_is_written_back(cell):
    shops, shop_id, machine, bridge = cell
    assert shops.state(shop_id)["events"] == 0, "values that match the state made events"
    machine.set("Lathe.Job", "WO-1/turn", minutes=2)
    until(lambda: lathe(shops, shop_id).get("running") == {"work_order": "WO-1", "operation": "turn"}, what="start")
    machine.set("Lathe.Up", False, minutes=4)
    until(lambda: lathe(shops, shop_id)["status"] == "down", what="breakdown")
    machine.set("Lathe.Up", True, minutes=6)
    machine.set("Lathe.Job", "", minutes=9)
    machine.set("WO1.Due", 40, minutes=9)
    until(lambda: shops.state(shop_id)["events"] == 5, what="five events")
    state = shops.state(shop_id)
    assert state["time"] == 9 and lathe(shops, shop_id)["status"] == "up" and "running" not in lathe(shops, shop_id)
    assert state["work_orders"][0]["due"] == 40
    assert state["work_orders"][0]["operations"][0]["status"] == "done"
    assert state["last_event_id"].startswith("opcua:ns=2;s=WO1.Due@2026-12-01T00:09")
    until(lambda: json.loads(machine.read("Cell.Plan") or "{}").get("events") == 5, what="the plan on its node")
    assert bridge.applied == 5


def test_values_changed_while_the_server_was_away_are_read_after_the_reconnect(cell):
    shops, shop_id, machine, bridge = cell
    machine.set("Lathe.Job", "WO-1/turn", minutes=1)
    until(lambda: shops.state(shop_id)["events"] == 1, what="the start")
    machine.stop()
    until(lambda: not bridge.connected.is_set(), what="the bridge noticing")
    machine.values.update({"Lathe.Job": "", "Lathe.Up": False})  # what happened meanwhile
    machine.start()
    until(lambda: shops.state(shop_id)["events"] == 3, timeout=60, what="the finish and the breakdown after reconnect")
    assert lathe(shops, shop_id)["status"] == "down"
    time.sleep(1.0)
    assert shops.state(shop_id)["events"] == 3, "a value read again was applied twice"


@pytest.mark.parametrize(("text", "message"), [
    ('shop = "s"', "give endpoint"),
    ('endpoint = "opc.tcp://x"\nshop = "s"', "no [[node]] entries"),
    ('endpoint = "opc.tcp://x"\nshop = "s"\n[[node]]\nid = "ns=2;s=A"\nkind = "vibration"', "kind, one of"),
    ('endpoint = "opc.tcp://x"\nshop = "s"\n[[node]]\nid = "ns=2;s=A"\nkind = "operation"', "names its equipment"),
    ('endpoint = "opc.tcp://x"\nshop = "s"\ntime_unit_s = 0\n[[node]]\nid = "a"\nkind = "due"\nwork_order = "W"',
     "time_unit_s"),
    ("endpoint = ", "cell.toml"),
])  # fmt: skip
def test_a_bad_mapping_file_is_one_line_naming_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "cell.toml"
    path.write_text(text)
    with pytest.raises(MappingError, match=re.escape(message)):
        read_mapping(path)


def test_serve_refuses_a_bad_mapping_at_start_in_one_line(tmp_path):
    from service.app import ConfigurationError, Settings

    path = tmp_path / "cell.toml"
    path.write_text('endpoint = "opc.tcp://x"\nshop = "s"')
    with pytest.raises(ConfigurationError, match=r"--opcua .*cell.toml: no \[\[node\]\] entries"):
        Settings(opcua=(str(path),))


def test_an_operation_node_starts_work_on_an_alternative_unit(models, tmp_path):  # noqa: F811
    """The machine's node reports WO-1/turn on lathe-2, one of the turning's eligible units: the shop
    runs it there, for that unit's duration, and the plan written back says so."""
    flexible = json.loads(json.dumps(SHOP))
    flexible["equipment"].append({"id": "lathe-2"})
    flexible["work_orders"][0]["operations"][0] = {
        "id": "turn",
        "alternatives": [{"equipment": "lathe", "duration": 5}, {"equipment": "lathe-2", "duration": 7}],
    }
    shops = Shops(EventStore(tmp_path / "shops.sqlite3"), models)
    shop_id = shops.create(json.dumps(flexible).encode())["id"]
    machine = MachineServer(free_port()).start()
    mapping = write_mapping(tmp_path, machine.port, shop_id)
    Path(mapping).write_text(Path(mapping).read_text().replace('equipment = "lathe"', 'equipment = "lathe-2"'))
    bridge = OpcUaBridge(read_mapping(mapping), shops).start()
    try:
        assert bridge.connected.wait(30), "the bridge did not connect"
        machine.set("Lathe.Job", "WO-1/turn", minutes=2)
        until(lambda: shops.state(shop_id)["events"] == 1, what="the start")
        turn = shops.state(shop_id)["work_orders"][0]["operations"][0]
        assert (turn["equipment_used"], turn["start"], turn["end"]) == ("lathe-2", 2, 9)
        until(lambda: json.loads(machine.read("Cell.Plan") or "{}").get("events") == 1, what="the plan on its node")
        plan = json.loads(machine.read("Cell.Plan"))["plan"]
        assert next(r for r in plan if r["operation"] == "turn")["equipment"] == "lathe-2"
    finally:
        bridge.stop()
        machine.stop()
        shops.close()
