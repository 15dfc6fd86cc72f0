"""baselines/cpsat.py: CP-SAT solves, proves, honours its budget, accepts hints; all validated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import instances
from sched_env import JobShopEnv, replay, validate_schedule

cpsat = pytest.importorskip("baselines.cpsat", reason="OR-Tools is not installed (pip install 'sched-env[cp]')")


def brute_force_optimum(instance) -> int:
    """Smallest makespan over every dispatch order (semi-active schedules contain an optimum)."""
    ops = [j for j in range(instance.n_jobs) for _ in range(int(instance.n_ops[j]))]
    best = None
    env = JobShopEnv(instance, placement="append", action_set="any", strict=True)
    for order in set(itertools.permutations(ops)):
        env.reset()
        for job in order:
            env.step(job)
        best = env.makespan if best is None else min(best, env.makespan)
    return best


def test_optimal_on_a_hand_made_3x3(tiny):
    result = cpsat.solve(tiny, time_limit_s=10)
    assert result.status == "optimal" and result.objective == brute_force_optimum(tiny) == result.lower_bound
    validate_schedule(tiny, result.schedule)
    assert result.method == "cpsat" and result.params == {"time_limit_s": 10, "workers": 2, "hinted": False}


def test_ft06_is_proven_optimal_and_its_schedule_replays_to_55(ft06):
    result = cpsat.solve(ft06, time_limit_s=30)
    assert (result.status, result.objective, result.lower_bound) == ("optimal", 55, 55)
    for placement in ("append", "active"):
        assert replay(ft06, result.schedule, placement=placement).makespan == 55


def test_time_limit_is_honoured():
    ta41 = instances.load("ta41")
    result = cpsat.solve(ta41, time_limit_s=1.0)
    assert result.status == "feasible" and result.lower_bound <= result.objective
    assert result.wall_time_s < 1.0 + 1.5, f"took {result.wall_time_s:.2f} s for a 1 s limit"
    validate_schedule(ta41, result.schedule)


def test_no_schedule_in_time_is_reported_not_hidden():
    result = cpsat.solve(instances.load("ta71"), time_limit_s=0.05)
    if result.schedule is None:  # the usual case: nothing found in 50 ms
        assert result.status == "unknown" and result.objective is None


def test_hint_is_used_and_never_makes_it_worse():
    from baselines import dispatch

    ta41 = instances.load("ta41")
    hint = dispatch(ta41, "mwkr").schedule
    result = cpsat.solve(ta41, time_limit_s=1.0, hint=hint)
    assert result.params["hinted"] is True
    assert result.objective <= hint.makespan
    validate_schedule(ta41, result.schedule)


def test_infeasible_hint_is_rejected():
    ta01 = instances.load("ta01")
    schedule = cpsat.solve(instances.load("ta02"), time_limit_s=0.2).schedule
    with pytest.raises(instances.InfeasibleScheduleError):
        cpsat.solve(ta01, time_limit_s=0.2, hint=schedule)


def test_zero_durations_release_dates_and_ragged_jobs_stay_valid():
    from tests.reference import random_test_instance

    rng = np.random.default_rng(11)
    for _ in range(25):
        instance = random_test_instance(rng)
        result = cpsat.solve(instance, time_limit_s=2)
        assert result.status == "optimal"
        validate_schedule(instance, result.schedule)
        # the env can reach the optimum too (any action set, replay in start order)
        assert replay(instance, result.schedule, action_set="any").makespan == result.objective


def test_same_seed_and_deterministic_budget_give_the_same_schedule():
    ta01 = instances.load("ta01")
    a = cpsat.solve(ta01, time_limit_s=30, workers=1, seed=7, deterministic_time=0.3)
    b = cpsat.solve(ta01, time_limit_s=30, workers=1, seed=7, deterministic_time=0.3)
    assert a.schedule == b.schedule and a.seed == 7 and a.params["deterministic_time"] == 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"time_limit_s": 0}, "time_limit_s must be > 0"), ({"workers": 0}, "workers must be >= 1")]
)
def test_bad_parameters_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cpsat.solve(instances.load("ta01"), **kwargs)
