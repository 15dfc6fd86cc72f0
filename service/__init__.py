"""The scheduling microservice (``sched-env serve``): the shipped policies and every registered
decider behind HTTP/JSON, with budgets, a bounded queue, Prometheus metrics and an optional bearer
token.

* ``service.app``: the FastAPI app, the stateless routes (a whole shop per request) and start-up;
* ``service.shop_routes``, ``service.shops``: shop sessions (events in, versioned plans out), their
  journal and replanners; ``service.sessions``: one shop's state machine (events -> state, pure);
* ``service.store``: the sessions' event log in SQLite (WAL), replayed on start;
* ``service.mqtt``: the MQTT bridge (events in, retained plans out);
* ``service.schemas``: the shop-floor vocabulary (ISA-95 terms) and its conversion to sched-env's
  types; ``service.protocol``: uvicorn's h11 protocol with read limits.
"""
