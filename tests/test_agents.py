"""agents/: the size-agnostic policy, training (self-labeling and MaskablePPO), resume,
determinism, inference through the decider door, ONNX parity, the shipped models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

import instances  # noqa: E402
from agents import deciders as agent_deciders  # noqa: E402
from agents import loading, rollouts  # noqa: E402
from agents.config import TrainConfig  # noqa: E402
from agents.loading import PolicyLoadError, load_policy  # noqa: E402
from agents.rollouts import solve_with_policy  # noqa: E402
from agents.train import train  # noqa: E402
from baselines import deciders  # noqa: E402
from sched_env import validate_schedule  # noqa: E402
from sched_env.compiled import picks_machines  # noqa: E402
from tests.helpers import run_cli, running_shop_state, within_budget  # noqa: E402

TINY = {"embed_dim": 16, "ff_dim": 32, "n_layers": 1, "n_heads": 2, "threads": 1}


def tiny_config(tmp: Path, **changes) -> TrainConfig:
    values = {
        "sizes": ("5x3", "6x4"), "samples": 8, "timesteps": 2500, "eval_items": 6, "eval_every": 1200,
        "checkpoint_every": 1200, "out": str(tmp), "name": "tiny", **TINY,
    }  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def static_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return train(tiny_config(folder), progress=False)


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(
        folder, shop="dynamic", machines=(3, 4), initial_jobs=2, arriving_jobs=4, pool_rule="atc", name="dyn",
        timesteps=1500, eval_every=1000, checkpoint_every=1000,
    )  # fmt: skip
    return train(cfg, progress=False)


# ---------------------------------------------------------------------- training
def test_self_labeling_run_writes_tensorboard_events_checkpoints_and_best(static_run):
    folder = Path(static_run["folder"])
    assert list((folder / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert sorted(p.name for p in (folder / "checkpoints").glob("step_*.zip")), "no periodic checkpoint"
    assert (folder / "final.zip").is_file() and (folder / "best.zip").is_file()
    scalars = (folder / "tb" / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("eval/gap_to_best_rule", "time/steps_per_second", "train/loss", "rollout/ep_objective_mean"):
        assert key in scalars, f"{key} not logged; logged: {scalars}"
    assert static_run["steps"] >= 2500


def test_maskable_ppo_trains_the_same_policy_class(tmp_path):
    cfg = tiny_config(tmp_path, algo="maskable-ppo", n_envs=4, n_steps=32, batch_size=64, n_epochs=1, timesteps=256)
    summary = train(cfg, progress=False)
    policy = load_policy(summary["final"])
    assert policy.kind == "static" and policy.config["algo"] == "maskable-ppo"
    assert list((Path(summary["folder"]) / "tb").glob("events.out.tfevents.*"))


def test_maskable_ppo_on_the_batched_dynamic_shop(tmp_path):
    cfg = tiny_config(tmp_path, shop="dynamic", algo="maskable-ppo", machines=(3,), initial_jobs=2, arriving_jobs=3,
                      n_envs=4, n_steps=32, batch_size=64, n_epochs=1, timesteps=256, eval_every=128)  # fmt: skip
    summary = train(cfg, progress=False)
    assert load_policy(summary["final"]).kind == "dynamic"
    rows = (Path(summary["folder"]) / "tb" / "progress.csv").read_text()
    assert "rollout/ep_objective_mean" in rows.splitlines()[0]


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_unmasked_sb3_algorithms_train_and_evaluate(tmp_path, algo):
    cfg = tiny_config(tmp_path, algo=algo, n_envs=4, n_steps=16, batch_size=32, n_epochs=1, timesteps=128,
                      eval_every=64)  # fmt: skip
    summary = train(cfg, progress=False)
    assert summary["steps"] >= 128
    assert np.isfinite(summary["validation"]["gap_to_reference"])


def test_resume_continues_the_step_count_and_the_same_curve(static_run, tmp_path):
    import shutil

    folder = tmp_path / "tiny"
    shutil.copytree(static_run["folder"], folder)
    checkpoint = sorted((folder / "checkpoints").glob("step_*.zip"))[0]
    steps_before = int(checkpoint.stem.split("_")[1])
    cfg = tiny_config(tmp_path, timesteps=4000)
    summary = train(cfg, resume=checkpoint, progress=False)
    assert summary["folder"] == str(folder)
    assert summary["steps"] >= 4000 > steps_before
    rows = (folder / "tb" / "progress.csv").read_text().splitlines()
    assert len(rows) > 2
    assert len(list((folder / "tb").glob("events.out.tfevents.*"))) >= 2, "the resumed run logs into the same folder"


def test_same_seed_same_weights_on_cpu(tmp_path):
    import torch

    weights = []
    for name in ("a", "b"):
        summary = train(tiny_config(tmp_path, name=name, timesteps=1200, eval_every=10**6), progress=False)
        from sb3_contrib import MaskablePPO

        weights.append(MaskablePPO.load(summary["final"], device="cpu").policy.state_dict())
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), f"{key} differs between two runs with one seed"


def test_a_second_run_into_a_used_folder_is_refused(static_run):
    cfg = tiny_config(Path(static_run["folder"]).parent)
    with pytest.raises(instances.SchedEnvError, match="--resume"):
        train(cfg, progress=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shop": "flow"}, "shop='flow'"),
        ({"algo": "sac"}, "algo='sac'"),
        ({"sizes": ("15by15",)}, "JOBSxMACHINES"),
        ({"samples": 0}, "samples=0"),
        ({"embed_dim": 30, "n_heads": 4}, "multiple of n_heads"),
    ],
)
def test_bad_config_says_which_key_and_what_to_do(changes, message):
    with pytest.raises(instances.SchedEnvError, match=message):
        TrainConfig(**changes)


def test_config_overrides_parse_by_type_and_unknown_keys_are_named():
    cfg = TrainConfig.from_dict({}, ["timesteps=1e5", "sizes=10x10,20x15", "utilisation=0.8,0.9"])
    assert cfg.timesteps == 100_000 and cfg.sizes == ("10x10", "20x15") and cfg.utilisation == (0.8, 0.9)
    with pytest.raises(instances.SchedEnvError, match="unknown config keys \\['stpes'\\]"):
        TrainConfig.from_dict({}, ["stpes=5"])


# ---------------------------------------------------------------------- the policy
def test_save_load_gives_the_same_actions(static_run):
    import torch
    from sb3_contrib import MaskablePPO

    model = MaskablePPO.load(static_run["final"], device="cpu")
    loaded = load_policy(static_run["final"])
    rng = np.random.default_rng(0)
    J = model.observation_space["jobs"].shape[0]  # SB3's predict checks the training shape
    jobs = rng.normal(size=(16, J, 10)).astype(np.float32)
    masks = (rng.random((16, J)) < 0.6).astype(np.float32)
    masks[:, 2] = 1
    with torch.no_grad():
        direct = model.policy.scores(torch.as_tensor(jobs), torch.as_tensor(masks)).numpy()
    np.testing.assert_array_equal(direct.argmax(-1), loaded.score(jobs, masks).argmax(-1))
    obs = {"jobs": jobs[:1], "action_mask": masks[:1]}
    action, _ = model.predict(obs, deterministic=True, action_masks=masks[:1].astype(bool))
    assert int(action[0]) == int(direct[0].argmax())


def test_padded_rows_never_change_a_score(static_run):
    policy = load_policy(static_run["final"])
    rng = np.random.default_rng(1)
    jobs = rng.normal(size=(4, 6, 10)).astype(np.float32)
    masks = np.ones((4, 6), dtype=np.float32)
    padded = np.concatenate([jobs, np.zeros((4, 10, 10), np.float32)], axis=1)
    padded_masks = np.concatenate([masks, np.zeros((4, 10), np.float32)], axis=1)
    np.testing.assert_allclose(
        policy.score(jobs, masks), policy.score(padded, padded_masks)[:, :6], rtol=1e-5, atol=1e-5
    )
    assert (policy.score(padded, padded_masks)[:, 6:] <= -1e7).all(), "padded rows must stay masked"


@pytest.mark.parametrize(("jobs", "machines"), [(3, 2), (12, 7), (40, 10), (100, 20)])
def test_policy_on_unseen_sizes_gives_valid_schedules(static_run, jobs, machines):
    policy = load_policy(static_run["final"])
    instance = instances.random_instance(jobs, machines, seed=jobs)
    for samples in (1, 4):
        result = solve_with_policy(policy, instance, samples=samples, seed=3)
        validate_schedule(instance, result.schedule)
        assert result.objective == result.schedule.makespan


def test_best_of_k_is_never_worse_than_greedy(static_run):
    policy = load_policy(static_run["final"])
    instance = instances.random_instance(10, 5, seed=11)
    greedy = solve_with_policy(policy, instance)
    best = solve_with_policy(policy, instance, samples=16, seed=0)
    assert best.objective <= greedy.objective
    assert best.params["samples_run"] == 16


def test_a_budget_cuts_sampling_within_the_tolerance(static_run):
    instance = instances.random_instance(30, 10, seed=2)
    spec = f"policy@{static_run['final']}"
    greedy = deciders.solve(instance, spec)
    budget = 3 * greedy.wall_time_s + 0.1  # room for the greedy plan and some samples, far from 4096 of them
    result = deciders.solve(instance, f"policy:4096@{static_run['final']}", budget_s=budget)
    validate_schedule(instance, result.schedule)
    assert 1 <= result.params["samples_run"] < 4096
    assert result.objective <= greedy.objective
    assert within_budget(result), f"{result.wall_time_s:.3f} s for a {budget:.3f} s budget"


# ---------------------------------------------------------------------- the decider door
def test_policy_specs_through_the_decider_door(static_run):
    instance = instances.random_instance(8, 4, seed=5)
    for spec in (f"policy@{static_run['final']}", f"policy:8@{static_run['final']}"):
        result = deciders.solve(instance, spec, seed=1)
        validate_schedule(instance, result.schedule)
        assert result.method == spec


def test_dynamic_policy_reschedules_a_shop_state_around_done_and_running_work(dynamic_run):
    from sched_env.snapshot import plan_violations

    state = running_shop_state(4, initial_jobs=3, arriving_jobs=5, seed=4, steps=6)
    assert len(state.done) + len(state.running) > 0
    for spec in (f"policy@{dynamic_run['final']}", f"policy:4@{dynamic_run['final']}"):
        result = deciders.solve(state, spec)
        assert plan_violations(state, result.schedule) == []
        assert result.params["objective"] == "total_weighted_tardiness"


def test_dynamic_policy_runs_whole_scenarios_and_a_static_instance(dynamic_run):
    from sched_env.events import generate_scenario

    policy = load_policy(dynamic_run["final"])
    scenarios = [generate_scenario(3, initial_jobs=2, arriving_jobs=4, noise=0.1, seed=s) for s in range(3)]
    results = agent_deciders.dispatch_dynamic_policy(policy, scenarios)
    assert [r.instance_name for r in results] == [s.name for s in scenarios]
    instance = instances.random_instance(6, 3, seed=0)
    validate_schedule(instance, solve_with_policy(policy, instance, samples=2).schedule)


def test_a_static_policy_refuses_a_shop_state_and_says_which_to_use(static_run):
    from sched_env.dynamic import DynamicJobShopEnv
    from sched_env.events import generate_scenario

    env = DynamicJobShopEnv(generate_scenario(3, initial_jobs=2, arriving_jobs=2, seed=0))
    env.reset(seed=0)
    with pytest.raises(instances.SchedEnvError, match="dynamic-shop policy"):
        deciders.solve(env.snapshot(), f"policy@{static_run['final']}")


def test_missing_or_corrupt_model_files_fail_with_one_clear_reason(tmp_path):
    with pytest.raises(deciders.DeciderError, match="does not exist"):
        deciders.make(f"policy@{tmp_path / 'nope.zip'}")
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(deciders.DeciderError, match="not a readable"):
        deciders.make(f"policy@{corrupt}")
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"\x00\x01garbage")
    with pytest.raises(PolicyLoadError, match="not a readable ONNX"):
        load_policy(bad_onnx)
    with pytest.raises(deciders.DeciderError, match="positive integer"):
        deciders.make("policy:0")


# ---------------------------------------------------------------------- ONNX
def test_onnx_export_matches_torch_on_many_states(static_run, dynamic_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from agents.onnx import export_onnx
    from sched_env import BatchJobShopEnv
    from sched_env.dynamic import BatchDynamicJobShopEnv
    from sched_env.events import ScenarioGenerator

    for run, make in (
        (static_run, lambda: BatchJobShopEnv(16, instance=instances.MixedSizeGenerator([(4, 3), (30, 10)]), seed=0)),
        (dynamic_run, lambda: BatchDynamicJobShopEnv(16, ScenarioGenerator(4), seed=0)),
    ):
        path = export_onnx(run["final"], tmp_path / (Path(run["folder"]).name + ".onnx"))
        torch_policy, onnx_policy = load_policy(run["final"]), load_policy(path)
        assert onnx_policy.backend == "onnx" and onnx_policy.kind == torch_policy.kind
        assert onnx_policy.config == torch_policy.config
        batch = make()
        obs, _ = batch.reset(seed=1)
        rng = np.random.default_rng(0)
        for _ in range(60):
            a = torch_policy.score(obs["jobs"], obs["action_mask"])
            b = onnx_policy.score(obs["jobs"], obs["action_mask"])
            allowed = obs["action_mask"] > 0
            np.testing.assert_allclose(a[allowed], b[allowed], rtol=1e-4, atol=1e-4)
            assert (b[~allowed] <= -1e7).all(), "masking must happen inside the ONNX graph"
            obs, *_ = batch.step(rollouts.choose_actions(a, rng))
        one = onnx_policy.score(obs["jobs"][:1], obs["action_mask"][:1])  # batch 1: a dynamic axis
        np.testing.assert_allclose(one, onnx_policy.score(obs["jobs"], obs["action_mask"])[:1], rtol=1e-4, atol=1e-3)


def test_the_wait_action_is_trained_exported_and_decided_end_to_end(tmp_path):
    """allow_wait: the config sets it, training steps an env with the wait action, the export
    carries the wait logit (parity with torch on the env's own masks), and the decider uses it."""
    pytest.importorskip("onnxruntime")
    from agents.onnx import export_onnx
    from sched_env.dynamic import BatchDynamicJobShopEnv
    from sched_env.events import ScenarioGenerator

    cfg = tiny_config(tmp_path, shop="dynamic", algo="maskable-ppo", machines=(3,), initial_jobs=2, arriving_jobs=3,
                      n_envs=4, n_steps=32, batch_size=64, n_epochs=1, timesteps=256, eval_every=128,
                      allow_wait=True)  # fmt: skip
    summary = train(cfg, progress=False)
    torch_policy = load_policy(summary["final"])
    assert torch_policy.waits and torch_policy.env_options["allow_wait"] is True
    onnx_policy = load_policy(export_onnx(summary["final"], tmp_path / "wait.onnx"))
    assert onnx_policy.waits
    batch = BatchDynamicJobShopEnv(8, ScenarioGenerator(3, initial_jobs=2, arriving_jobs=3), seed=0, allow_wait=True)
    obs, _ = batch.reset(seed=3)
    assert obs["action_mask"].shape[1] == obs["jobs"].shape[1] + 1
    waited = 0
    for _ in range(40):
        a = torch_policy.score(obs["jobs"], obs["action_mask"])
        b = onnx_policy.score(obs["jobs"], obs["action_mask"])
        allowed = obs["action_mask"] > 0
        np.testing.assert_allclose(a[allowed], b[allowed], rtol=1e-4, atol=1e-4)
        actions = a.argmax(-1)
        waited += int((actions == obs["jobs"].shape[1]).sum())
        obs, *_ = batch.step(actions)
    decider = deciders.make(f"policy@{tmp_path / 'wait.onnx'}")
    scenario = ScenarioGenerator(3, initial_jobs=2, arriving_jobs=3)(5)
    (result,) = deciders.dispatch_online(decider, [scenario])  # an env without waiting: the wait logit is masked
    assert result.schedule is not None and len(result.schedule) == scenario.jobs.n_operations


def test_allow_wait_in_a_static_config_is_refused():
    with pytest.raises(instances.SchedEnvError, match="dynamic shop only"):
        TrainConfig(shop="static", allow_wait=True)


# ---------------------------------------------------------------------- CLI and shipped models
def test_train_help_lists_every_config_key():
    process = run_cli("train", "--help")
    assert process.returncode == 0
    for key in ("samples", "pool_rule", "eval_items", "checkpoint_every", "n_envs"):
        assert key in process.stdout


def test_train_cli_errors_are_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("shop: static\nsizes: [5x3]\n")
    process = run_cli("train", str(config), "--set", "nonsense=1")
    assert process.returncode == 2 and "unknown config keys ['nonsense']" in process.stderr
    assert "Traceback" not in process.stderr


def test_train_and_export_from_the_cli(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**tiny_config(tmp_path).to_dict(), "timesteps": 600, "eval_every": 300}))
    process = run_cli("train", str(config), "--quiet")
    assert process.returncode == 0, process.stderr
    assert "validation gap" in process.stdout
    final = tmp_path / "tiny" / "final.zip"
    process = run_cli("export-onnx", str(final), "--out", str(tmp_path / "p.onnx"))
    assert process.returncode == 0, process.stderr
    process = run_cli("solve", "ft06", "--method", f"policy:4@{tmp_path / 'p.onnx'}", "--json")
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["makespan"] > 0


def test_shipped_models_are_small_and_load_through_their_backends():
    """The static and flexible policies ship as SB3 zip and ONNX; the dynamic ones (priority networks,
    no torch; the flexible one also picks machines) as ONNX, whose metadata also carries their weights
    for the compiled kernels."""
    kinds = (("static", (".zip", ".onnx")), ("flexible", (".zip", ".onnx")), ("dynamic-flexible", (".onnx",)),
             ("dynamic", (".onnx",)))  # fmt: skip
    for kind, suffixes in kinds:
        for suffix in suffixes:
            path = loading.MODELS / f"{loading.SHIPPED[kind]}{suffix}"
            assert path.is_file(), f"shipped model {path.name} is missing"
            assert path.stat().st_size < 5 * 2**20, f"{path.name} is {path.stat().st_size} bytes"
            policy = load_policy(path)
            assert policy.kind == kind.removesuffix("-flexible") or policy.kind == kind
    assert load_policy(kind="dynamic").network is not None
    assert picks_machines(*load_policy(kind="dynamic-flexible").network)


def test_solve_ta01_with_the_shipped_policy_from_the_command_line():
    process = run_cli("solve", "ta01", "--method", "policy", "--json")
    assert process.returncode == 0, process.stderr
    data = json.loads(process.stdout)
    assert data["method"] == "policy" and data["makespan"] >= 1231
    assert data["params"]["backend"] in ("onnx", "torch")


def test_policy_is_listed_with_the_other_deciders():
    process = run_cli("solve", "--list-methods")
    assert process.returncode == 0
    line = next(line for line in process.stdout.splitlines() if line.startswith("policy"))
    assert "learned policy" in line and "[entry point" not in line


# ---------------------------------------------------------------------- hybrid: policy plans -> CP-SAT
def test_hybrid_is_never_worse_than_a_rule_or_the_greedy_policy_computed_apart():
    """References computed outside the hybrid: MWKR's and the greedy policy's own makespans."""
    pytest.importorskip("ortools")
    for name in ("ft06", "la01"):
        instance = instances.load(name)
        result = deciders.solve(instance, "hybrid:0.5", seed=0)
        validate_schedule(instance, result.schedule)
        assert result.objective == result.schedule.makespan
        mwkr = deciders.solve(instance, "mwkr").objective
        greedy = deciders.solve(instance, "policy").objective
        assert result.objective <= min(mwkr, greedy), (name, result.objective, mwkr, greedy)
        assert within_budget(dataclasses.replace(result, budget_s=0.5)), f"{name}: {result.wall_time_s:.2f} s"


def test_hybrid_with_a_tiny_budget_still_answers_with_a_plan_no_worse_than_mwkr():
    pytest.importorskip("ortools")
    instance = instances.load("ta01")
    result = deciders.solve(instance, "hybrid:10", budget_s=0.05)
    validate_schedule(instance, result.schedule)
    assert result.objective <= deciders.solve(instance, "mwkr").objective
    assert within_budget(result), f"{result.wall_time_s:.3f} s for 0.05 s"


def test_hybrid_reschedules_a_shop_state():
    pytest.importorskip("ortools")
    from sched_env.snapshot import plan_violations

    state = running_shop_state(5, initial_jobs=4, arriving_jobs=6, seed=2, steps=10)
    result = deciders.solve(state, "hybrid:0.5")
    assert plan_violations(state, result.schedule) == []
    assert result.objective <= deciders.solve(state, "atc").objective  # a reference computed apart


def test_a_seed_sweep_runs_on_the_process_pool(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**tiny_config(tmp_path).to_dict(), "name": "", "timesteps": 300, "eval_every": 300}))
    process = run_cli("train", str(config), "--seeds", "0,1", "--parallel", "2", "--algo", "self-labeling")
    assert process.returncode == 0, process.stderr
    assert "mean over 2 seeds" in process.stdout
    for seed in (0, 1):
        assert (tmp_path / f"static-self-labeling-s{seed}" / "final.zip").is_file()
