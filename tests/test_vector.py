"""sched_env/vector.py and sched_env/sb3.py: the batch equals N single envs; both adapters work."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sched_env
from instances import InvalidActionError, RandomInstanceGenerator
from sched_env import BatchJobShopEnv, JobShopEnv, validate_schedule
from sched_env import _kernels as K


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
    done_seen, returns = False, np.zeros(3)
    for step in range(225):
        env.step_async(np.array([np.flatnonzero(m)[0] for m in get_action_masks(env)]))
        obs, rewards, dones, infos = env.step_wait()
        returns += rewards
        if dones.any():
            done_seen = True
            assert "terminal_observation" in infos[0] and infos[0]["makespan"] > 0
            # the statistics SB3 logs as rollout/ep_rew_mean, without a VecMonitor: summed apart here
            assert infos[0]["episode"]["l"] == step + 1 == 225
            assert infos[0]["episode"]["r"] == pytest.approx(returns[0], rel=1e-5)
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


def _check_vector_info(info: dict, num_envs: int) -> None:
    """gymnasium.vector's conventions, key by key: one entry per env and a boolean `_key` mask."""
    for key, value in info.items():
        if key.startswith("_"):
            assert key[1:] in info, f"mask {key} without its key"
            continue
        mask = info[f"_{key}"]
        assert mask.dtype == bool and mask.shape == (num_envs,), key
        if isinstance(value, dict):
            _check_vector_info(value, num_envs)
        else:
            assert len(value) == num_envs, key
            if value.dtype == object:
                assert all((v is not None) == m for v, m in zip(value, mask)), key


@pytest.mark.parametrize(
    ("env_id", "kwargs", "final_keys"),
    [
        ("sched_env/JobShop-v0", {"instance": RandomInstanceGenerator(4, 3)}, {"makespan", "instance"}),
        (
            "sched_env/DynamicJobShop-v0",
            {"scenario": sched_env.ScenarioGenerator(n_machines=3, initial_jobs=2, arriving_jobs=2)},
            {"makespan", "total_weighted_tardiness", "mean_flow_time", "wasted_work", "max_queued", "scenario"},
        ),
    ],
)
def test_make_vec_infos_follow_the_vector_conventions(env_id, kwargs, final_keys):
    n = 5
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", render_mode="ansi", **kwargs)
    single = gym.make(env_id, **kwargs)
    _, single_info = single.reset(seed=0)
    obs, info = envs.reset(seed=0)
    assert envs.render_mode == "ansi" and len(envs.render()) == n
    assert {k for k in info if not k.startswith("_")} == set(single_info)  # same reset keys
    _check_vector_info(info, n)
    rng, finished = np.random.default_rng(0), 0
    for _ in range(60):
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in obs["action_mask"]])
        obs, _, terminated, _, info = envs.step(actions)
        _check_vector_info(info, n)
        assert info["_invalid_action"].all() and not info["invalid_action"].any()
        if terminated.any():
            finished += int(terminated.sum())
            np.testing.assert_array_equal(info["_final_obs"], terminated)
            np.testing.assert_array_equal(info["_final_info"], terminated)
            assert set(k for k in info["final_info"] if not k.startswith("_")) == final_keys
            for i in np.flatnonzero(terminated):
                assert (
                    envs.observation_space.contains({k: v[None] for k, v in info["final_obs"][i].items()})
                    or info["final_obs"][i]["jobs"].shape == obs["jobs"][i].shape
                )
            assert set(single_info) <= set(info)  # the new episodes' reset keys, for those shops
    assert finished > 0


def test_reset_option_instance_honours_instance_dir(tmp_path):
    import instances

    instances.write_instance(instances.load("ft06"), tmp_path / "mine.txt")
    env = JobShopEnv("ft06", instance_dir=tmp_path)
    _, info = env.reset(options={"instance": "mine"})
    assert info["instance"] == "mine" and env.instance.same_data(instances.load("ft06"))
    batch = BatchJobShopEnv(2, "ft06", instance_dir=tmp_path)
    _, info = batch.reset(options={"instance": "mine"})
    assert info["instance"].tolist() == ["mine", "mine"]


def test_dynamic_batch_reset_draws_new_scenarios_and_takes_strict():
    from sched_env import BatchDynamicJobShopEnv, ScenarioGenerator

    batch = BatchDynamicJobShopEnv(3, ScenarioGenerator(n_machines=3), seed=1, strict=True)
    obs, _ = batch.reset()
    first = [batch.scenario(i) for i in range(3)]
    batch.reset()
    assert all(batch.scenario(i) != first[i] for i in range(3))  # a reset without seed draws anew
    batch.reset(seed=1)
    assert all(batch.scenario(i) == first[i] for i in range(3))  # the same seed, the same draws
    actions = np.array([np.flatnonzero(m)[0] for m in batch.action_masks()])
    actions[0] = 99
    with pytest.raises(InvalidActionError, match="shop 0: action 99 is not allowed at time"):
        batch.step(actions)


def test_too_small_dynamic_window_fails_at_construction():
    from sched_env import DynamicJobShopEnv, generate_scenario

    scenario = generate_scenario(5, initial_jobs=5, arriving_jobs=10, seed=0)
    with pytest.raises(ValueError, match="max_jobs=2 is too small a window .* use max_jobs >= 5"):
        DynamicJobShopEnv(scenario, max_jobs=2)
    with pytest.raises(ValueError, match="max_machines=3 is smaller than the scenarios need"):
        DynamicJobShopEnv(scenario, max_machines=3)
    env = DynamicJobShopEnv(scenario, max_jobs=5)  # fewer slots than jobs: the rest queue
    obs, _ = env.reset(seed=0)
    assert obs["jobs"].shape == (5, K.N_DYNAMIC_FEATURES)


def test_sb3_adapter_answers_per_env_and_reports_invalid_actions():
    pytest.importorskip("stable_baselines3")
    from sched_env.sb3 import JobShopVecEnv

    env = JobShopVecEnv(3, instance=["ft06", "la01", "ta01"], seed=0)
    env.reset()
    names = [i.name for i in env.get_attr("instance")]
    assert len(names) == 3 and names == [env.batch.instance(i).name for i in range(3)]
    assert [len(s) for s in env.env_method("schedule")] == [0, 0, 0]
    actions = np.array([np.flatnonzero(m)[0] for m in env.action_masks()])
    actions[1] = -1
    env.step_async(actions)
    _, _, _, infos = env.step_wait()
    assert [i["invalid_action"] for i in infos] == [False, True, False]


def test_reset_can_give_each_shop_its_own_instance():
    import instances as inst

    items = [inst.random_instance(4, 3, seed=s) for s in range(3)] + [inst.random_instance(6, 3, seed=9)]
    batch = BatchJobShopEnv(4, instance=items, seed=0)
    batch.reset(options={"instances": items})
    assert [batch.instance(i) for i in range(4)] == items
    with pytest.raises(ValueError, match="one instance per shop"):
        batch.reset(options={"instances": items[:2]})


def test_batched_rule_choices_match_the_single_env():
    import instances as inst
    from baselines.rules import rule_id
    from sched_env import JobShopEnv

    instance = inst.random_instance(8, 4, seed=3)
    batch = BatchJobShopEnv(2, instance=instance, seed=0)
    batch.reset()
    single = JobShopEnv(instance)
    single.reset()
    for _ in range(instance.n_operations):
        choice = batch.rule_choices(rule_id("mwkr"))
        assert choice[0] == choice[1] == single.rule_choice(rule_id("mwkr"))
        batch.step(choice)
        single.step(int(choice[0]))
    with pytest.raises(ValueError, match="unknown rule id 99"):
        batch.rule_choices(99)


def test_dynamic_batch_rule_choices_follow_atc_like_the_rule_rollout():
    from baselines.rules import dispatch_dynamic_many, rule_id
    from sched_env.dynamic import BatchDynamicJobShopEnv
    from sched_env.events import generate_scenario

    scenario = generate_scenario(4, initial_jobs=3, arriving_jobs=5, mtbf=300, mttr=30, noise=0.2, seed=5)
    batch = BatchDynamicJobShopEnv(1, scenario)
    batch.reset()
    done = False
    while not done:
        _, _, dones, _, info = batch.step(batch.rule_choices(rule_id("atc")))
        done = bool(dones[0])
    expected = dispatch_dynamic_many([scenario], "atc")[0].objective
    assert info["final_info"]["total_weighted_tardiness"][0] == expected
