"""How much of a time budget each layer keeps back: one rule for the service, the hybrid, the tabu
search and CP-SAT.

A layer that must hand its answer back by a deadline gives the work inside it (a search, a solver,
a decider) only what is left of its limit after a *reserve* for what it does once that work ends::

    reserve = fixed_s + share x limit + per_operation_s x operations
    left    = limit - (time since the layer started) - reserve            (never below a floor)

Each layer's reserve is one :class:`Reserve` below, with what it covers and how it was measured on
a 2-core machine; nothing else in the project subtracts time from a budget by its own rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Reserve:
    """Seconds kept back from a limit for ``covers`` (the work after the inner work ends)."""

    covers: str
    fixed_s: float = 0.0
    share: float = 0.0  # of the limit
    per_operation_s: float = 0.0

    def seconds(self, limit_s: float, n_operations: int = 0) -> float:
        """The reserve for a limit of ``limit_s`` seconds and ``n_operations`` planned operations."""
        return self.fixed_s + self.share * limit_s + self.per_operation_s * n_operations

    def left(self, limit_s: float, started: float, n_operations: int = 0, floor: float = 0.0) -> float:
        """What is left of ``limit_s`` since ``started`` (``time.perf_counter()``) for the inner
        work, less this reserve; at least ``floor``."""
        elapsed = time.perf_counter() - started
        return max(floor, limit_s - elapsed - self.seconds(limit_s, n_operations))

    def until(self, deadline: float, limit_s: float, n_operations: int = 0, floor: float = 0.0) -> float:
        """What is left until ``deadline`` (``time.perf_counter()`` time) of a ``limit_s`` budget,
        less this reserve; at least ``floor``."""
        return max(floor, deadline - time.perf_counter() - self.seconds(limit_s, n_operations))


#: The service writes the answer's JSON after the decider (measured about 1.5 us per planned
#: operation; twice that is kept, for a loaded machine).
SERVICE_ANSWER = Reserve("writing the service's answer", fixed_s=0.003, per_operation_s=3e-6)
#: The tabu search's plan is decoded, validated and turned into a result (measured on 100x20: about 10 ms).
TABU_READ_BACK = Reserve("reading the tabu search's plan back and validating it", fixed_s=0.02, share=0.01)
#: The hybrid compares CP-SAT's polished plan with the tabu plan and answers.
HYBRID_POLISH = Reserve("taking CP-SAT's polished plan back in the hybrid", fixed_s=0.01, share=0.03)
#: CP-SAT stops and hands its solution back after its time limit: a few ms with one worker; with
#: more, a large-neighbourhood sub-solve in flight finishes first, which grows with the model
#: (measured on 2 cores, 50x20, limit 0.98 s: 4 ms with one worker, up to 173 ms with two).
CPSAT_STOP_ONE_WORKER = Reserve("CP-SAT stopping (one worker)", fixed_s=0.005)
CPSAT_STOP = Reserve("CP-SAT stopping (several workers)", fixed_s=0.005, per_operation_s=1.5e-4)

#: The least a decider is given, even when the budget is used up (a rule's plan comes in it).
MIN_DECIDER_S = 0.001
#: The shortest search CP-SAT is given when building the model used up (almost) all of the limit.
MIN_SEARCH_S = 0.01


def time_left(limit_s: float, started: float, floor: float = 0.0) -> float:
    """What is left of ``limit_s`` since ``started`` (``time.perf_counter()``), with nothing kept
    back (the layer hands the rest on whole); at least ``floor``."""
    return max(floor, limit_s - (time.perf_counter() - started))


def cpsat_stop(workers: int) -> Reserve:
    """What CP-SAT with ``workers`` threads keeps back from its own time limit."""
    return CPSAT_STOP if workers > 1 else CPSAT_STOP_ONE_WORKER


__all__ = [
    "CPSAT_STOP",
    "CPSAT_STOP_ONE_WORKER",
    "HYBRID_POLISH",
    "MIN_DECIDER_S",
    "MIN_SEARCH_S",
    "SERVICE_ANSWER",
    "TABU_READ_BACK",
    "Reserve",
    "cpsat_stop",
    "time_left",
]
