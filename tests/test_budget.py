"""The one rule for what each layer keeps back of a budget (baselines.budget)."""

from __future__ import annotations

import time

import pytest

from baselines import budget
from baselines.budget import Reserve


def test_a_reserve_is_fixed_plus_share_of_the_limit_plus_per_operation():
    reserve = Reserve("test", fixed_s=0.01, share=0.1, per_operation_s=1e-3)
    assert reserve.seconds(2.0, 100) == pytest.approx(0.01 + 0.2 + 0.1)


def test_left_subtracts_elapsed_time_and_the_reserve_and_keeps_the_floor():
    reserve = Reserve("test", fixed_s=0.5)
    started = time.perf_counter() - 1.0  # one second ago
    assert reserve.left(3.0, started) == pytest.approx(1.5, abs=0.05)
    assert reserve.left(1.2, started, floor=0.01) == 0.01
    deadline = time.perf_counter() + 2.0
    assert reserve.until(deadline, 2.0) == pytest.approx(1.5, abs=0.05)
    assert budget.time_left(3.0, started) == pytest.approx(2.0, abs=0.05)


def test_each_layer_has_its_reserve_stated_once():
    assert budget.cpsat_stop(1) is budget.CPSAT_STOP_ONE_WORKER
    assert budget.cpsat_stop(2) is budget.CPSAT_STOP
    # the service keeps 3 ms and 3 us per operation back for writing its answer
    assert budget.SERVICE_ANSWER.seconds(1.0, 1000) == pytest.approx(0.006)
    # the tabu search keeps 20 ms and 1 % of its limit back for reading its plan back
    assert budget.TABU_READ_BACK.seconds(10.0) == pytest.approx(0.12)
    for reserve in (budget.SERVICE_ANSWER, budget.TABU_READ_BACK, budget.HYBRID_POLISH, budget.CPSAT_STOP):
        assert reserve.seconds(1.0, 100) < 0.1, f"{reserve.covers} keeps back a tenth of a 1 s budget"
