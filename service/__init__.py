"""The scheduling microservice: the shipped policies and every registered decider behind
HTTP/JSON (``sched-env serve``), with budgets, a bounded queue, Prometheus metrics and an
optional bearer token. ``service.schemas`` holds the shop-floor vocabulary and its conversion
to sched-env's types; ``service.app`` the routes."""
