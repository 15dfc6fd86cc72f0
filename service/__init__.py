"""The scheduling microservice (planned; see ../shared/ARCHITECTURE.md): the trained policy and
the baselines behind an HTTP/JSON API with explicit time budgets. Not implemented yet."""
