"""The dynamic flexible shop: kernels against the twin, machine choice under breakdowns, snapshots, plans of the rest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from baselines import deciders
from sched_env.dynamic import BatchDynamicJobShopEnv, DynamicJobShopEnv
from sched_env.events import Scenario, ScenarioGenerator, generate_scenario
from sched_env.snapshot import plan_violations
from tests.reference import ReferenceFlexibleDynamicShop

MACHINE_RULES = ("eet", "spt", "ll", "est")


def small_flexible_scenario(seed: int, interruption: str) -> Scenario:
    rng = np.random.default_rng(seed)
    machines = int(rng.integers(1, 4))
    return generate_scenario(
        machines, initial_jobs=int(rng.integers(0, 3)), arriving_jobs=int(rng.integers(1, 6)),
        utilisation=float(rng.uniform(0.5, 1.2)), low=0, high=12, mtbf=float(rng.uniform(5, 40)),
        mttr=float(rng.uniform(1, 10)), noise=0.4, tightness=float(rng.uniform(0.5, 2)), interruption=interruption,
        seed=rng, alternatives=(1, machines), speed_spread=0.4,
    )  # fmt: skip


def compare_with_twin(scenario, seed: int, objective: str, pairs: bool, allow_wait: bool) -> int:
    rule = MACHINE_RULES[seed % 4]
    options = {"pair_actions": True} if pairs else {"machine_rule": rule, "pair_actions": False}
    env = DynamicJobShopEnv(scenario, objective=objective, allow_wait=allow_wait, max_machines=scenario.n_machines + seed % 2,
                            **options)  # fmt: skip
    if not scenario.is_flexible:  # one alternative each: build the env as a flexible one all the same
        return 0
    obs, _ = env.reset(seed=seed)
    L = env.layout
    twin = ReferenceFlexibleDynamicShop(scenario, L.J, L.O, L.M, objective, allow_wait, "eet" if pairs else rule)
    twin.settle()
    rng = np.random.default_rng(seed)
    done, step = False, 0
    while True:
        where = f"seed {seed}, {'pairs' if pairs else rule}, step {step}"
        mask = twin.mask()
        assert env.time == twin.now, where
        expected_mask = twin.pair_mask() if pairs else mask
        np.testing.assert_array_equal(obs["action_mask"], expected_mask, err_msg=where)
        np.testing.assert_allclose(obs["jobs"], twin.features(mask), rtol=1e-5, atol=1e-5, err_msg=where)
        if pairs:
            np.testing.assert_allclose(obs["pairs"], twin.pair_features(), rtol=1e-5, atol=1e-5, err_msg=where)
        planned = {i: twin.machine_of(j) for i, j in enumerate(twin.slots) if j is not None and twin.unfinished(j)}
        assert {i: m for i, m in enumerate(env.planned_machines()) if i in planned} == planned, where
        if done:
            break
        if allow_wait and mask[-1] and rng.random() < 0.25:
            obs, reward, done, _, info = env.step(env.n_actions - 1)
            twin.wait(None)
        else:
            action = int(rng.choice(np.flatnonzero(obs["action_mask"][: env.n_actions - allow_wait])))
            obs, reward, done, _, info = env.step(action)
            slot, machine = divmod(action, L.M) if pairs else (action, None)
            twin.run(slot, machine)
            twin.settle()
        assert reward == pytest.approx(twin.reward(), abs=1e-9), where
        step += 1
    jobs = scenario.jobs
    np.testing.assert_array_equal(info["schedule"].start_matrix(jobs), twin.start[: jobs.n_jobs, : jobs.max_ops])
    used = np.full(twin.used.shape, -1)
    used[info["schedule"].job, info["schedule"].op] = info["schedule"].machine
    np.testing.assert_array_equal(used, twin.used)
    assert info["wasted_work"] == twin.wasted
    return step


@pytest.mark.parametrize("interruption", ["resume", "restart"])
@pytest.mark.parametrize("pairs", [True, False])
def test_flexible_dynamic_kernels_match_the_twin(interruption, pairs):
    steps = 0
    for seed in range(40):
        steps += compare_with_twin(small_flexible_scenario(seed, interruption), seed, "total_weighted_tardiness",
                                   pairs, allow_wait=seed % 3 == 0)  # fmt: skip
    assert steps > 200


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["makespan", "mean_flow_time"])
def test_flexible_dynamic_kernels_match_the_twin_many(objective):
    for seed in range(1000, 1400):
        compare_with_twin(small_flexible_scenario(seed, ("resume", "restart")[seed % 2]), seed, objective,
                          bool(seed % 3), allow_wait=seed % 5 == 0)  # fmt: skip


def flexible_generator(**changes) -> ScenarioGenerator:
    base = ScenarioGenerator(n_machines=5, initial_jobs=4, arriving_jobs=12, alternatives=(1, 3), speed_spread=0.3,
                             mtbf=150, mttr=30, noise=0.2)  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_waiting_work_moves_to_another_machine_when_its_machine_breaks_down():
    generator = flexible_generator(mtbf=None, mttr=None, alternatives=(2, 2))
    scenario = generator(3)
    first_machine = int(scenario.jobs.machines[0, 0])
    broken = Scenario(scenario.jobs, realized_durations=scenario.realized_durations,
                      downtimes=[[first_machine, 0, 10_000, 0]], name="broken")  # fmt: skip
    env = DynamicJobShopEnv(broken, machine_rule="eet")
    env.reset()
    done = False
    while not done:
        _, _, done, _, info = env.step(int(np.flatnonzero(env.action_masks())[0]))
    schedule = info["schedule"]
    assert (schedule.machine != first_machine).all() or (
        schedule.start[schedule.machine == first_machine] >= 10_000
    ).all()


def test_snapshots_record_the_machine_of_done_and_running_work_and_rules_plan_the_rest():
    env = DynamicJobShopEnv(flexible_generator(), machine_rule="eet")
    env.reset(seed=4)
    for _ in range(15):
        env.step(int(np.flatnonzero(env.action_masks())[-1]))
    state = env.snapshot()
    assert state.jobs.is_flexible and len(state.done) + len(state.running) > 0
    so_far = env.schedule()
    ran = {(j, k): m for j, k, m in zip(so_far.job.tolist(), so_far.op.tolist(), so_far.machine.tolist())}
    for local, k, m, *_ in state.done.tolist():
        assert ran[int(state.job_ids[local]), k] == m
    for method in ("mwkr+eet", "atc+ll", "right-shift", "cpsat:2"):
        plan = deciders.solve(state, method, hint=deciders.solve(state, "edd").schedule).schedule
        assert not plan_violations(state, plan), method


def test_batched_flexible_dynamic_env_runs_rules_and_pairs():
    for options in ({}, {"machine_rule": "spt"}):
        batch = BatchDynamicJobShopEnv(4, flexible_generator(), seed=1, allow_wait=True, **options)
        obs, _ = batch.reset()
        assert batch.pair_actions == (not options)
        finished = 0
        for _ in range(400):
            obs, _, dones, _, info = batch.step(batch.rule_choices(2))
            finished += int(dones.sum())
            for i in np.flatnonzero(dones):
                assert batch.final_schedule(i) is not None
        assert finished >= 4


def test_flexible_scenarios_round_trip_through_json_and_stay_classic_without_alternatives():
    scenario = flexible_generator()(5)
    assert scenario.is_flexible and scenario.realized_durations.shape == scenario.jobs.processing.shape
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    classic = dataclasses.replace(flexible_generator(), alternatives=None)(5)
    again = generate_scenario(5, initial_jobs=4, arriving_jobs=12, mtbf=150, mttr=30, noise=0.2, seed=5)
    assert classic == again and not classic.is_flexible  # the flexible option draws nothing from a classic scenario


def test_dynamic_rules_dispatch_flexible_scenarios_valid():
    from baselines.rules import dispatch_dynamic_many

    scenarios = [flexible_generator(interruption=("resume", "restart")[i % 2])(i) for i in range(6)]
    for rule in ("atc", "mwkr+ll", "spt+spt", "edd+est"):
        for result in dispatch_dynamic_many(scenarios, rule):  # each validated against its real durations
            assert result.objective is not None


def test_gymnasium_checker_passes_on_the_flexible_dynamic_env():
    from gymnasium.utils.env_checker import check_env

    for options in ({}, {"machine_rule": "eet"}, {"allow_wait": True}):
        check_env(DynamicJobShopEnv(flexible_generator(), **options), skip_render_check=True)


@pytest.mark.parametrize(
    ("method", "execution"),
    [("tabu:iters=200", "exact"), ("tabu:iters=200", "sequence"), ("tabu:iters=200", "priority"),
     ("right-shift", "exact"), ("cpsat:0.3", "exact"), ("hybrid:0.3", "sequence")],
)  # fmt: skip
def test_replanners_carry_out_flexible_plans_to_the_end(method, execution):
    """Each plan's machines are followed (pair actions); the run is valid against the real durations,
    and a search with a move count replays the same run."""
    if method.startswith(("cpsat", "hybrid")):
        pytest.importorskip("ortools")
    from baselines.replan import Replanner
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.schedule import validate_schedule

    scenario = flexible_generator()(3)
    initial = "tabu:iters=200" if method == "right-shift" else None

    def run():
        env = DynamicJobShopEnv(scenario, allow_wait=execution != "priority")
        assert env.pair_actions
        replanner = Replanner(method, initial=initial, execution=execution)
        return replanner, replanner.run(env)

    replanner, result = run()
    assert len(result.schedule) == scenario.jobs.n_operations and result.params["plans"] >= 2
    validate_schedule(scenario.jobs, result.schedule, durations=scenario.realized_for(result.schedule),
                      downtimes=scenario.downtimes,
                      interruption=scenario.interruption)  # fmt: skip
    if execution != "priority" and method.startswith("tabu"):
        # every operation runs on the machine of the plan in force when it started: one whose planned
        # machine is busy waits for it (it was once put on the first free machine, which lost to ATC)
        for j, k, m, start in zip(result.schedule.job, result.schedule.op, result.schedule.machine,
                                  result.schedule.start):  # fmt: skip
            _time, plan, ids = [p for p in replanner.plans if p[0] <= start][-1]  # the last plan made by then
            row = np.flatnonzero((ids[plan.job] == j) & (plan.op == k))
            assert len(row) == 0 or plan.machine[row[0]] == m, f"job {j} op {k} left its planned machine"
    if method.startswith("tabu"):
        assert run()[1].schedule == result.schedule


def test_rule_deciders_keep_their_machine_rule_online_and_on_running_shops():
    """``atc+ll`` through the decider door dispatches with least-loaded machines, as the rule kernels do
    (it once fell back to eet online and on a ShopState)."""
    from baselines import deciders
    from baselines.rules import dispatch_dynamic_many

    scenarios = [flexible_generator()(i) for i in range(4)]
    for spec in ("atc+ll", "mwkr+spt", "edd+est"):
        online = deciders.dispatch_online(deciders.make(spec), scenarios)
        direct = dispatch_dynamic_many(scenarios, spec)
        assert [r.objective for r in online] == [r.objective for r in direct]
    by_machine_rule = {
        spec: [r.objective for r in dispatch_dynamic_many(scenarios, spec)] for spec in ("atc+eet", "atc+ll")
    }
    assert by_machine_rule["atc+eet"] != by_machine_rule["atc+ll"], "the scenarios do not tell the machine rules apart"
    env = DynamicJobShopEnv(scenarios[0])
    env.reset(seed=0)
    for _ in range(6):
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    state = env.snapshot()
    plans = {spec: deciders.solve(state, spec).schedule for spec in ("atc+eet", "atc+ll")}
    assert plans["atc+eet"] != plans["atc+ll"]
