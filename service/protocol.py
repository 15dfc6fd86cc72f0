"""uvicorn's h11 protocol with the read limits a public server needs: a client must send its
request headers within ``header_timeout`` and its body within ``body_timeout`` (slow or
half-sent requests are closed, not held), and a process keeps at most ``max_connections``
open (one beyond gets 503 and is closed).

    uvicorn.run(app, http=GuardedH11Protocol.with_limits(10.0, 30.0, 256))  # what `sched-env serve` does

The limits are class attributes: :meth:`GuardedH11Protocol.with_limits` makes a subclass with others.
"""

from __future__ import annotations

import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LOG = logging.getLogger("sched_env.service")
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 256
#: After a response, how long the rest of an unread body (a refused upload) may keep arriving.
LINGER_S = 2.0
_REFUSED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 33\r\n" \
           b"retry-after: 1\r\nconnection: close\r\n\r\ntoo many connections; retry later\n"  # fmt: skip


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a header deadline, a body deadline and a connection cap."""

    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S
    max_connections = MAX_CONNECTIONS

    @classmethod
    def with_limits(cls, header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
        """A subclass with these limits (uvicorn builds the protocol itself: the limits ride on the class)."""
        limits = {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections}
        return type(cls.__name__, (cls,), limits)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timer = None
        self._watched = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            LOG.warning(
                "refused a connection: %d open, the limit is %d", len(self.connections) - 1, self.max_connections
            )
            transport.write(_REFUSED)
            transport.close()
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        body_unread = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if body_unread and not self.transport.is_closing():  # answered before the body came: drain briefly, then close
            self._arm(LINGER_S, "the rest of a body that was answered already")
            self._watched = "linger"
            return
        self._watch()

    def connection_lost(self, exc) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arm a deadline when the client starts owing us headers or a body; the deadline does not
        move while more bytes trickle in (a slow client cannot hold a connection by sending slowly)."""
        state = self.conn.their_state
        if state is self._watched or (self._watched == "linger" and state is h11.SEND_BODY):
            return
        self._watched = state
        if state is h11.IDLE:
            self._arm(self.header_timeout, "request headers")
        elif state is h11.SEND_BODY:
            self._arm(self.body_timeout + 1.0, "a request body")  # the route answers 408 at body_timeout
        else:
            self._cancel()

    def _arm(self, seconds: float, what: str) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, self._too_slow, what, seconds)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self, what: str, seconds: float) -> None:
        self._timer = None
        if not self.transport.is_closing():
            LOG.info("closed a connection: %s did not arrive within %.1f s", what, seconds)
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()
