"""Rescheduling a running dynamic shop: CP-SAT from a snapshot, and right-shift repair."""

from __future__ import annotations

import numpy as np
import pytest

from instances import InfeasibleScheduleError
from sched_env.dynamic import DynamicJobShopEnv
from sched_env.events import generate_scenario
from sched_env.schedule import objective_value
from sched_env.snapshot import plan_violations
from tests.helpers import noisy_shop

cpsat = pytest.importorskip("baselines.cpsat", reason="OR-Tools is not installed")
from baselines.repair import right_shift  # noqa: E402


def run_until(env, rng, steps):
    obs = env._observation()
    for _ in range(steps):
        if env._done:
            break
        obs, *_ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
    return env.snapshot()


@pytest.mark.parametrize("interruption", ["resume", "restart"])
@pytest.mark.parametrize("objective", ["total_weighted_tardiness", "makespan", "mean_flow_time"])
def test_reschedule_keeps_done_and_running_work_and_fits_the_state(interruption, objective):
    for seed in range(4):
        env, _, rng = noisy_shop(seed, interruption, (0, 200, 260), initial_jobs=4, arriving_jobs=6, mtbf=120, mttr=40)
        state = run_until(env, rng, 12)
        result = cpsat.reschedule(state, time_limit_s=2, objective=objective)
        assert result.status in ("optimal", "feasible")
        assert plan_violations(state, result.schedule) == []
        assert result.objective == objective_value(state.jobs, result.schedule, objective)
        rows = set(zip(result.schedule.job.tolist(), result.schedule.op.tolist(), result.schedule.start.tolist()))
        assert all((j, k, s) in rows for j, k, _m, s, _e in state.done.tolist() + state.running.tolist())
        waiting = set(state.waiting())
        for j, k, s in zip(result.schedule.job.tolist(), result.schedule.op.tolist(), result.schedule.start.tolist()):
            if (j, k) in waiting:
                assert s >= state.time
        downs = state.downtimes.tolist()
        for j, k, m, s, e in zip(
            *(getattr(result.schedule, c).tolist() for c in ("job", "op", "machine", "start", "end"))
        ):
            if (j, k) in waiting:  # no planned work on a machine while it is known to be down
                assert all(not (s < b and a < e) for mm, a, b, _ in downs if mm == m)


def test_right_shift_repairs_an_old_plan_and_hints_cp_sat():
    scenario = generate_scenario(4, initial_jobs=4, arriving_jobs=6, mtbf=150, mttr=30, noise=0.3, seed=5)
    env = DynamicJobShopEnv(scenario)
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    first = run_until(env, rng, 8)
    plan = cpsat.reschedule(first, time_limit_s=1).schedule
    later = run_until(env, rng, 10)
    repaired = right_shift(later, plan, first.job_ids)
    assert plan_violations(later, repaired.schedule) == [] and repaired.method == "right-shift"
    hinted = cpsat.reschedule(later, time_limit_s=1, hint=repaired.schedule)
    assert hinted.objective <= repaired.objective
    with pytest.raises(InfeasibleScheduleError, match="does not fit the shop state"):
        cpsat.reschedule(later, time_limit_s=1, hint=plan)  # the old plan itself no longer fits


def test_unknown_objective_is_a_clear_error():
    env = DynamicJobShopEnv(generate_scenario(3, seed=0))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown objective 'speed'"):
        cpsat.reschedule(env.snapshot(), objective="speed")


@pytest.mark.parametrize("execution", ["exact", "sequence", "priority"])
@pytest.mark.parametrize(("method", "initial"), [("cpsat:0.2", None), ("right-shift", "cpsat:0.2"), ("atc", None)])
def test_replanner_runs_a_scenario_to_the_end_with_valid_plans(method, initial, execution):
    from baselines.replan import Replanner

    scenario = generate_scenario(3, initial_jobs=2, arriving_jobs=4, mtbf=200, mttr=20, noise=0.2, seed=2)
    env = DynamicJobShopEnv(scenario, allow_wait=execution != "priority")
    result = Replanner(method, initial=initial, execution=execution).run(env)
    assert result.params["plans"] >= 1 and result.params["total_weighted_tardiness"] == result.objective
    assert len(result.schedule) == scenario.jobs.n_operations


def test_exact_execution_starts_operations_at_their_planned_times():
    """Without noise or breakdowns a plan is carried out exactly: every start as planned,
    idle machines included (the non-delay priority following cannot do that)."""
    from baselines.replan import Replanner

    scenario = generate_scenario(4, initial_jobs=6, arriving_jobs=0, tightness=1.0, seed=4)
    replanner = Replanner("cpsat:2", seed=0)
    exact = replanner.run(DynamicJobShopEnv(scenario, allow_wait=True))
    assert exact.params["plans"] == 1
    _time, plan, ids = replanner.plans[0]
    planned = dict(zip(zip(ids[plan.job].tolist(), plan.op.tolist()), plan.start.tolist()))
    done = dict(zip(zip(exact.schedule.job.tolist(), exact.schedule.op.tolist()), exact.schedule.start.tolist()))
    assert done == planned


def test_replanner_needs_the_wait_action_for_exact_execution():
    from baselines.replan import Replanner

    with pytest.raises(ValueError, match="allow_wait=True"):
        Replanner("atc").run(DynamicJobShopEnv(generate_scenario(3, seed=0)))
    with pytest.raises(ValueError, match="unknown execution 'fast'"):
        Replanner("atc", execution="fast")


def test_sequence_execution_keeps_each_machines_planned_order():
    """Noisy durations move the times, never the order of the operations on a machine."""
    from baselines.replan import Replanner

    scenario = generate_scenario(4, initial_jobs=6, arriving_jobs=0, noise=0.3, seed=6)
    replanner = Replanner("cpsat:1", execution="sequence")
    result = replanner.run(DynamicJobShopEnv(scenario, allow_wait=True))
    assert result.params["plans"] == 1
    _time, plan, ids = replanner.plans[0]
    for machine in range(scenario.n_machines):

        def order(schedule, job_ids, m=machine):
            rows = sorted(
                zip(schedule.start.tolist(), job_ids.tolist(), schedule.op.tolist(), schedule.machine.tolist())
            )
            return [(j, k) for _s, j, k, mm in rows if mm == m]

        assert order(result.schedule, result.schedule.job) == order(plan, ids[plan.job])


@pytest.mark.slow
def test_dynamic_benchmark_quick_run(tmp_path):
    from experiments.bench_dynamic import main

    assert main(["--quick", "--out", str(tmp_path)]) == 0
    assert "| ta01-u90-bd |" in (tmp_path / "dynamic_quick.md").read_text()


def test_the_dynamic_scenarios_over_several_seeds_count_where_each_decider_is_at_or_below_the_best_rule(tmp_path):
    from experiments.bench_dynamic import RULES
    from experiments.episode_seeds import main

    assert main(["--seeds", "2", "--methods", "policy", "--out", str(tmp_path), "--name", "seeds"]) == 0
    rows = [line.split(" | ") for line in (tmp_path / "seeds.md").read_text().splitlines() if line.startswith("| ")]
    methods = [row[0].removeprefix("| ") for row in rows[1:]]
    assert methods == [*RULES, "policy"] and rows[1][2] == "1.000"  # atc against itself
    assert sum(row[-1].startswith("2 of") for row in rows[1:]) <= 1 + methods.count("policy")
    assert any(not row[-1].startswith("0 of") for row in rows[1 : len(RULES) + 1])  # some rule is the best
