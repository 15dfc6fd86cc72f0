"""sched_env/events.py: seeded dynamic scenarios (the foundation of the dynamic shop)."""

from __future__ import annotations

import numpy as np
import pytest

import instances
from instances import InvalidScenarioError, JobShopInstance
from sched_env.events import BREAKDOWN, MAINTENANCE, Scenario, generate_scenario


def full_scenario(seed=3, **kwargs) -> Scenario:
    options = dict(initial_jobs=4, arriving_jobs=20, utilisation=0.9, mtbf=400, mttr=40, noise=0.2,
                   maintenance=[(1, 50, 80)], seed=seed)  # fmt: skip
    options.update(kwargs)
    return generate_scenario(6, **options)


def test_same_seed_same_event_stream():
    assert full_scenario(seed=3) == full_scenario(seed=3)
    assert full_scenario(seed=3) != full_scenario(seed=4)


def test_every_event_type_is_drawn():
    scenario = full_scenario()
    arrivals = scenario.arrivals
    assert (arrivals[:4] == 0).all() and (np.diff(arrivals[4:]) >= 0).all() and arrivals[-1] > 0
    assert len(scenario.downtimes_of(BREAKDOWN)) > 0
    assert scenario.downtimes_of(MAINTENANCE).tolist() == [[1, 50, 80, MAINTENANCE]]
    planned, real = scenario.jobs.durations, scenario.realized_durations
    assert (real != planned).any() and (np.abs(real - planned) <= np.ceil(0.2 * planned) + 1).all()
    assert (scenario.jobs.due_dates > arrivals).all()
    assert set(scenario.jobs.weights.tolist()) <= {1, 2, 4}


def test_utilisation_sets_the_arrival_rate():
    low = generate_scenario(5, initial_jobs=0, arriving_jobs=400, utilisation=0.5, seed=0)
    high = generate_scenario(5, initial_jobs=0, arriving_jobs=400, utilisation=0.9, seed=0)
    span_low, span_high = low.arrivals[-1], high.arrivals[-1]
    assert span_low / span_high == pytest.approx(0.9 / 0.5, rel=0.15)
    offered = low.jobs.job_work().sum() / (5 * span_low)
    assert offered == pytest.approx(0.5, rel=0.15)


def test_downtimes_do_not_overlap_per_machine():
    scenario = full_scenario(mtbf=50, mttr=30)
    rows = scenario.downtimes
    for machine in range(scenario.n_machines):
        windows = rows[rows[:, 0] == machine]
        assert (windows[1:, 1] >= windows[:-1, 2]).all()
        assert (windows[:, 2] > windows[:, 1]).all()


def test_json_round_trip(tmp_path):
    scenario = full_scenario()
    assert Scenario.from_json(scenario.to_json()) == scenario
    assert Scenario.load(scenario.save(tmp_path / "s.json")) == scenario


def test_jobs_from_a_pool():
    pool = instances.load("ta01")
    scenario = generate_scenario(initial_jobs=2, arriving_jobs=5, pool=pool, seed=1)
    rows = {tuple(pool.machines[j]) for j in range(pool.n_jobs)}
    assert all(tuple(scenario.jobs.machines[j]) in rows for j in range(7))
    assert scenario.n_machines == 15


@pytest.mark.parametrize(
    ("downtimes", "message"),
    [
        ([[0, -5, 3, 0]], "downtime 0: start -5 is negative"),
        ([[9, 5, 8, 0]], "downtime 0: unknown machine 9"),
        ([[0, 10, 4, 0]], "repair at 4 is not after the failure at 10"),
        ([[0, 1, 5, 0], [0, 3, 9, 1]], "overlap; merge them"),
        ([[0, 1, 5, 7]], "kind must be 0"),
    ],
)
def test_bad_downtimes_are_clear_errors(downtimes, message):
    jobs = JobShopInstance.from_jobs([[(0, 2), (1, 3)]])
    with pytest.raises(InvalidScenarioError, match=message):
        Scenario(jobs, downtimes=np.array(downtimes))


def test_bad_scenario_input_is_a_clear_error():
    jobs = JobShopInstance.from_jobs([[(0, 2), (1, 3)]])
    with pytest.raises(InvalidScenarioError, match="realized duration -1 is negative"):
        Scenario(jobs, realized_durations=[[2, -1]])
    with pytest.raises(InvalidScenarioError, match="interruption must be one of"):
        Scenario(jobs, interruption="pause")
    with pytest.raises(InvalidScenarioError, match="not valid JSON"):
        Scenario.from_json("{")
    with pytest.raises(InvalidScenarioError, match="downtime 0 needs machine, start, end"):
        Scenario.from_dict({"jobs": jobs.to_dict(), "downtimes": [{"machine": 0}]})
    with pytest.raises(InvalidScenarioError, match="realized_durations\\[0\\] must be 2 integers"):
        Scenario.from_dict({"jobs": jobs.to_dict(), "realized_durations": [[1]]})
    with pytest.raises(InvalidScenarioError, match="give both mtbf and mttr"):
        generate_scenario(3, mtbf=10)
