"""sched_env/vector.py and sched_env/sb3.py: the batch equals N single envs; both adapters work."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sched_env
from instances import InvalidActionError, RandomInstanceGenerator
from sched_env import BatchJobShopEnv, JobShopEnv, validate_schedule


@pytest.mark.parametrize("action_set", ["any", "giffler_thompson", "non_delay"])
@pytest.mark.parametrize("placement", ["append", "active"])
def test_batch_equals_single_envs_step_by_step(placement, action_set):
    generator = RandomInstanceGenerator(5, 4, low=0, high=9)
    n = 5
    batch = BatchJobShopEnv(n, generator, placement=placement, action_set=action_set, seed=3)
    obs, _ = batch.reset()
    singles = [JobShopEnv(generator, placement=placement, action_set=action_set) for _ in range(n)]
    single_obs = [env.reset(options={"instance": batch.instance(i)})[0] for i, env in enumerate(singles)]
    rng = np.random.default_rng(0)
    finished = 0
    for step in range(120):
        for i in range(n):
            np.testing.assert_array_equal(obs["jobs"][i], single_obs[i]["jobs"], err_msg=f"shop {i} step {step}")
            np.testing.assert_array_equal(obs["action_mask"][i], single_obs[i]["action_mask"])
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in obs["action_mask"]])
        obs, rewards, terminated, truncated, info = batch.step(actions)
        for i, env in enumerate(singles):
            o, r, d, _, single_info = env.step(int(actions[i]))
            assert rewards[i] == r and terminated[i] == d and not truncated[i]
            if d:
                finished += 1
                np.testing.assert_array_equal(info["final_obs"][i]["jobs"], o["jobs"])
                assert info["final_info"]["makespan"][i] == single_info["makespan"]
                assert batch.final_schedule(i) == single_info["schedule"]
                validate_schedule(env.instance, batch.final_schedule(i))
                o, _ = env.reset(options={"instance": batch.instance(i)})  # the batch drew a new one
            single_obs[i] = o
    assert finished >= n * 4


def test_batch_results_do_not_depend_on_batch_size():
    generator = RandomInstanceGenerator(6, 3)
    small = BatchJobShopEnv(2, generator, seed=9)
    large = BatchJobShopEnv(8, generator, seed=9)
    small.reset()
    large.reset()
    # each shop has its own seeded stream: shop i is the same in both batches
    assert all(small.instance(i).same_data(large.instance(i)) for i in range(2))


def test_batch_strict_mode_and_bad_action_count():
    batch = BatchJobShopEnv(3, "ta01", action_set="giffler_thompson", strict=True)
    obs, _ = batch.reset(seed=0)
    actions = np.array([np.flatnonzero(m)[0] for m in obs["action_mask"]])
    actions[1] = np.flatnonzero(obs["action_mask"][1] == 0)[0]
    with pytest.raises(InvalidActionError, match="shop 1: action"):
        batch.step(actions)
    with pytest.raises(ValueError, match="expected 3 actions"):
        batch.step([0, 1])


def test_gymnasium_make_vec_uses_the_batched_env():
    envs = gym.make_vec("sched_env/JobShop-v0", num_envs=4, instance="ta01", vectorization_mode="vector_entry_point")
    assert isinstance(envs.unwrapped, sched_env.JobShopVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    assert obs["jobs"].shape == (4, 15, 10) and obs["action_mask"].shape == (4, 15)
    assert envs.observation_space.contains(obs)
    finals = 0
    for _ in range(225):
        actions = np.array([np.flatnonzero(m)[0] for m in obs["action_mask"]])
        obs, rewards, terminated, truncated, info = envs.step(actions)
        if terminated.any():
            finals += int(info["_final_obs"].sum())
            assert all(info["final_obs"][i] is not None for i in np.flatnonzero(info["_final_obs"]))
    assert finals == 4  # every shop finished its 225-step episode once, then restarted
    assert obs["action_mask"].any(axis=1).all()  # every restarted shop has allowed actions


def test_sb3_vec_env_adapter_answers_the_mask_protocol():
    pytest.importorskip("stable_baselines3")
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    from sched_env.sb3 import JobShopVecEnv

    env = JobShopVecEnv(3, instance="ta01", seed=0)
    obs = env.reset()
    assert is_masking_supported(env)
    masks = get_action_masks(env)
    assert masks.shape == (3, 15) and masks.dtype == bool
    np.testing.assert_array_equal(masks, obs["action_mask"].astype(bool))
    done_seen = False
    for _ in range(225):
        env.step_async(np.array([np.flatnonzero(m)[0] for m in get_action_masks(env)]))
        obs, rewards, dones, infos = env.step_wait()
        if dones.any():
            done_seen = True
            assert "terminal_observation" in infos[0] and infos[0]["makespan"] > 0
    assert done_seen


def test_maskable_ppo_trains_on_the_batched_adapter(tmp_path):
    """Smoke training: a few thousand steps of sb3-contrib MaskablePPO on JobShopVecEnv."""
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.evaluation import evaluate_policy

    from sched_env.sb3 import JobShopVecEnv

    env = JobShopVecEnv(8, instance=RandomInstanceGenerator(6, 4), seed=0)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=256, batch_size=256, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=4096)
    assert model.num_timesteps >= 4096
    model.save(tmp_path / "policy")
    loaded = MaskablePPO.load(tmp_path / "policy", device="cpu")
    from stable_baselines3.common.monitor import Monitor

    eval_env = Monitor(JobShopEnv(RandomInstanceGenerator(6, 4)))
    mean_return, _ = evaluate_policy(loaded, eval_env, n_eval_episodes=3)
    assert np.isfinite(mean_return) and mean_return <= 0


def test_maskable_ppo_trains_on_gymnasium_make_without_adapter_code():
    """The README's promise: gymnasium.make + MaskablePPO, nothing else."""
    pytest.importorskip("sb3_contrib")
    from sb3_contrib import MaskablePPO

    env = gym.make("sched_env/JobShop-v0", instance=RandomInstanceGenerator(5, 4))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    obs, _ = env.reset(seed=1)
    done = False
    while not done:
        action, _ = model.predict(obs, action_masks=env.unwrapped.action_masks(), deterministic=True)
        obs, _, done, _, info = env.step(action)
    validate_schedule(env.unwrapped.instance, info["schedule"])
