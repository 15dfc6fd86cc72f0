"""The scheduling microservice (``sched-env serve``): the shipped policies and every registered
decider behind HTTP/JSON, with budgets, a bounded queue, Prometheus metrics and an optional bearer
token.

* ``service.app``: the FastAPI app, the stateless routes (a whole shop per request) and start-up;
* ``service.shops``: the one door to the shop sessions (events in, versioned plans out), with their
  fair journal and replanners; ``service.shop_routes`` its HTTP routes; ``service.sessions``: one
  shop's state machine (events -> state, pure);
* ``service.store``: the sessions' event log in SQLite (WAL), replayed on start;
* ``service.mqtt``, ``service.opcua``: the MQTT bridge (events in, retained plans out) and the OPC
  UA bridge (a machine's nodes in, the plan out to a node);
* ``service.client``: a Python client of the service (httpx only), with typed errors;
* ``service.schemas``: the shop-floor vocabulary (ISA-95 terms) and its conversion to sched-env's
  types; ``service.protocol``: uvicorn's h11 protocol with read limits.
"""
