"""The compiled kernels against their plain-Python twins (tests/reference.py), step by step."""

from __future__ import annotations

import numpy as np
import pytest

import instances
from sched_env import JobShopEnv
from sched_env import _kernels as K
from sched_env._names import RULE_NAMES
from tests.reference import ACTION_SETS, PLACEMENTS, ReferenceShop, random_test_instance, sample_valid_actions


def compare_episode(seed: int, placement: str, action_set: str, reward: str) -> int:
    """Run one random episode through the env (kernels) and the twin; compare every step."""
    rng = np.random.default_rng(seed)
    instance = random_test_instance(rng)
    pad = int(rng.integers(0, 3))  # sometimes pad the job window
    env = JobShopEnv(
        instance,
        max_jobs=instance.n_jobs + pad,
        max_ops=instance.max_ops + int(rng.integers(0, 2)),
        placement=placement,
        action_set=action_set,
        reward_mode=reward,
    )
    obs, info = env.reset(seed=seed)
    twin = ReferenceShop(instance, env.layout.J, env.layout.O, placement, action_set, reward)
    steps = 0
    done = False
    while True:
        where = f"seed {seed}, {placement}/{action_set}, step {steps}"
        mask = twin.mask()
        np.testing.assert_array_equal(obs["action_mask"], mask, err_msg=f"mask differs at {where}")
        np.testing.assert_allclose(
            obs["jobs"], twin.features(mask), rtol=1e-5, atol=1e-6, err_msg=f"features at {where}"
        )
        estimates = [twin.est(j) for j in range(env.layout.J) if twin.n_ops(j) > 0]
        assert env.earliest_starts()[: len(estimates)].tolist() == estimates, f"earliest starts differ at {where}"
        assert env.lower_bound == twin.bound, f"lower bound differs at {where}"
        assert env.makespan == twin.makespan
        if done:
            break
        # mostly valid actions, sometimes an invalid one (replaced by the lowest allowed job)
        if rng.random() < 0.1:
            action = int(rng.integers(-1, env.layout.J + 1))
        else:
            action = int(rng.choice(np.flatnonzero(mask)))
        obs, reward, done, truncated, info = env.step(action)
        twin_reward, twin_done, twin_invalid = twin.step(action, mask)
        assert reward == pytest.approx(twin_reward, abs=1e-9), f"reward differs at {where}"
        assert (done, info["invalid_action"]) == (twin_done, twin_invalid), where
        expected = twin.start[: instance.n_jobs, : instance.max_ops]
        np.testing.assert_array_equal(
            env.schedule().start_matrix(instance), expected, err_msg=f"start times differ at {where}"
        )
        steps += 1
    assert steps == instance.n_operations
    return steps


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("action_set", ACTION_SETS)
@pytest.mark.parametrize("reward", ["dense", "sparse"])
def test_kernels_match_reference_twins(placement, action_set, reward):
    for seed in range(40):  # 40 x 12 combinations = 480 random episodes
        compare_episode(seed, placement, action_set, reward)


@pytest.mark.slow
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("action_set", ACTION_SETS)
def test_kernels_match_reference_twins_many(placement, action_set):
    for seed in range(1000, 2500):
        compare_episode(seed, placement, action_set, "dense")


def test_sample_valid_actions_matches_twin():
    rng = np.random.default_rng(3)
    masks = (rng.random((200, 7)) < 0.4).astype(np.int8)
    uniforms = rng.random(200)
    actions = np.zeros(200, dtype=np.int64)
    K.sample_valid_actions(masks, uniforms, actions)
    np.testing.assert_array_equal(actions, sample_valid_actions(masks, uniforms))
    assert all(a == -1 or masks[i, a] for i, a in enumerate(actions))


def test_batched_step_kernel_matches_twins():
    """``step_batch`` (parallel over shops) against one twin per shop, autoreset included."""
    from sched_env import BatchJobShopEnv

    rng = np.random.default_rng(7)
    pool = [random_test_instance(rng, max_jobs=5, max_machines=3, max_ops=4) for _ in range(6)]
    batch = BatchJobShopEnv(6, pool, max_jobs=5, max_machines=3, max_ops=4, action_set="giffler_thompson", seed=1)
    obs, _ = batch.reset(seed=1)
    twins = [ReferenceShop(batch.instance(i), 5, 4, "active", "giffler_thompson", "dense") for i in range(6)]
    for step in range(80):
        masks = np.stack([t.mask() for t in twins])
        np.testing.assert_array_equal(obs["action_mask"], masks, err_msg=f"step {step}")
        actions = sample_valid_actions(masks, rng.random(6))
        obs, rewards, dones, _, info = batch.step(actions)
        for i, twin in enumerate(twins):
            reward, done, _ = twin.step(int(actions[i]), masks[i])
            assert rewards[i] == pytest.approx(reward, abs=1e-9)
            assert dones[i] == done
            if done:
                assert info["_final_obs"][i] and info["final_info"]["_makespan"][i]
                assert info["final_info"]["makespan"][i] == twin.makespan
                final = info["final_obs"][i]["jobs"]
                np.testing.assert_allclose(final, twin.features(twin.mask()), rtol=1e-5, atol=1e-6)
                twins[i] = ReferenceShop(batch.instance(i), 5, 4, "active", "giffler_thompson", "dense")


@pytest.mark.parametrize("rule", RULE_NAMES)
@pytest.mark.parametrize("action_set", ACTION_SETS)
def test_rule_rollouts_match_reference_twins(rule, action_set):
    """``rollout_rules``/``choose_by_rule`` against a twin rollout, for every rule."""
    from baselines.rules import dispatch_many
    from tests.reference import choose_by_rule

    rng = np.random.default_rng(17)
    pool = []
    for _ in range(25):
        instance = random_test_instance(rng)
        pool.append(instance.replace(due_dates=rng.integers(0, 60, size=instance.n_jobs)))
    results = dispatch_many(pool, rule, placement="active", action_set=action_set, seed=5)
    steps = max(i.n_operations for i in pool)
    uniforms = np.random.default_rng(5).random((len(pool), steps))  # what dispatch_many draws
    for n, (instance, result) in enumerate(zip(pool, results)):
        twin = ReferenceShop(
            instance, max(i.n_jobs for i in pool), max(i.max_ops for i in pool), "active", action_set, "sparse"
        )
        for step in range(instance.n_operations):
            mask = twin.mask()
            twin.step(choose_by_rule(twin, mask, rule, uniforms[n, step]), mask)
        expected = twin.start[: instance.n_jobs, : instance.max_ops]
        np.testing.assert_array_equal(result.schedule.start_matrix(instance), np.where(expected >= 0, expected, -1))


def test_warm_up_compiles_groups_once_and_names_bad_ones():
    from sched_env import warmup

    warmup.warm_up("static")
    assert warmup.is_cached("static")  # this process compiled or loaded it: numba's cache holds it now
    heard = []
    assert warmup.warm_up("static", say=heard.append) == 0.0 and heard == []  # nothing left to do, nothing said
    with pytest.raises(ValueError, match="unknown kernel group"):
        warmup.warm_up("everything")


def test_envs_and_rollouts_reuse_the_warmed_kernels_without_compiling_again():
    """A kernel called with other argument types (a bool for an int, a literal constant) is compiled
    once more; on a fresh machine that happened inside the first plans' budgets."""
    from sched_env import warmup
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.events import generate_scenario

    warmup.warm_up("static", "dynamic")
    before = {name: len(getattr(K, name).signatures) for name in K.__dict__ if hasattr(getattr(K, name), "signatures")}
    scenario = generate_scenario(3, initial_jobs=3, arriving_jobs=3, mtbf=50, mttr=5, seed=1)
    for allow_wait in (False, True):
        env = DynamicJobShopEnv(scenario, allow_wait=allow_wait)
        env.reset(seed=0)
        env.step(int(np.flatnonzero(env.action_masks())[0]))
        if allow_wait:
            env.wait()
    after = {name: len(getattr(K, name).signatures) for name in before}
    assert after == before, {name: (before[name], after[name]) for name in before if after[name] != before[name]}


def test_small_batches_use_the_serial_kernels():
    assert K.for_batch(K.step_batch, K.PARALLEL_MIN_SHOPS - 1) is K.step_batch


@pytest.mark.slow
def test_the_parallel_twin_of_a_batch_kernel_steps_like_the_serial_one():
    """Batches of PARALLEL_MIN_SHOPS or more run the parallel twin; both give the same schedules."""
    from baselines.rules import dispatch_many

    pool = [instances.random_instance(6, 4, seed=s) for s in range(K.PARALLEL_MIN_SHOPS)]
    twin = K.for_batch(K.rollout_rules, len(pool))
    if twin is K.rollout_rules:
        pytest.skip("one numba thread: no parallel twin")
    big = dispatch_many(pool, "mwkr")
    small = [dispatch_many([instance], "mwkr")[0] for instance in pool[:20]]
    assert [r.schedule for r in big[:20]] == [r.schedule for r in small]
