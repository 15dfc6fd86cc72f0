"""A Python client for the scheduling service: the stateless routes and shop sessions, with
typed errors that carry the service's reason. For MES integration scripts and tests; it needs
only httpx (``pip install 'sched-env[client]'``).

    from service.client import SchedEnvClient

    client = SchedEnvClient("http://127.0.0.1:8000", token=None)    # token: SCHED_ENV_TOKEN's value
    shop = client.create_shop(equipment=[{"id": "lathe"}], method="mwkr", budget_ms=500)
    shop.send({"type": "equipment_down", "time": 3, "equipment": "lathe"})
    plan = shop.wait_for_plan(after=0)

Every event gets an ``event_id`` when it has none, fixed before the first try: a batch sent again
after a lost answer, a 429 or a 503 (the client retries those, after ``Retry-After``) is
acknowledged as a duplicate, never applied twice.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from instances import SchedEnvError


class ServiceError(SchedEnvError):
    """The service refused a request: ``status`` (HTTP), ``detail`` (its one-line reason)."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.retry_after = status, detail, retry_after


class InvalidRequestError(ServiceError):
    """400 or 422: the body is not JSON or breaks the schema; the detail names the field."""


class UnauthorizedError(ServiceError):
    """401: the bearer token is missing or wrong."""


class NotFoundError(ServiceError):
    """404: no such shop (or no plan yet)."""


class EventRefusedError(ServiceError):
    """409: the shop's state refuses an event (the detail names it and the field); nothing of the batch applied."""


class TooLargeError(ServiceError):
    """413: over a size or count limit (the detail names it)."""


class BusyError(ServiceError):
    """429 or 503: over the shop's rate, at capacity, or a shop quarantined; ``retry_after`` seconds."""


class TimedOutError(ServiceError):
    """408 or 504: the body came too slowly, or no plan by the deadline."""


_BY_STATUS = {400: InvalidRequestError, 422: InvalidRequestError, 401: UnauthorizedError, 404: NotFoundError, 409: EventRefusedError,
              413: TooLargeError, 429: BusyError, 503: BusyError, 408: TimedOutError, 504: TimedOutError}  # fmt: skip


class SchedEnvClient:
    """The service at ``url``; ``retries`` times a 429/503 or a lost connection is retried (after
    ``Retry-After``, at most ``max_wait_s`` each) where a repeat is harmless."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3, max_wait_s: float = 5.0) -> None:  # fmt: skip
        try:
            import httpx
        except ImportError:
            raise ImportError("the service client needs httpx: pip install 'sched-env[client]'") from None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.retries, self.max_wait_s = retries, max_wait_s

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SchedEnvClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # ------------------------------------------------------------------ stateless routes
    def schedule(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/schedule``: work orders and equipment -> a plan."""
        return self.request("POST", "/v1/schedule", json=request)

    def reschedule(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/reschedule``: a running shop's state -> a plan of the remaining work."""
        return self.request("POST", "/v1/reschedule", json=request)

    def methods(self) -> list[dict[str, Any]]:
        """``GET /v1/methods``: the decider specs this service plans with."""
        return self.request("GET", "/v1/methods")

    def ready(self) -> bool:
        """Whether the service is up with its kernels warm (``GET /readyz``)."""
        import httpx

        try:
            return self.http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # ------------------------------------------------------------------ shop sessions
    def create_shop(self, **config: Any) -> ShopClient:
        """``POST /v1/shops`` with ``config`` (equipment, method, budget_ms, work_orders, ...)."""
        created = self.request("POST", "/v1/shops", json=config, retry=False)  # not idempotent: never repeated
        return ShopClient(self, created["id"])

    def shop(self, shop_id: str) -> ShopClient:
        """An open session by its id."""
        return ShopClient(self, shop_id)

    def shops(self) -> list[dict[str, Any]]:
        """``GET /v1/shops``: every open session in a line."""
        return self.request("GET", "/v1/shops")

    # ------------------------------------------------------------------ the one way out
    def request(self, method: str, path: str, retry: bool = True, **kwargs: Any) -> Any:
        """One call; its JSON answer, or a :class:`ServiceError` subclass with the service's reason."""
        import httpx

        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not retry
            try:
                answer = self._send(method, path, kwargs, again=retry)
            except httpx.TransportError as error:
                if last:
                    raise ServiceError(0, f"{method} {path}: no answer from the service ({error})") from None
                time.sleep(min(2**attempt * 0.2, self.max_wait_s))
                continue
            if answer.status_code < 400:
                return answer.json() if answer.content else None
            failure = _error(answer)
            if last or not isinstance(failure, BusyError):
                raise failure
            time.sleep(min(failure.retry_after or 1.0, self.max_wait_s))
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, kwargs: dict, again: bool) -> Any:
        """One HTTP exchange. With ``again`` (a repeatable request: events carry their ids), a
        kept-alive connection the server closed as the request went out (no answer came) is
        replaced once, whatever ``retries``: a busy server closes one after a 429 it sent early."""
        import httpx

        try:
            return self.http.request(method, path, **kwargs)
        except httpx.RemoteProtocolError as error:
            if not again or "without sending a response" not in str(error):
                raise
            return self.http.request(method, path, **kwargs)


class ShopClient:
    """One shop session: send events, read its state and plans, end it."""

    def __init__(self, client: SchedEnvClient, shop_id: str) -> None:
        self.client, self.id = client, shop_id

    def send(self, *events: dict[str, Any]) -> dict[str, Any]:
        """``POST .../events``: the events as one batch (all accepted or none); an event without an
        ``event_id`` gets one, kept across retries. The acknowledgement: accepted, duplicates, events,
        time, plan_version."""
        batch = [{"event_id": f"py-{uuid.uuid4().hex}", **event} for event in events]
        return self.client.request("POST", f"/v1/shops/{self.id}/events", json={"events": batch})

    def state(self) -> dict[str, Any]:
        """``GET /v1/shops/{id}``: equipment, active work orders, time, events applied."""
        return self.client.request("GET", f"/v1/shops/{self.id}")

    def plan(self) -> dict[str, Any]:
        """``GET .../plan``: the current plan (NotFoundError before the first)."""
        return self.client.request("GET", f"/v1/shops/{self.id}/plan")

    def wait_for_plan(self, after: int = 0, answering: int = 0, timeout_s: float = 30.0) -> dict[str, Any]:
        """The first plan newer than version ``after`` that answers at least ``answering`` events
        (an acknowledgement's ``events``: the plan that knows of them); long polls of at most 30 s
        each; TimedOutError if none comes within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = int(1000 * (deadline - time.monotonic()))
            try:
                plan = self.client.request("GET", f"/v1/shops/{self.id}/plan",
                                           params={"after": after, "wait_ms": max(0, min(left_ms, 30_000))})  # fmt: skip
            except NotFoundError:  # no plan yet at all: the first is being made
                plan = None
            if plan is not None and plan["version"] > after:
                if plan["events"] >= answering:
                    return plan
                after = plan["version"]
            if time.monotonic() >= deadline:
                raise TimedOutError(504, f"shop {self.id}: no plan newer than version {after} within {timeout_s:g} s")
            if plan is None:
                time.sleep(0.05)

    def update(self, *, method: str | None = None, budget_ms: int | None = None) -> dict[str, Any]:
        """``PATCH /v1/shops/{id}``: plan with another decider (e.g. ``policy@NAME``, a model
        registered on the server) or budget from now on; returns the shop's settings and state."""
        change = {k: v for k, v in (("method", method), ("budget_ms", budget_ms)) if v is not None}
        return self.client.request("PATCH", f"/v1/shops/{self.id}", json=change)

    def delete(self) -> None:
        """``DELETE /v1/shops/{id}``: end the session (its log and plans go)."""
        self.client.request("DELETE", f"/v1/shops/{self.id}", retry=False)


def _error(answer) -> ServiceError:
    try:
        detail = str(answer.json().get("detail", answer.text))
    except ValueError:
        detail = answer.text.strip()[:300]
    retry_after = answer.headers.get("Retry-After")
    kind = _BY_STATUS.get(answer.status_code, ServiceError)
    return kind(answer.status_code, detail, float(retry_after) if retry_after and retry_after.isdigit() else None)
