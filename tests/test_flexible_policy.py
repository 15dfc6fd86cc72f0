"""The (job, machine) pair policy: size independence (padded jobs and machines), plans on classic
and flexible shops, both recipes on the flexible training mix with resume, ONNX parity on
flexible masks, and ``policy`` through the decider door."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

import instances  # noqa: E402
from agents import rollouts  # noqa: E402
from agents.config import TrainConfig  # noqa: E402
from agents.loading import load_policy  # noqa: E402
from agents.rollouts import solve_with_policy  # noqa: E402
from agents.train import train  # noqa: E402
from baselines import deciders  # noqa: E402
from instances import SchedEnvError, shop_generator  # noqa: E402
from sched_env import BatchJobShopEnv, JobShopEnv, validate_schedule  # noqa: E402

TINY = {"embed_dim": 16, "ff_dim": 32, "n_layers": 2, "n_heads": 2, "threads": 1}
MIX = ("sd1:5x3", "few:6x4", "flow:5x4", "reentrant:4x3", "classic:5x3")


def flexible_config(tmp: Path, **changes) -> TrainConfig:
    values = {
        "shop": "flexible", "shops": MIX, "samples": 8, "timesteps": 2500, "eval_items": 6, "eval_every": 1200,
        "checkpoint_every": 1200, "out": str(tmp), "name": "flex", "n_envs": 8, "n_steps": 32, "batch_size": 64,
        **TINY,
    }  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def flexible_run(tmp_path_factory):
    return train(flexible_config(tmp_path_factory.mktemp("runs")), progress=False)


def _pad(obs: dict, jobs: int, machines: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observation of a shop as an env padded to ``jobs`` x ``machines`` would give it."""
    J, M, _ = obs["pairs"].shape
    padded_jobs = np.zeros((jobs, obs["jobs"].shape[1]), np.float32)
    padded_jobs[:J] = obs["jobs"]
    pairs = np.zeros((jobs, machines, obs["pairs"].shape[2]), np.float32)
    pairs[:J, :M] = obs["pairs"]
    mask = np.zeros((jobs, machines), np.float32)
    mask[:J, :M] = obs["action_mask"].reshape(J, M)
    return padded_jobs[None], pairs[None], mask.reshape(1, -1)


def test_padding_jobs_or_machines_never_changes_a_score(flexible_run):
    policy = load_policy(flexible_run["final"])
    env = JobShopEnv(shop_generator("sd1:6x4"))
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(12):
        jobs6, pairs6, mask6 = _pad(obs, 6, 4)
        base = policy.score(jobs6, mask6, pairs6)[0].reshape(6, 4)
        for jobs, machines in ((9, 4), (6, 7), (11, 9)):
            j, p, m = _pad(obs, jobs, machines)
            scores = policy.score(j, m, p)[0].reshape(jobs, machines)[:6, :4]
            allowed = obs["action_mask"].reshape(6, 4) > 0
            np.testing.assert_allclose(scores[allowed], base[allowed], rtol=1e-4, atol=1e-4)
        obs, *_ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))


@pytest.mark.parametrize("spec", ["sd1:12x6", "flow:10x5", "few:15x6", "reentrant:6x4", "classic:8x5", "sd1:40x10"])
def test_the_pair_policy_plans_flexible_and_classic_shops_of_any_size(flexible_run, spec):
    policy = load_policy(flexible_run["final"])
    instance = shop_generator(spec)(np.random.default_rng(7))
    greedy = solve_with_policy(policy, instance)
    validate_schedule(instance, greedy.schedule)
    best = solve_with_policy(policy, instance, samples=6, seed=1)
    validate_schedule(instance, best.schedule)
    assert best.objective <= greedy.objective


def test_a_job_only_policy_refuses_a_flexible_instance_and_says_which_to_use():
    job_policy = load_policy(kind="static")
    with pytest.raises(SchedEnvError, match="pair policy"):
        solve_with_policy(job_policy, instances.load("mk01"))


def test_onnx_export_matches_torch_on_flexible_masks(flexible_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from agents.onnx import export_onnx

    path = export_onnx(flexible_run["final"], tmp_path / "flex.onnx")
    torch_policy, onnx_policy = load_policy(flexible_run["final"]), load_policy(path)
    assert onnx_policy.pairs and onnx_policy.kind == "flexible" == torch_policy.kind
    for source in (shop_generator("sd1:20x10"), [instances.load("mk01"), shop_generator("classic:6x6")(0)]):
        batch = BatchJobShopEnv(8, instance=source, pair_actions=True, seed=0)
        obs, _ = batch.reset(seed=1)
        rng = np.random.default_rng(0)
        for _ in range(40):
            a = torch_policy.score(obs["jobs"], obs["action_mask"], obs["pairs"])
            b = onnx_policy.score(obs["jobs"], obs["action_mask"], obs["pairs"])
            allowed = obs["action_mask"] > 0
            np.testing.assert_allclose(a[allowed], b[allowed], rtol=1e-4, atol=1e-4)
            assert (b[~allowed] <= -1e7).all(), "masking must happen inside the ONNX graph"
            obs, *_ = batch.step(rollouts.choose_actions(a, rng))


@pytest.mark.parametrize("algo", ["self-labeling", "maskable-ppo"])
def test_both_recipes_train_the_pair_policy_and_resume(tmp_path, algo):
    cfg = flexible_config(tmp_path, algo=algo, name=algo, timesteps=1200, eval_every=600, checkpoint_every=600)
    first = train(cfg, progress=False)
    assert load_policy(first["final"]).pairs
    folder = tmp_path / "again"
    shutil.copytree(first["folder"], folder)
    checkpoint = sorted((folder / "checkpoints").glob("step_*.zip"))[0]
    before = int(checkpoint.stem.split("_")[1])
    resumed = train(flexible_config(tmp_path, algo=algo, timesteps=2400), resume=checkpoint, progress=False)
    assert resumed["folder"] == str(folder) and resumed["steps"] >= 2400 > before


def test_policy_through_the_decider_door_on_flexible_instances(flexible_run):
    for spec in (f"policy@{flexible_run['final']}", f"policy:4@{flexible_run['final']}"):
        for name in ("mk01", "kacem2"):
            instance = instances.load(name)
            result = deciders.solve(instance, spec)
            validate_schedule(instance, result.schedule)
            assert result.method == spec.split("@")[0] or result.method == spec


def test_shop_generator_specs_draw_their_structure_and_refuse_bad_ones():
    rng = np.random.default_rng(0)
    flow = shop_generator("flow:6x6")(rng)
    table = flow.processing_table()  # (jobs, ops, machines), -1 where a machine cannot run an op
    for j in range(flow.n_jobs):
        stages = [np.flatnonzero(table[j, k] >= 0).min() for k in range(int(flow.n_ops[j]))]
        assert stages == sorted(stages), "a flow route passes the machine stages in order"
    few = shop_generator("few:10x6")(rng)
    assert int(few.n_ops.max()) <= 3
    reentrant = shop_generator("reentrant:5x3")(rng)
    assert int(reentrant.n_ops.min()) >= 3
    for bad in ("sd2:10x5", "sd1:10", "sd1:axb"):
        with pytest.raises(SchedEnvError, match="KIND:JOBSxMACHINES|kind must be"):
            shop_generator(bad)
    with pytest.raises(SchedEnvError, match="config shops"):
        TrainConfig(shop="flexible", shops=("sd1:10x5", "nope:3x3"))


@pytest.fixture(scope="module")
def dynamic_flexible_run(tmp_path_factory):
    cfg = TrainConfig(
        shop="dynamic", alternatives=(1, 3), speed_spread=0.3, machines=(3, 4), initial_jobs=2, arriving_jobs=4,
        samples=8, timesteps=1500, eval_items=6, eval_every=1000, checkpoint_every=1000, name="dynflex",
        out=str(tmp_path_factory.mktemp("runs")), **TINY,
    )  # fmt: skip
    return train(cfg, progress=False)


def _running_flexible_shop():
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.events import ScenarioGenerator

    scenario = ScenarioGenerator(4, initial_jobs=3, arriving_jobs=5, alternatives=(1, 3), speed_spread=0.3, mtbf=400,
                                 mttr=40, noise=0.1)  # fmt: skip
    env = DynamicJobShopEnv(scenario, machine_rule="eet")
    env.reset(seed=4)
    for _ in range(6):
        env.step(int(np.flatnonzero(env.action_masks())[-1]))
    return env.snapshot()


def test_policy_replans_a_running_flexible_shop_through_the_decider_door(dynamic_flexible_run):
    from sched_env.snapshot import plan_violations

    policy = load_policy(dynamic_flexible_run["final"])
    assert policy.kind == "dynamic" and policy.pairs
    state = _running_flexible_shop()
    assert state.jobs.is_flexible and len(state.done) + len(state.running) > 0
    path = dynamic_flexible_run["final"]
    greedy = deciders.solve(state, f"policy@{path}")
    best = deciders.solve(state, f"policy:8@{path}")
    for result in (greedy, best):
        assert not plan_violations(state, result.schedule)
    assert best.objective <= greedy.objective


def test_the_shipped_policies_replan_a_running_flexible_shop():
    from sched_env.snapshot import plan_violations

    assert load_policy(kind="dynamic-flexible").pairs
    state = _running_flexible_shop()
    for spec in ("policy", "policy:4", "hybrid:0.5"):
        result = deciders.solve(state, spec)
        assert not plan_violations(state, result.schedule), spec


def test_a_job_only_dynamic_policy_refuses_a_running_flexible_shop():
    decider = deciders.make("policy")
    decider.use({"dynamic-flexible": load_policy(kind="dynamic")})  # a job-only policy where a pair one belongs
    with pytest.raises(SchedEnvError, match="chooses jobs only"):
        deciders.solve(_running_flexible_shop(), decider)


def test_the_shipped_pair_policy_plans_flexible_benchmarks_and_starts_the_hybrid():
    shipped = load_policy(kind="flexible")
    assert shipped.pairs and shipped.kind == "flexible"
    mk01 = instances.load("mk01")
    greedy = deciders.solve(mk01, "policy")
    validate_schedule(mk01, greedy.schedule)
    assert greedy.params["policy"] == shipped.name
    hybrid = deciders.solve(mk01, "hybrid:0.5")
    validate_schedule(mk01, hybrid.schedule)
    assert hybrid.params["policy_objective"] is not None, "the pair policy's plan is one of the hybrid's starts"
    assert hybrid.objective <= min(greedy.objective, deciders.solve(mk01, "mwkr+eet").objective)
