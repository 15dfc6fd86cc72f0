"""sched_env/env.py: Gymnasium and SB3 conventions, semantics, determinism and the replay property."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import instances
import sched_env
from instances import InvalidActionError, InvalidInstanceError, RandomInstanceGenerator
from sched_env import JobShopEnv, replay, validate_schedule
from tests.helpers import optimal_schedule, random_feasible_schedule
from tests.reference import random_test_instance

REGISTERED = [env_id for env_id in gym.registry if env_id.startswith("sched_env/")]
STATIC_IDS = ["sched_env/JobShop-v0"]  # sched_env/DynamicJobShop-v0 is checked in test_dynamic.py
MODES = [(p, a) for p in ("append", "active") for a in ("any", "giffler_thompson", "non_delay")]


def random_rollout(env, seed: int, steps: int = 10_000):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = [obs]
    for _ in range(steps):
        assert obs["action_mask"].any(), "the mask is all-false before the episode ended"
        obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        trace.append((obs, reward, terminated))
        if terminated or truncated:
            break
    return trace, info


# ----------------------------------------------------------------- conventions
def test_ids_are_registered_and_each_is_checked():
    assert sorted(REGISTERED) == sorted([*STATIC_IDS, "sched_env/DynamicJobShop-v0"])


@pytest.mark.parametrize("env_id", STATIC_IDS)
@pytest.mark.parametrize("kwargs", [{}, {"instance": "ta01", "reward_mode": "sparse", "placement": "append"}])
def test_gymnasium_env_checker_passes(env_id, kwargs):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", STATIC_IDS)
@pytest.mark.parametrize("action_set", ["any", "giffler_thompson", "non_delay"])
def test_sb3_env_checker_passes(env_id, action_set):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(gym.make(env_id, action_set=action_set).unwrapped, warn=False)


def test_step_returns_python_types():
    env = JobShopEnv("ta01")
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.int64(int(np.flatnonzero(env.action_masks())[0])))
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert type(info["invalid_action"]) is bool


def test_make_with_catalogue_name():
    env = gym.make("sched_env/JobShop-v0", instance="ta01")
    obs, info = env.reset(seed=0)
    assert obs["jobs"].shape == (15, len(sched_env.FEATURE_NAMES)) and info["instance"] == "ta01"


@pytest.mark.parametrize(("placement", "action_set"), MODES)
def test_same_seed_same_rollout(placement, action_set):
    generator = RandomInstanceGenerator(8, 5)
    a, _ = random_rollout(JobShopEnv(generator, placement=placement, action_set=action_set), seed=11)
    b, _ = random_rollout(JobShopEnv(generator, placement=placement, action_set=action_set), seed=11)
    assert len(a) == len(b)
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(x[0]["jobs"], y[0]["jobs"])
        assert x[1:] == y[1:]


def test_generator_source_gives_a_new_instance_each_reset():
    env = JobShopEnv(RandomInstanceGenerator(6, 4))
    env.reset(seed=5)
    first = env.instance
    env.reset()
    assert not env.instance.same_data(first)
    env.reset(seed=5)
    assert env.instance.same_data(first)


# ----------------------------------------------------------------- episodes and rewards
@pytest.mark.parametrize(("placement", "action_set"), MODES)
def test_episode_gives_a_valid_schedule_and_dense_return_is_minus_makespan(placement, action_set):
    for seed in range(15):
        instance = random_test_instance(np.random.default_rng(seed))
        env = JobShopEnv(instance, placement=placement, action_set=action_set)
        trace, info = random_rollout(env, seed)
        assert len(trace) - 1 == instance.n_operations
        validate_schedule(instance, info["schedule"])
        assert info["makespan"] == info["schedule"].makespan
        episode_return = sum(step[1] for step in trace[1:])
        first_bound = max(instance.job_work() + (instance.release_dates if instance.release_dates is not None else 0))
        scale = max(1, instance.simple_lower_bound())
        assert episode_return == pytest.approx(-(info["makespan"] - first_bound) / scale)


def test_sparse_reward_is_minus_makespan_at_the_end():
    env = JobShopEnv("ta01", reward_mode="sparse")
    trace, info = random_rollout(env, seed=3)
    rewards = [step[1] for step in trace[1:]]
    assert rewards[:-1] == [0.0] * (len(rewards) - 1)
    assert rewards[-1] == pytest.approx(-info["makespan"] / 977)


def test_mask_is_never_all_false_before_the_end_on_benchmarks():
    for name in ("ta01", "ta41"):
        for action_set in ("any", "giffler_thompson", "non_delay"):
            trace, _ = random_rollout(JobShopEnv(name, action_set=action_set), seed=1)
            assert trace[-1][2] is True


def test_padded_env_serves_instances_of_different_sizes():
    small, large = instances.random_instance(3, 2, seed=1), instances.random_instance(7, 4, seed=2)
    env = JobShopEnv([small, large])
    assert env.observation_space["jobs"].shape == (7, 10)
    seen = set()
    for seed in range(10):
        trace, info = random_rollout(env, seed)
        seen.add(env.instance.n_jobs)
        validate_schedule(env.instance, info["schedule"])
        assert not trace[0]["action_mask"][env.instance.n_jobs :].any()
        assert not trace[0]["jobs"][env.instance.n_jobs :].any()
    assert seen == {3, 7}


def test_instance_too_large_for_the_window_is_a_clear_error():
    env = JobShopEnv("ta01")
    with pytest.raises(InvalidInstanceError, match="does not fit this env .*max_jobs=15"):
        env.reset(options={"instance": "ta41"})


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown placement 'left'; choose one of: active, append"):
        JobShopEnv("ta01", placement="left")
    with pytest.raises(ValueError, match="max_jobs=10 is smaller than the instances need"):
        JobShopEnv("ta01", max_jobs=10)
    with pytest.raises(InvalidInstanceError, match="instance must be"):
        JobShopEnv(42)
    with pytest.raises(gym.error.ResetNeeded):
        JobShopEnv("ta01").step(0)


# ----------------------------------------------------------------- invalid actions
def test_invalid_action_is_replaced_by_the_lowest_allowed_job():
    env = JobShopEnv("ta01", action_set="giffler_thompson")
    obs, _ = env.reset(seed=0)
    allowed = np.flatnonzero(obs["action_mask"])
    forbidden = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    twin = JobShopEnv("ta01", action_set="giffler_thompson")
    twin.reset(seed=0)
    for bad in (forbidden, -1, 999):
        env.reset(seed=0)
        obs_bad, r_bad, *_, info = env.step(bad)
        twin.reset(seed=0)
        obs_ok, r_ok, *_ = twin.step(int(allowed[0]))
        assert info["invalid_action"] is True
        np.testing.assert_array_equal(obs_bad["jobs"], obs_ok["jobs"])
        assert r_bad == r_ok


def test_strict_mode_raises_and_keeps_the_state():
    env = JobShopEnv("ta01", action_set="giffler_thompson", strict=True)
    obs, _ = env.reset(seed=0)
    forbidden = int(np.flatnonzero(obs["action_mask"] == 0)[0])
    before = env.schedule()
    with pytest.raises(InvalidActionError, match=f"action {forbidden} is not allowed now"):
        env.step(forbidden)
    assert env.schedule() == before and len(before) == 0


def test_stepping_after_the_end_changes_nothing():
    env = JobShopEnv(instances.random_instance(2, 2, seed=0))
    _, final_info = random_rollout(env, seed=0)
    obs, reward, terminated, _, info = env.step(0)
    assert terminated and reward == 0.0 and info["invalid_action"]
    assert env.schedule() == final_info["schedule"]


# ----------------------------------------------------------------- reachability
@pytest.mark.parametrize("placement", ["append", "active"])
def test_replaying_a_feasible_schedule_never_makes_it_longer(placement):
    rng = np.random.default_rng(2024)
    for _ in range(150):
        instance = random_test_instance(rng)
        schedule = random_feasible_schedule(instance, rng)
        validate_schedule(instance, schedule)
        replayed = validate_schedule(instance, replay(instance, schedule, placement=placement))
        assert replayed.makespan <= schedule.makespan


def test_replaying_an_optimal_ft06_schedule_gives_55(ft06):
    optimum = optimal_schedule(ft06)
    assert optimum.makespan == 55
    for placement in ("append", "active"):
        assert replay(ft06, optimum, placement=placement).makespan == 55


def test_giffler_thompson_can_reach_the_ft06_optimum(ft06):
    """Active schedules are exactly those GT builds: choose, in the conflict set, the job whose
    next operation starts first in an optimal active schedule."""
    target = replay(ft06, optimal_schedule(ft06), placement="active")  # an optimal active schedule
    start = target.start_matrix(ft06)
    env = JobShopEnv(ft06, action_set="giffler_thompson", strict=True)
    obs, _ = env.reset()
    done = False
    while not done:
        allowed = np.flatnonzero(obs["action_mask"])
        next_ops = env.next_operations()
        job = min(allowed, key=lambda j: start[j, next_ops[j]])
        obs, _, done, _, info = env.step(int(job))
    assert info["makespan"] == 55


# ----------------------------------------------------------------- rendering
def test_render_modes(tmp_path):
    env = JobShopEnv("ta01", render_mode="ansi")
    random_rollout(env, seed=0)
    text = env.render()
    assert text.count("\n") == 15 and "makespan" in text
    pytest.importorskip("matplotlib")
    env = JobShopEnv(instances.random_instance(4, 3, seed=0), render_mode="rgb_array")
    random_rollout(env, seed=0)
    image = env.render()
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.std() > 0
