"""The flexible shop's simulator and env against the plain-Python twin, step by step; the checkers."""

from __future__ import annotations

import numpy as np
import pytest

import instances
from sched_env import JobShopEnv
from sched_env import _kernels as K
from sched_env.env import replay
from sched_env.schedule import validate_schedule
from tests.reference import ACTION_SETS, PLACEMENTS, ReferenceFlexibleShop, random_flexible_instance

MACHINE_RULES = ("eet", "spt", "ll", "est")


def compare_flexible_episode(seed: int, placement: str, action_set: str, pairs: bool = True) -> int:
    """One random flexible episode through the env and the twin (pair actions, or job actions
    whose machine the rule picks); every observable compared at every step."""
    rng = np.random.default_rng(seed)
    instance = random_flexible_instance(rng)
    rule = MACHINE_RULES[seed % len(MACHINE_RULES)]
    pad = int(rng.integers(0, 3))
    options = {"pair_actions": True} if pairs else {"machine_rule": rule}
    env = JobShopEnv(instance, max_jobs=instance.n_jobs + pad, max_machines=instance.n_machines + int(rng.integers(0, 2)),
                     placement=placement, action_set=action_set, **options)  # fmt: skip
    obs, _ = env.reset(seed=seed)
    L = env.layout
    twin = ReferenceFlexibleShop(instance, L.J, L.M, L.O, placement, action_set, "eet" if pairs else rule)
    steps, done = 0, False
    while True:
        where = f"seed {seed}, {placement}/{action_set}/{'pairs' if pairs else rule}, step {steps}"
        pair_mask = twin.pair_mask()
        jobs, pair_features = twin.features(pair_mask)
        planned = twin.planned(pair_mask)
        if pairs:
            np.testing.assert_array_equal(obs["action_mask"], pair_mask, err_msg=f"pair mask at {where}")
            np.testing.assert_allclose(obs["pairs"], pair_features, rtol=1e-5, atol=1e-6, err_msg=f"pairs at {where}")
        else:
            job_mask = pair_mask.reshape(L.J, L.M).any(axis=1).astype(np.int8)
            np.testing.assert_array_equal(obs["action_mask"], job_mask, err_msg=f"job mask at {where}")
        np.testing.assert_allclose(obs["jobs"], jobs, rtol=1e-5, atol=1e-6, err_msg=f"job features at {where}")
        assert {j: m for j, m in enumerate(env.planned_machines()) if m >= 0} == planned, where
        assert env.lower_bound == twin.bound and env.makespan == twin.makespan, where
        if done:
            break
        if rng.random() < 0.1:
            action = int(rng.integers(-1, env.n_actions + 1))
        else:
            action = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        twin_action = action
        if not pairs:
            job_mask = pair_mask.reshape(L.J, L.M).any(axis=1)
            job = action if 0 <= action < L.J and job_mask[action] else int(np.flatnonzero(job_mask)[0])
            twin_action = job * L.M + planned[job]
        obs, reward, done, _, info = env.step(action)
        twin_reward, twin_done, twin_invalid = twin.step(twin_action, pair_mask)
        assert reward == pytest.approx(twin_reward, abs=1e-9), f"reward at {where}"
        assert done == twin_done and (not pairs or info["invalid_action"] == twin_invalid), where
        schedule = env.schedule()
        np.testing.assert_array_equal(
            schedule.start_matrix(instance), twin.start[: instance.n_jobs, : instance.max_ops]
        )
        steps += 1
    assert steps == instance.n_operations
    validate_schedule(instance, env.schedule())
    return steps


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("action_set", ACTION_SETS)
def test_flexible_kernels_match_the_twin_with_pair_actions(placement, action_set):
    for seed in range(30):
        compare_flexible_episode(seed, placement, action_set, pairs=True)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("action_set", ACTION_SETS)
def test_flexible_kernels_match_the_twin_with_job_actions_and_machine_rules(placement, action_set):
    for seed in range(24):
        compare_flexible_episode(seed, placement, action_set, pairs=False)


@pytest.mark.slow
@pytest.mark.parametrize("action_set", ACTION_SETS)
def test_flexible_kernels_match_the_twin_many(action_set):
    for seed in range(1000, 1600):
        compare_flexible_episode(seed, "active", action_set, pairs=bool(seed % 2))


def test_pair_actions_on_a_flexible_instance_are_the_default_and_replay_any_schedule():
    mk01 = instances.load("mk01")
    env = JobShopEnv(mk01)
    assert env.pair_actions and env.action_space.n == 10 * 6 and env.decode_action(13) == (2, 1)
    obs, _ = env.reset(seed=1)
    assert set(obs) == {"jobs", "pairs", "action_mask"} and obs["pairs"].shape == (10, 6, K.N_PAIR_FEATURES)
    rng = np.random.default_rng(1)
    done = False
    while not done:
        obs, _, done, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    schedule = validate_schedule(mk01, info["schedule"])
    assert replay(mk01, schedule).makespan <= schedule.makespan
    assert env.observation_space.contains(obs)


def test_job_actions_with_a_machine_rule_keep_the_classic_observation():
    env = JobShopEnv(instances.load("mk01"), machine_rule="spt")
    obs, _ = env.reset()
    assert not env.pair_actions and set(obs) == {"jobs", "action_mask"} and obs["action_mask"].shape == (10,)
    with pytest.raises(ValueError, match="unknown machine_rule 'fast'; choose one of: eet, spt, ll, est"):
        JobShopEnv(instances.load("mk01"), machine_rule="fast")
    with pytest.raises(ValueError, match="drop one of them"):
        JobShopEnv(instances.load("mk01"), machine_rule="eet", pair_actions=True)


def test_classic_instances_take_pair_actions_on_their_one_machine(tiny):
    env = JobShopEnv(tiny, pair_actions=True)
    obs, _ = env.reset()
    allowed = np.flatnonzero(obs["action_mask"])
    assert all(m == tiny.machines[j, 0] for j, m in map(env.decode_action, allowed))
    classic = JobShopEnv(tiny)
    classic_obs, _ = classic.reset()
    np.testing.assert_array_equal(obs["jobs"], classic_obs["jobs"])


def test_a_flexible_instance_in_a_classic_env_is_refused(tiny):
    env = JobShopEnv(tiny, max_jobs=10, max_machines=6, max_ops=6)
    with pytest.raises(instances.InvalidInstanceError, match="is flexible"):
        env.reset(options={"instance": instances.load("mk01")})


def test_gymnasium_and_sb3_checkers_pass_on_flexible_envs():
    from gymnasium.utils.env_checker import check_env

    for options in ({}, {"machine_rule": "eet"}):
        check_env(JobShopEnv(instances.SD1Generator(6, 4), **options), skip_render_check=True)
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(JobShopEnv(instances.load("mk01")), warn=True)


def test_batched_flexible_env_steps_like_single_envs():
    from sched_env import BatchJobShopEnv

    generator = instances.SD1Generator(5, 4)
    batch = BatchJobShopEnv(3, generator, seed=7)
    obs, _ = batch.reset()
    drawn = [generator(np.random.default_rng(child)) for child in np.random.SeedSequence(7).spawn(3)]
    singles = [
        JobShopEnv(d, max_jobs=batch.layout.J, max_machines=batch.layout.M, max_ops=batch.layout.O) for d in drawn
    ]
    assert all(single.pair_actions for single in singles) and batch.pair_actions
    single_obs = [single.reset()[0] for single in singles]
    rng = np.random.default_rng(0)
    finished = np.zeros(3, dtype=bool)
    for _ in range(200):
        for i in np.flatnonzero(~finished):
            for key in ("jobs", "pairs", "action_mask"):
                np.testing.assert_array_equal(obs[key][i], single_obs[i][key], err_msg=f"shop {i} {key}")
        actions = np.array([rng.choice(np.flatnonzero(mask)) for mask in obs["action_mask"]])
        obs, rewards, dones, _, info = batch.step(actions)
        for i, single in enumerate(singles):
            if finished[i]:
                continue
            single_obs[i], reward, done, _, single_info = single.step(int(actions[i]))
            assert rewards[i] == pytest.approx(reward)
            if done:
                assert dones[i] and info["final_info"]["makespan"][i] == single_info["makespan"]
                assert set(info["final_obs"][i]) == {"jobs", "pairs", "action_mask"}
                validate_schedule(drawn[i], batch.final_schedule(i))
                finished[i] = True
        if finished.all():
            break
    assert finished.all()


def test_gymnasium_vector_env_takes_flexible_instances():
    import gymnasium as gym

    import sched_env  # noqa: F401 - registers the ids

    vector = gym.make_vec(
        "sched_env/JobShop-v0", num_envs=4, instance=["mk01", "mk02"], vectorization_mode="vector_entry_point"
    )
    obs, _ = vector.reset(seed=0)
    assert obs["pairs"].shape == (4, 10, 6, K.N_PAIR_FEATURES) and vector.single_action_space.n == 60
    assert vector.observation_space.contains(obs)
    for _ in range(30):
        obs, *_ = vector.step(np.array([np.flatnonzero(mask)[0] for mask in vector.unwrapped.action_masks()]))
    vector.close()


def test_an_ineligible_pair_is_replaced_by_the_lowest_allowed_one_or_raises_with_strict():
    mk01 = instances.load("mk01")
    machine = next(m for m in range(mk01.n_machines) if mk01.processing[0, 0, m] < 0)
    env = JobShopEnv(mk01)
    obs, _ = env.reset()
    lowest = int(np.flatnonzero(obs["action_mask"])[0])
    env.step(machine)  # job 0 on a machine that cannot run its first operation
    assert env.schedule().job.tolist() == [lowest // 6] and env.schedule().machine.tolist() == [lowest % 6]
    strict = JobShopEnv(mk01, strict=True)
    strict.reset()
    with pytest.raises(instances.InvalidActionError, match=f"action {machine} is not allowed"):
        strict.step(machine)
