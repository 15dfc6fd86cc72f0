"""service/client.py against a real server on 127.0.0.1: the stateless routes, a session end to
end, every typed error with the service's reason, and retries that never apply a batch twice."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
pytest.importorskip("httpx")

import instances  # noqa: E402
from service.app import Settings  # noqa: E402
from service.client import (  # noqa: E402
    BusyError,
    EventRefusedError,
    InvalidRequestError,
    NotFoundError,
    SchedEnvClient,
    ServiceError,
    TooLargeError,
    UnauthorizedError,
)
from tests.test_service import LiveServer, shop_request  # noqa: E402
from tests.test_service_shops import STREAM_SHOP, stream  # noqa: E402


@pytest.fixture(scope="module")
def live():
    server = LiveServer(Settings(workers=2, queue=8, token="t0ken", shop_rate=1.0))
    yield server
    server.stop()


@pytest.fixture
def client(live):
    with SchedEnvClient(live.url, token="t0ken", max_wait_s=2.0) as opened:
        yield opened


def test_the_stateless_routes_and_the_method_list(client):
    plan = client.schedule(shop_request(instances.random_instance(4, 3, seed=1), "mwkr"))
    assert len(plan["plan"]) == 12 and plan["method"] == "mwkr"
    assert "cpsat" in {method["name"] for method in client.methods()}
    assert client.ready()


def test_a_session_end_to_end_with_typed_errors(client):
    shop = client.create_shop(**STREAM_SHOP)
    events = stream(1)
    ack = shop.send(*events[:3])
    assert ack["accepted"] == 3
    plan = shop.wait_for_plan(answering=ack["events"])
    assert plan["events"] == 3 and plan["last_event_id"] == events[2]["event_id"]
    with pytest.raises(EventRefusedError) as refused:
        shop.send({"type": "operation_finished", "time": 99, "work_order": "nope", "operation": "x"})
    assert refused.value.status == 409 and "unknown work order 'nope'" in refused.value.detail
    with pytest.raises(InvalidRequestError, match="events.0.equipment_up.equipment"):
        shop.send({"type": "equipment_up", "time": 99})
    assert shop.state()["events"] == 3
    assert shop.update(method="policy@dynamic", budget_ms=700)["method"] == "policy@dynamic"  # a shipped model
    with pytest.raises(InvalidRequestError, match="no models folder"):
        shop.update(method="policy@mine")
    assert shop.state()["method"] == "policy@dynamic" and shop.state()["budget_ms"] == 700
    shop.delete()
    with pytest.raises(NotFoundError, match="create one with POST /v1/shops"):
        shop.state()
    with pytest.raises(InvalidRequestError, match="method:"):
        client.create_shop(**{**STREAM_SHOP, "method": "no-such-rule"})
    with pytest.raises(TooLargeError, match="the limit is 20,000"):
        client.request(
            "POST",
            "/v1/schedule",
            json={"equipment": [{"id": "M"}], "work_orders": [{"id": str(i), "operations": []} for i in range(20_001)]},
        )


def test_a_wrong_token_is_unauthorized_and_a_dead_server_is_a_service_error(live):
    with SchedEnvClient(live.url, token="wrong") as wrong, pytest.raises(UnauthorizedError):
        wrong.shops()
    with SchedEnvClient("http://127.0.0.1:9", retries=1) as nowhere, pytest.raises(ServiceError, match="no answer"):
        nowhere.shops()


def test_a_429_is_retried_after_retry_after_and_the_batch_applied_once(client, live):
    shop = client.create_shop(**STREAM_SHOP)
    events = stream(2)
    answers = [shop.send(event) for event in events[:4]]  # 1 batch/s here, a bucket of 2: the rest wait
    assert [a["accepted"] for a in answers] == [1, 1, 1, 1] and shop.state()["events"] == 4
    with SchedEnvClient(live.url, token="t0ken", retries=0) as impatient:
        refused = []
        for event in events[4:8]:
            try:
                impatient.shop(shop.id).send(event)
            except BusyError as busy:
                refused.append(busy)
        assert refused and refused[0].status == 429 and refused[0].retry_after >= 1
