"""sched_env/dynamic.py: the dynamic shop against its twin, its invariants, and the checkers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from instances import InvalidActionError, InvalidScenarioError, JobShopInstance
from sched_env._names import RULE_NAMES
from sched_env.dynamic import DynamicJobShopEnv
from sched_env.events import Scenario, ScenarioGenerator, generate_scenario
from sched_env.schedule import find_violations
from tests.helpers import noisy_shop
from tests.reference import ReferenceDynamicShop


def small_scenario(seed: int, interruption: str) -> Scenario:
    rng = np.random.default_rng(seed)
    return generate_scenario(
        int(rng.integers(1, 4)), initial_jobs=int(rng.integers(0, 3)), arriving_jobs=int(rng.integers(1, 6)),
        utilisation=float(rng.uniform(0.5, 1.2)), low=0, high=12, mtbf=float(rng.uniform(5, 40)),
        mttr=float(rng.uniform(1, 10)), noise=0.4, tightness=float(rng.uniform(0.5, 2)),
        interruption=interruption, seed=rng,
        maintenance=[(0, int(rng.integers(0, 20)), int(rng.integers(20, 30)))] if rng.random() < 0.5 else (),
    )  # fmt: skip


def compare_with_twin(scenario, seed: int, objective: str, window: int, allow_wait: bool) -> int:
    """Drive the env and its twin with the same random actions (waits included); compare the
    clock, mask, features and reward at every step, and the schedules at the end."""
    env = DynamicJobShopEnv(scenario, objective=objective, max_jobs=window, allow_wait=allow_wait)
    obs, info = env.reset(seed=seed)
    twin = ReferenceDynamicShop(scenario, env.layout.J, env.layout.O, objective, allow_wait)
    twin.settle()
    rng = np.random.default_rng(seed)
    done, step = False, 0
    while True:
        where = f"seed {seed}, window {window}, step {step}"
        mask = twin.mask()
        assert env.time == twin.now, where
        np.testing.assert_array_equal(obs["action_mask"], mask, err_msg=where)
        np.testing.assert_allclose(obs["jobs"], twin.features(mask), rtol=1e-5, atol=1e-5, err_msg=where)
        assert [j if j >= 0 else None for j in env.slot_jobs().tolist()] == twin.slots, where
        if done:
            break
        if allow_wait and mask[-1] and rng.random() < 0.25:
            until = int(env.time + rng.integers(1, 30)) if rng.random() < 0.5 else None
            obs, reward, done, _, info = env.wait(until) if until is not None else env.step(window)
            twin.wait(until)
        else:
            action = int(rng.choice(np.flatnonzero(mask[:window])))
            obs, reward, done, _, info = env.step(action)
            twin.run(action)
            twin.settle()  # the first reward also carries the time before the first decision
        assert reward == pytest.approx(twin.reward(), abs=1e-9), where
        step += 1
    jobs = scenario.jobs
    expected = twin.start[: jobs.n_jobs, : jobs.max_ops]
    np.testing.assert_array_equal(info["schedule"].start_matrix(jobs), expected)
    assert info["wasted_work"] == twin.wasted
    return step


@pytest.mark.parametrize("interruption", ["resume", "restart"])
@pytest.mark.parametrize("objective", ["makespan", "total_weighted_tardiness", "mean_flow_time"])
def test_dynamic_kernels_match_the_reference_twin(interruption, objective):
    for seed in range(40):
        scenario = small_scenario(seed, interruption)
        compare_with_twin(scenario, seed, objective, scenario.jobs.n_jobs + seed % 2, allow_wait=False)


@pytest.mark.parametrize("interruption", ["resume", "restart"])
def test_wait_action_matches_the_twin(interruption):
    for seed in range(40):
        scenario = small_scenario(seed, interruption)
        compare_with_twin(scenario, seed, "total_weighted_tardiness", scenario.jobs.n_jobs, allow_wait=True)


@pytest.mark.parametrize("interruption", ["resume", "restart"])
def test_a_stream_longer_than_the_window_reuses_slots_like_the_twin(interruption):
    """More jobs than slots: jobs queue, take freed slots, and everything still equals the twin."""
    reused = 0
    for seed in range(25):
        rng = np.random.default_rng(seed)
        machines = int(rng.integers(1, 4))
        scenario = generate_scenario(
            machines, initial_jobs=int(rng.integers(0, 4)), arriving_jobs=int(rng.integers(6, 14)), utilisation=1.1,
            low=0, high=12, mtbf=30.0, mttr=5.0, noise=0.4, tightness=1.0, interruption=interruption, seed=rng,
        )  # fmt: skip
        window = int(rng.integers(machines, machines + 3))
        compare_with_twin(scenario, seed, "mean_flow_time", window, allow_wait=bool(seed % 2))
        reused += scenario.jobs.n_jobs > window
    assert reused >= 20


@pytest.mark.parametrize("interruption", ["resume", "restart"])
def test_random_rollouts_respect_every_dynamic_constraint(interruption):
    for seed in range(30):
        env, obs, rng = noisy_shop(seed, interruption, (1, 100, 160))
        scenario = env.scenario
        total, done, decided_at = 0.0, False, {env.time}
        while not done:
            assert obs["action_mask"].any()
            obs, reward, done, _, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            total += reward
            decided_at.add(info["time"])
        schedule = info["schedule"]
        assert find_violations(
            scenario.jobs, schedule, durations=scenario.realized_durations, downtimes=scenario.downtimes,
            interruption=interruption,
        ) == []  # fmt: skip
        # decisions happen at epochs only: every operation starts at a time the env stopped at
        assert set(schedule.start.tolist()) <= decided_at, "an operation started between decision epochs"
        scale = max(1, round(float(scenario.jobs.job_work().mean())))
        assert total == pytest.approx(-info["total_weighted_tardiness"] / (scale * scenario.jobs.n_jobs))


def test_same_seed_same_rollout():
    def rollout():
        env = DynamicJobShopEnv(ScenarioGenerator(mtbf=200, mttr=30, noise=0.2))
        obs, _ = env.reset(seed=7)
        rng, trace, done = np.random.default_rng(1), [], False
        while not done:
            obs, reward, done, _, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            trace.append((reward, info["time"]))
        return trace, info["schedule"]

    assert rollout() == rollout()


def test_jobs_are_invisible_before_they_arrive():
    jobs = JobShopInstance.from_jobs([[(0, 5)], [(0, 5)]], release_dates=[0, 50], due_dates=[10, 60])
    env = DynamicJobShopEnv(Scenario(jobs))
    obs, _ = env.reset()
    assert env.time == 0 and obs["action_mask"].tolist() == [1, 0] and not obs["jobs"][1].any()
    obs, reward, done, _, info = env.step(0)
    assert env.time == 50 and obs["action_mask"].tolist() == [0, 1]  # the clock jumped to the arrival
    obs, reward, done, _, info = env.step(1)
    assert done and info["makespan"] == 55 and info["total_weighted_tardiness"] == 0


def test_breakdown_interrupts_per_policy():
    jobs = JobShopInstance.from_jobs([[(0, 10)]])
    for policy, end, wasted in (("resume", 15, 0), ("restart", 19, 4)):
        scenario = Scenario(jobs, downtimes=np.array([[0, 4, 9, 0]]), interruption=policy)
        env = DynamicJobShopEnv(scenario, objective="makespan")
        env.reset()
        _, _, done, _, info = env.step(0)
        if policy == "restart":  # aborted at 4, machine back at 9: start again
            assert not done and env.time == 9
            _, _, done, _, info = env.step(0)
        assert done and info["makespan"] == end and info["wasted_work"] == wasted


def test_registered_dynamic_env_passes_both_checkers():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("sched_env/DynamicJobShop-v0")
    check_env(env.unwrapped, skip_render_check=True)
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(gym.make("sched_env/DynamicJobShop-v0", objective="mean_flow_time").unwrapped, warn=False)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown objective 'speed'"):
        DynamicJobShopEnv(objective="speed")
    with pytest.raises(InvalidScenarioError, match="scenario must be"):
        DynamicJobShopEnv(42)
    env = DynamicJobShopEnv(ScenarioGenerator(), strict=True)
    obs, _ = env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="is not allowed at time"):
        env.step(int(np.flatnonzero(obs["action_mask"] == 0)[0]) if (obs["action_mask"] == 0).any() else 99)


@pytest.mark.parametrize("rule", RULE_NAMES)
@pytest.mark.parametrize("interruption", ["resume", "restart"])
def test_dynamic_rules_match_the_twin(rule, interruption):
    from baselines.rules import dispatch_dynamic_many
    from tests.reference import dynamic_choose

    scenarios = [small_scenario(seed, interruption) for seed in range(12)]
    results = dispatch_dynamic_many(scenarios, rule, objective="total_weighted_tardiness", seed=3)
    uniforms = np.random.default_rng(3).random((len(scenarios), 4 * max(s.jobs.n_operations for s in scenarios)))
    J = max(s.jobs.n_jobs for s in scenarios)
    O = max(s.jobs.max_ops for s in scenarios)  # noqa: E741
    for n, (scenario, result) in enumerate(zip(scenarios, results)):
        twin = ReferenceDynamicShop(scenario, J, O, "total_weighted_tardiness")
        twin.settle()
        step = 0
        while twin.mask().any():
            twin.run(dynamic_choose(twin, twin.mask(), rule, uniforms[n, step % uniforms.shape[1]]))
            twin.settle()
            step += 1
        expected = twin.start[: scenario.jobs.n_jobs, : scenario.jobs.max_ops]
        np.testing.assert_array_equal(result.schedule.start_matrix(scenario.jobs), expected, err_msg=f"scenario {n}")
        assert result.objective == result.params["total_weighted_tardiness"]


def test_dynamic_batch_equals_single_envs_step_by_step():
    from sched_env.dynamic import BatchDynamicJobShopEnv

    generator = ScenarioGenerator(n_machines=3, initial_jobs=2, arriving_jobs=4, mtbf=150, mttr=20, noise=0.3,
                                  interruption="restart")  # fmt: skip
    n = 4
    batch = BatchDynamicJobShopEnv(n, generator, seed=2)
    obs, _ = batch.reset()
    singles = [DynamicJobShopEnv(generator) for _ in range(n)]
    single_obs = [env.reset(options={"scenario": batch.scenario(i)})[0] for i, env in enumerate(singles)]
    rng, finished = np.random.default_rng(0), 0
    for step in range(150):
        for i in range(n):
            np.testing.assert_array_equal(obs["jobs"][i], single_obs[i]["jobs"], err_msg=f"shop {i} step {step}")
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in obs["action_mask"]])
        obs, rewards, terminated, _, info = batch.step(actions)
        for i, env in enumerate(singles):
            o, r, d, _, single_info = env.step(int(actions[i]))
            assert rewards[i] == pytest.approx(r) and terminated[i] == d
            if d:
                finished += 1
                assert batch.final_schedule(i) == single_info["schedule"]
                o, _ = env.reset(options={"scenario": batch.scenario(i)})
            single_obs[i] = o
    assert finished >= n


def test_shop_draining_reads_1_once_the_last_job_arrives_and_never_in_a_plan_of_known_work():
    """A scenario is the whole episode: once its last job has arrived the shop drains. A plan of a
    running shop's known work (``ShopState``) is an open stream: more may come, so it never drains."""
    from sched_env import compiled as K
    from sched_env.events import OPEN_STREAM
    from sched_env.snapshot import residual

    scenario = generate_scenario(4, initial_jobs=2, arriving_jobs=4, utilisation=0.9, seed=1)
    last = int(scenario.jobs.release_dates.max())
    env = DynamicJobShopEnv(scenario)
    obs, _ = env.reset(seed=0)
    column, read, done, state = K.DF.shop_draining, [], False, None
    while not done:
        active = obs["jobs"][obs["jobs"][:, K.DF.allowed] > 0]
        read.append((env.time, float(active[0, column])))
        if state is None and env.time > 0:
            state = env.snapshot()
        obs, _, done, _, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    assert {value for time, value in read if time < last} == {0.0}
    assert {value for time, value in read if time >= last} == {1.0}
    plan = residual(state).as_scenario()
    assert plan.metadata[OPEN_STREAM] and Scenario.from_dict(plan.to_dict()).metadata[OPEN_STREAM]
    env = DynamicJobShopEnv(plan)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        assert not obs["jobs"][:, column].any()
        obs, _, done, _, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
