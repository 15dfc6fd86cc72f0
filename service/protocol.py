"""uvicorn's h11 protocol with the read limits a public server needs: a client must send its
request headers within ``header_timeout`` and its body within ``body_timeout`` (slow or
half-sent requests are closed, not held), and a process keeps at most ``max_connections``
open (one beyond gets 503 and is closed). A connection closed while the client is still sending
a body we will not read (an upload refused with 413 before it ends) closes *lingering*: our
answer and FIN go out, the rest of the body is read and dropped for a while, then the socket
closes. Closing at once would reset the connection and the client could lose the answer.

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
#: A lingering close (nginx's defaults): the rest of a refused body is read and dropped while
#: it keeps coming, at most LINGER_IDLE_S between reads and LINGER_TOTAL_S in all.
LINGER_IDLE_S = 5.0
LINGER_TOTAL_S = 30.0
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
        super().connection_made(_LingeringTransport(transport, self))
        if len(self.connections) > self.max_connections:
            LOG.warning(
                "refused a connection: %d open, the limit is %d", len(self.connections) - 1, self.max_connections
            )
            transport.write(_REFUSED)
            transport.close()
            return
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.drained()
            return
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()  # answered before the body came: close lingering, not keep alive
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc) -> None:
        self._cancel()
        self.transport.close_now()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server stops: a lingering connection closes now (a graceful shutdown waits for every one)."""
        super().shutdown()
        if self.transport.lingering:
            self.transport.close_now()

    def _watch(self) -> None:
        """Arm a deadline when the client starts owing us headers or a body; the deadline does not
        move while more bytes trickle in (a slow client cannot hold a connection by sending slowly)."""
        state = self.conn.their_state
        if self.transport.is_closing():
            self._cancel()  # a lingering close has bounds of its own
            return
        if state is self._watched:
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


class _LingeringTransport:
    """The connection's transport, whose ``close`` lingers while the client's body is unread:
    half-close (the answer and our FIN are sent), drop what still arrives, close when the client
    stops sending or LINGER_IDLE_S passes without a byte or LINGER_TOTAL_S in all."""

    def __init__(self, transport, protocol: GuardedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._deadline = 0.0
        self._timer = None
        self.lingering = False

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        body_unread = self._protocol.conn.their_state is h11.SEND_BODY
        if self.lingering or not body_unread or self._transport.is_closing() or not self._transport.can_write_eof():
            self.close_now()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()
        self._deadline = self._protocol.loop.time() + LINGER_TOTAL_S
        self.drained()

    def drained(self) -> None:
        """More of the unread body came and was dropped: wait a while more for the rest."""
        if self._timer is not None:
            self._timer.cancel()
        loop = self._protocol.loop
        wait = min(LINGER_IDLE_S, self._deadline - loop.time())
        self._timer = loop.call_later(max(wait, 0.0), self.close_now)

    def close_now(self) -> None:
        """Close without lingering (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.close()
