"""The one exception hierarchy of sched-env.

It lives in the lowest layer so every package (simulator, baselines, agents, service) raises
and catches the same types. Messages say what is wrong *and* what would be valid.
"""

from __future__ import annotations


class SchedEnvError(Exception):
    """Root of every error sched-env raises on purpose."""


class InvalidInstanceError(SchedEnvError, ValueError):
    """A problem instance (object or file) is malformed; the message names the place at fault."""


class UnknownInstanceError(SchedEnvError, KeyError):
    """A catalogue name that is unknown, or known but whose data file cannot be found."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence.
        return str(self.args[0]) if self.args else ""


class InfeasibleScheduleError(SchedEnvError, ValueError):
    """A schedule breaks the instance's constraints; ``violations`` lists every one."""

    def __init__(self, message: str, violations: list | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class InvalidScheduleFileError(SchedEnvError, ValueError):
    """A schedule file (JSON) is malformed."""


class InvalidActionError(SchedEnvError, ValueError):
    """An environment action that the current action mask does not allow (``strict=True``)."""


class InvalidScenarioError(SchedEnvError, ValueError):
    """A dynamic scenario (events, arrivals, breakdowns) is malformed."""


class SolverError(SchedEnvError, RuntimeError):
    """A decider failed to produce a schedule within its budget."""


class InvalidPlanError(SolverError):
    """A decider's plan of a running shop breaks the shop state (moves done or running work,
    overlaps a downtime, ...): a fault of that decider, never of the caller's input.
    ``violations`` lists what it breaks."""

    def __init__(self, message: str, violations: list | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


__all__ = [
    "SchedEnvError",
    "InvalidInstanceError",
    "UnknownInstanceError",
    "InfeasibleScheduleError",
    "InvalidScheduleFileError",
    "InvalidActionError",
    "InvalidScenarioError",
    "SolverError",
    "InvalidPlanError",
]
