"""The standard dynamic simulation: setting names, streams, the recorded window, the fast
kernels against the env, state copies, and the learned priority network against its export."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from instances import InvalidScenarioError, SchedEnvError
from sched_env import _kernels as K
from sched_env.dynamic import BatchDynamicJobShopEnv
from sched_env.standard import PURPOSES, STANDARD_SETTINGS, StandardSetting, recorded_metrics, run_streams

SMALL = "missing-0.90-4-bl5-rtf5-w50-r200"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing-0.85-4", {"routing": "missing", "utilisation": 0.85, "allowance": 4.0, "breakdown_level": 0.0}),
        ("full-0.95-1.5", {"routing": "full", "utilisation": 0.95, "allowance": 1.5}),
        ("missing-0.90-4-bl2.5-rtf10", {"breakdown_level": 0.025, "repair_factor": 10.0}),
        ("missing-0.80-3", {"utilisation": 0.80, "allowance": 3.0, "machines": 10, "warmup": 1000, "recorded": 5000}),
        ("FULL-0.9-2-m20-p49-w500-r40000", {"machines": 20, "max_duration": 49, "warmup": 500, "recorded": 40000}),
        ("full-0.90-1.5-m15-w0-r20-i5-n0.1-fin", {"initial": 5, "noise": 0.1, "finite": True, "recorded": 20}),
    ],
)
def test_setting_names_parse_and_print_back(name, expected):
    setting = StandardSetting.parse(name)
    for key, value in expected.items():
        assert getattr(setting, key) == value
    assert StandardSetting.parse(setting.name) == setting


def test_the_eight_standard_settings_have_canonical_names():
    assert [StandardSetting.parse(s).name for s in STANDARD_SETTINGS] == list(STANDARD_SETTINGS)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("missing-0.85", "grammar is"),
        ("partial-0.85-4", "grammar is"),
        ("missing-1.2-4", "utilisation must be in (0, 1)"),
        ("missing-0.85-4-bl60-rtf5", "breakdowns need a level"),
        ("missing-0.85-0-m1", "allowance factor must be > 0"),
        ("missing-0.85-4-w0-r20-n1.5", "noise in [0, 1)"),
        ("missing-0.85-4-w0-r20-i30", "initial jobs in 0..warm-up + recorded"),
    ],
)
def test_bad_setting_names_say_what_is_wrong(name, fragment):
    with pytest.raises(InvalidScenarioError, match=re.escape(fragment)):
        StandardSetting.parse(name)


def test_streams_follow_the_setting():
    setting = StandardSetting.parse("missing-0.85-4-w100-r2000")
    scenario = setting.scenario(3)
    jobs = scenario.jobs
    assert jobs.n_jobs == setting.warmup + setting.recorded + setting.tail
    assert jobs.n_ops.min() >= 2 and jobs.n_ops.max() <= 10
    for j in range(50):  # random routes, no machine twice
        route = jobs.machines[j, : jobs.n_ops[j]]
        assert len(set(route.tolist())) == len(route)
    assert jobs.durations[jobs.machines >= 0].min() >= 1 and jobs.durations.max() <= 99
    assert np.all(np.diff(jobs.release_dates) >= 0)  # numbered in arrival order
    np.testing.assert_array_equal(jobs.due_dates, jobs.release_dates + np.round(4 * jobs.job_work()))
    gap = np.diff(jobs.release_dates).mean()
    assert gap == pytest.approx(setting.mean_interarrival, rel=0.1)  # 6 x 50 / (0.85 x 10) = 35.3
    assert set(np.unique(jobs.weights).tolist()) == {1, 2, 4}
    assert setting.scenario(3) == scenario  # seeded
    assert setting.scenario(3, "train") != scenario and set(PURPOSES) == {"train", "validation", "test"}


def test_a_stream_may_start_with_jobs_waiting_and_run_noisy_durations_and_others_stay_as_they_were():
    plain = StandardSetting.parse("full-0.90-1.5-m15-w0-r20-fin").scenario(3, "validation")
    shift = StandardSetting.parse("full-0.90-1.5-m15-w0-r20-i5-n0.1-fin").scenario(3, "validation")
    arrivals, before = shift.jobs.release_dates, plain.jobs.release_dates
    assert (arrivals[:5] == 0).all() and arrivals[5] > 0
    np.testing.assert_array_equal(arrivals[5:], before[5:] - before[4])  # the same gaps, counted from 0
    np.testing.assert_array_equal(shift.jobs.durations, plain.jobs.durations)  # planned as before
    assert plain.realized_durations is None or np.array_equal(plain.realized_durations, plain.jobs.durations)
    real, planned = shift.realized_durations, shift.jobs.durations
    ran = planned > 0
    assert (np.abs(real[ran] - planned[ran]) <= np.ceil(0.1 * planned[ran]) + 1).all() and (real[ran] >= 1).all()
    assert (real[ran] != planned[ran]).mean() > 0.3
    np.testing.assert_array_equal(shift.jobs.due_dates, arrivals + np.round(1.5 * shift.jobs.job_work()))
    runs = run_streams([shift], rules=[K.RULE.atc])  # the kernel runs the real durations
    start, end, _ = runs[0]
    np.testing.assert_array_equal((end - start)[ran], real[ran])


def test_breakdowns_take_the_stated_share_of_time():
    setting = StandardSetting.parse("missing-0.90-4-bl5-rtf5-w0-r20000")
    scenario = setting.scenario(0)
    down = scenario.downtimes
    horizon = scenario.jobs.release_dates[-1]
    share = (np.minimum(down[:, 2], horizon) - np.minimum(down[:, 1], horizon)).sum() / (10 * horizon)
    assert share == pytest.approx(0.05, rel=0.2)
    assert (down[:, 2] - down[:, 1]).mean() == pytest.approx(5 * 50, rel=0.2)  # MTTR = RTF x mean p


def test_recorded_window_counts_only_the_recorded_jobs():
    setting = StandardSetting.parse("full-0.85-4-w30-r100")
    scenario = setting.scenario(1)
    start, end, queued = run_streams([scenario], rules=[K.RULE.fifo])[0]
    metrics = recorded_metrics(setting, scenario, start, end)
    jobs = scenario.jobs
    completion = end[np.arange(jobs.n_jobs), jobs.n_ops - 1]
    window = slice(30, 130)
    assert metrics["flow_mean"] == pytest.approx((completion - jobs.release_dates)[window].mean())
    tardiness = np.maximum(0, completion - jobs.due_dates)[window]
    assert metrics["weighted_tardiness_mean"] == pytest.approx((jobs.weights[window] * tardiness).mean())
    assert metrics["flow_max"] == (completion - jobs.release_dates)[window].max()
    assert 0.5 < metrics["utilisation"] < 1 and queued == 0


def test_fast_stream_runs_equal_the_env_decision_by_decision():
    """run_streams (no features, active-slot loops) and DynamicJobShopEnv with the rule's choices
    build the same schedule, also with a window that makes jobs queue for a slot."""
    setting = StandardSetting.parse(SMALL)
    scenario = setting.scenario(2)
    for window in (12, 64):
        start, end, queued = run_streams([scenario], rules=[K.RULE.atc], window=window)[0]
        batch = BatchDynamicJobShopEnv(1, scenario, max_jobs=window)
        batch.reset()
        done = np.zeros(1, dtype=bool)
        while not done[0]:
            _, _, done, _, info = batch.step(batch.rule_choices(K.RULE.atc))
        np.testing.assert_array_equal(batch.final_schedule(0).start_matrix(scenario.jobs), start)
        assert int(info["final_info"]["max_queued"][0]) == queued
        assert (queued > 0) == (window == 12)


def test_copied_shops_go_on_exactly_like_their_source():
    setting = StandardSetting.parse(SMALL)
    scenarios = [setting.scenario(s) for s in range(3)]
    batch = BatchDynamicJobShopEnv(3, scenarios, max_jobs=40)
    obs, _ = batch.reset(options={"scenarios": scenarios})
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, *_ = batch.step([rng.choice(np.flatnonzero(m)) for m in obs["action_mask"]])
    batch.copy_shops(0, [1, 2])
    assert batch.scenario(1) is batch.scenario(0)
    obs = batch._observation()
    for _ in range(300):  # the same actions: the copies stay identical to the source
        action = rng.choice(np.flatnonzero(obs["action_mask"][0]))
        obs, *_ = batch.step([action, action, action])
        np.testing.assert_array_equal(batch._states[1], batch._states[0])
        np.testing.assert_array_equal(obs["jobs"][2], obs["jobs"][0])
    before = batch._states[0].copy()
    obs, *_ = batch.step([np.flatnonzero(m)[-1] for m in obs["action_mask"]])
    np.testing.assert_array_equal(batch._states[1], batch._states[0])
    assert not np.array_equal(before, batch._states[0])
    with pytest.raises(ValueError, match="shops are 0..2"):
        batch.copy_shops(0, [3])


@pytest.mark.parametrize("context", [False, True])
def test_priority_network_kernel_chooses_what_its_onnx_export_chooses(tmp_path, context):
    """The kernel, the ONNX graph and the numpy twin score alike, with and without the context gates."""
    from agents import evolve
    from agents.loading import load_policy

    hidden = 3
    theta = evolve.initial_parameters(hidden, np.random.default_rng(4), context=context)
    base = evolve.n_parameters(hidden)
    theta[skip_offset(hidden) : base] += np.random.default_rng(5).normal(0, 0.3, size=K.N_DYNAMIC_FEATURES + 1)
    theta[K.N_DYNAMIC_FEATURES * hidden + hidden : K.N_DYNAMIC_FEATURES * hidden + 2 * hidden] = [0.5, -0.4, 0.3]
    if context:
        theta[base:] = np.random.default_rng(6).normal(0, 0.3, size=len(theta) - base)
        assert evolve.has_gates(theta, hidden)
    policy = load_policy(evolve.export_onnx(theta, hidden, tmp_path / "p.onnx", {"config": {}, "env_options": {}}))
    assert policy.network is not None and policy.network[0] == hidden
    scenario = StandardSetting.parse(SMALL).scenario(4)
    batch = BatchDynamicJobShopEnv(1, scenario, max_jobs=24)
    obs, _ = batch.reset()
    L = batch._rows
    dims = (L.J, L.M, L.O, L.D, L.S)
    scratch = np.zeros((L.J, K.N_DYNAMIC_FEATURES))
    agree = decisions = 0
    done = np.zeros(1, dtype=bool)
    while not done[0]:
        kernel = K.dynamic_choose_scored(
            batch._insts[0], batch._states[0], batch._masks[0], theta, hidden, scratch, *dims
        )
        logits = policy.score(obs["jobs"], obs["action_mask"].astype(np.float32))[0]
        twin = evolve.score(theta, hidden, obs["jobs"][0].astype(np.float64))
        np.testing.assert_allclose(
            logits[obs["action_mask"][0] > 0], twin[obs["action_mask"][0] > 0], rtol=1e-4, atol=1e-4
        )
        top = np.sort(logits)[-2:] if obs["action_mask"][0].sum() > 1 else None
        decisions += 1
        agree += int(np.argmax(logits) == kernel or (top is not None and top[1] - top[0] < 1e-4))
        obs, _, done, _, _ = batch.step([kernel])
    assert decisions > 500 and agree == decisions


def skip_offset(hidden: int) -> int:
    return K.N_DYNAMIC_FEATURES * hidden + 2 * hidden


def test_a_network_that_picks_machines_chooses_in_the_kernel_what_its_onnx_export_chooses(tmp_path):
    """A flexible-mix network scores (job, machine) pairs: the kernel's pick, the ONNX pair graph's
    argmax and the numpy twin agree on a flexible standard stream, and the decider door runs it
    in the kernels."""
    from agents import evolve
    from agents.loading import load_policy
    from baselines import deciders
    from sched_env import compiled

    theta = evolve.initial_parameters(0, np.random.default_rng(4), machines=True)
    rng = np.random.default_rng(7)
    theta[: K.N_DYNAMIC_FEATURES] += rng.normal(0, 0.3, K.N_DYNAMIC_FEATURES)
    theta[evolve.n_parameters(0) :] = rng.normal(0, 0.3, len(theta) - evolve.n_parameters(0))
    theta[-K.N_PAIR_FEATURES :] = [0.5, -0.2, 0.1]  # longer durations first: not the machine rule's (eet) choice
    assert compiled.picks_machines(0, theta) and evolve.has_gates(theta, 0)
    policy = load_policy(evolve.export_onnx(theta, 0, tmp_path / "f.onnx", {"config": {}, "env_options": {}}))
    assert policy.pairs and policy.network is not None
    scenario = StandardSetting.parse("missing-0.95-4-a3-s0.2-w20-r60").scenario(3)
    batch = BatchDynamicJobShopEnv(1, scenario, max_jobs=24)
    obs, _ = batch.reset()
    L = batch._rows
    dims, M = (L.J, L.M, L.O, L.D, L.S), batch.layout.M
    scratch = np.zeros((L.J, K.N_DYNAMIC_FEATURES))
    other_machine = decisions = 0
    done = np.zeros(1, dtype=bool)
    while not done[0]:
        mask = obs["action_mask"].astype(np.float32)
        logits = policy.score(obs["jobs"], mask, obs["pairs"])[0]
        twin = evolve.pair_scores(theta, 0, obs["jobs"][0].astype(np.float64), obs["pairs"][0].astype(np.float64))
        allowed = mask[0, : L.J * M] > 0
        np.testing.assert_allclose(logits[: L.J * M][allowed], twin.reshape(-1)[allowed], rtol=1e-4, atol=1e-4)
        planned = batch._states[0][L.state_offsets.job_machine : L.state_offsets.job_machine + L.J].copy()
        job = K.dynamic_choose_scored(batch._insts[0], batch._states[0], batch._job_masks[0], theta, 0, scratch, *dims)
        machine = batch._states[0][L.state_offsets.job_machine + job]
        top = np.sort(logits)[-2:]
        assert job * M + machine == np.argmax(logits) or top[1] - top[0] < 1e-4
        other_machine += int(machine != planned[job])
        decisions += 1
        obs, _, done, _, _ = batch.step([job * M + machine])
    assert decisions > 100 and other_machine > 0  # it chose machines the machine rule would not have
    result = deciders.make(f"policy@{tmp_path / 'f.onnx'}").dispatch_scenarios([scenario])[0]
    assert result.status == "feasible"


def _onnx_scores_as_the_kernels_network(policy, seed: int) -> None:
    """The model's ONNX graph, on today's observation, scores the allowed jobs as its network in
    the kernels' layout (``agents.evolve.score``) does, for 200 decisions."""
    from agents import evolve

    hidden, theta = policy.network
    batch = BatchDynamicJobShopEnv(1, StandardSetting.parse(SMALL).scenario(seed), max_jobs=24)
    obs, _ = batch.reset()
    for _ in range(200):
        mask = obs["action_mask"].astype(np.float32)
        logits = policy.score(obs["jobs"], mask)[0]
        twin = evolve.score(theta, hidden, obs["jobs"][0].astype(np.float64))
        np.testing.assert_allclose(logits[mask[0] > 0], twin[mask[0] > 0], rtol=1e-4, atol=1e-4)
        obs, *_ = batch.step([int(np.argmax(logits))])


def test_a_model_from_before_the_context_columns_scores_alike_in_the_kernels_and_onnx():
    """The dispatcher shipped before the context columns (kept in the results) was trained on the 21
    per-job columns: it reads those of today's observation, and its network, padded with zero
    weights on the context, chooses alike."""
    from agents import evolve
    from agents.loading import current_network, load_policy

    policy = load_policy(Path(__file__).resolve().parents[1] / "experiments/results/evolve/seed2.onnx")
    assert policy.n_features == K.N_DYNAMIC_JOB_FEATURES < K.N_DYNAMIC_FEATURES
    hidden, theta = policy.network
    assert len(theta) == evolve.n_parameters(hidden) and not evolve.has_gates(theta, hidden)
    assert (evolve.unpack(theta, hidden)["skip"][K.N_DYNAMIC_JOB_FEATURES :] == 0).all()
    _onnx_scores_as_the_kernels_network(policy, seed=2)
    with pytest.raises(Exception, match="parameters"):
        current_network(0, np.zeros(5), K.N_DYNAMIC_JOB_FEATURES)
    start = evolve.initial_parameters(0, np.random.default_rng(0), str(policy.path), context=True)
    np.testing.assert_array_equal(start[: len(theta)], theta)  # a run can start from it: gates 0
    assert not start[len(theta) :].any()


@pytest.mark.parametrize(
    "model, newer",
    [("experiments/results/evolve_broad/seed1.onnx", ("shop_early", "shop_draining")),
     ("experiments/results/evolve_early/seed2.onnx", ("shop_draining",))],
)  # fmt: skip
def test_a_model_from_before_the_newer_context_columns_scores_alike_in_the_kernels_and_onnx(model, newer):
    """The broad dispatcher (kept in the results) was trained on 27 columns, before ``shop_early``, and
    the early one on 28, before ``shop_draining``: each reads the columns that lead today's, and its
    network gets zero gates on the newer ones."""
    from agents import evolve
    from agents.loading import OLDER_DYNAMIC_FEATURES, current_network, load_policy

    policy = load_policy(Path(__file__).resolve().parents[1] / model)
    assert policy.n_features in OLDER_DYNAMIC_FEATURES and policy.n_features == K.N_DYNAMIC_FEATURES - len(newer)
    hidden, theta = policy.network
    gates = evolve.unpack(theta, hidden)["gates"]
    assert gates.shape == (K.N_DYNAMIC_JOB_FEATURES, K.N_DYNAMIC_CONTEXT) and gates[:, : -len(newer)].any()
    assert not gates[:, [getattr(K.DF, name) - K.N_DYNAMIC_JOB_FEATURES for name in newer]].any()
    _onnx_scores_as_the_kernels_network(policy, seed=3)
    with pytest.raises(Exception, match="parameters"):
        current_network(0, np.zeros(5), policy.n_features)


def test_context_gates_get_search_scales_only_where_they_can_change_a_choice():
    from agents.evolve import FJ, EvolutionConfig, F, n_parameters, parameter_scales

    scales = parameter_scales(0, 0, EvolutionConfig(context=True))
    skip, gates = scales[:F], scales[n_parameters(0) :].reshape(FJ, -1)
    assert (skip[FJ:] == 0).all()  # a context column alone moves every job's score alike
    assert (gates[K.DF.allowed] == 0).all() and (gates[K.DF.wspt_priority] > 0).all()
    assert (gates[skip[:FJ] == 0] == 0).all()
    assert len(parameter_scales(0, 0, EvolutionConfig(context=False))) == n_parameters(0)


def test_evolve_context_is_an_on_off_option():
    import argparse

    from agents.config import EvolutionConfig, add_config_options, config_options

    parser = argparse.ArgumentParser()
    add_config_options(parser, EvolutionConfig)
    assert config_options(parser.parse_args(["--no-context"]), EvolutionConfig) == {"context": False}
    assert config_options(parser.parse_args(["--context"]), EvolutionConfig) == {"context": True}
    assert config_options(parser.parse_args([]), EvolutionConfig) == {}


def test_a_short_evolution_run_trains_checkpoints_resumes_and_exports(tmp_path):
    from agents.evolve import EvolutionConfig, train
    from agents.loading import load_policy

    config = EvolutionConfig(pairs=2, streams=2, generations=2, validate_every=1, train_warmup=20, train_recorded=80,
                             validation_seeds=1, validation_length=(20, 80), minutes=5)  # fmt: skip
    path = train(config, tmp_path, say=lambda line: None)
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    assert rows[0] == "generation,minutes,train_log_ratio,validation_ratio" and rows[1].startswith("0,")
    policy = load_policy(path)
    assert policy.kind == "dynamic" and policy.network is not None
    config.generations = 3
    train(config, tmp_path, resume=True, say=lambda line: None)
    assert (tmp_path / "progress.csv").read_text().splitlines()[-1].startswith("3,")


def test_a_short_flexible_mix_run_trains_a_network_that_picks_machines(tmp_path):
    from agents.evolve import FLEXIBLE_VALIDATION, EvolutionConfig, train
    from agents.loading import load_policy
    from sched_env import compiled
    from sched_env.standard import FLEXIBLE_SETTINGS

    assert not set(FLEXIBLE_VALIDATION) & set(FLEXIBLE_SETTINGS)  # validation never reads the test settings
    config = EvolutionConfig(mix="flexible", pairs=2, streams=2, generations=1, validate_every=1, train_warmup=10,
                             train_recorded=40, validation_seeds=1, validation_length=(10, 40), minutes=5)  # fmt: skip
    policy = load_policy(train(config, tmp_path, say=lambda line: None))
    assert policy.pairs and compiled.picks_machines(*policy.network)
    config.generations = 2
    train(config, tmp_path, resume=True, say=lambda line: None)
    assert (tmp_path / "progress.csv").read_text().splitlines()[-1].startswith("2,")


def test_evolution_rollouts_on_ray_equal_the_local_ones():
    pytest.importorskip("ray")
    from agents.evolve import Evaluator, initial_parameters, stream_tardiness
    from sched_env.parallel import TaskPool

    rng = np.random.default_rng(0)
    networks = initial_parameters(0, rng)[None, :] + rng.normal(0, 0.2, size=(3, K.N_DYNAMIC_FEATURES + 1))
    specs = [("missing-0.90-3-w20-r100", 1, "train"), ("full-0.85-2-bl5-rtf5-w20-r100", 2, "train")]
    here = stream_tardiness(networks, 0, specs)
    with TaskPool(parallel=2, ray_address="local") as pool:
        there = Evaluator(pool, chunks=2)(networks, 0, specs)
    np.testing.assert_array_equal(here, there)
    assert here.shape == (3, 2) and (here > 0).all()


def test_standard_bench_command_writes_the_tables(tmp_path):
    """``sched-env bench --dynamic standard`` end to end on a small setting: rules and the shipped
    policy through the decider door, the best rule picked on validation seeds and reported."""
    import subprocess
    import sys

    process = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "bench", "--dynamic", "standard", "--settings",
         "missing-0.90-3-w30-r150,full-0.85-2-bl5-rtf5-w30-r150", "--seeds", "3", "--validation-seeds", "2",
         "--methods", "atc,pt+winq,policy", "--out", str(tmp_path), "--quiet", "--parallel", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    import csv

    rows = list(csv.DictReader((tmp_path / "standard.csv").open()))
    test = [r for r in rows if r["purpose"] == "test"]
    assert {r["method"] for r in test} >= {"atc", "pt+winq", "policy"}
    assert len([r for r in rows if r["purpose"] == "validation"]) == 2 * 2 * 11  # the portfolio on 2 seeds each
    report = (tmp_path / "standard.md").read_text()
    assert "## missing-0.90-3-w30-r150 (best rule on validation:" in report and "geometric mean" in report
    assert "ratio to best rule [95 % CI]" in report
    assert (tmp_path / "standard.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, "-m", "experiments.cli", "bench", "--dynamic", "standard", "--settings",
                          "missing-0.9"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 and "not a standard setting name" in bad.stderr and "Traceback" not in bad.stderr


def test_the_wide_mix_draws_finite_episodes_and_every_kind_of_shop_and_a_short_run_resumes(tmp_path):
    from agents.evolve import WIDE_VALIDATION, EvolutionConfig, train, wide_setting

    rng = np.random.default_rng(0)
    drawn = [wide_setting(rng, 300, 1500) for _ in range(300)]
    assert {s.routing for s in drawn} == {"missing", "full"} and min(s.machines for s in drawn) == 3
    assert max(s.machines for s in drawn) == 30 and 0.25 < np.mean([s.finite for s in drawn]) < 0.35
    assert min(s.allowance for s in drawn) < 1.4 and max(s.allowance for s in drawn) > 6
    assert any(s.repair_factor < 1 for s in drawn) and any(s.repair_factor > 10 for s in drawn)
    finite = next(s for s in drawn if s.finite)
    assert finite.tail == 0 and finite.scenario(1, "train").jobs.n_jobs == finite.recorded
    assert StandardSetting.parse(finite.name) == finite and not set(WIDE_VALIDATION) & set(STANDARD_SETTINGS)
    config = EvolutionConfig(mix="wide", pairs=1, streams=2, generations=1, validate_every=1, train_warmup=20,
                             train_recorded=60, validation_seeds=1, validation_length=(10, 40), minutes=5)  # fmt: skip
    train(config, tmp_path, say=lambda line: None)
    config.generations = 2
    train(config, tmp_path, resume=True, say=lambda line: None)
    assert (tmp_path / "progress.csv").read_text().splitlines()[-1].startswith("2,")


def test_the_broad_mix_adds_shift_episodes_and_loaded_shops_and_a_run_against_the_best_rule_resumes(tmp_path):
    from agents.evolve import BROAD_VALIDATION, WIDE_VALIDATION, EvolutionConfig, broad_setting, train

    rng = np.random.default_rng(0)
    drawn = [broad_setting(rng, 300, 1500) for _ in range(400)]
    shifts = [s for s in drawn if s.initial or s.noise]
    assert 0.15 < len(shifts) / len(drawn) < 0.3 and all(s.finite and 20 <= s.recorded <= 60 for s in shifts)
    assert max(s.initial for s in drawn) == 10 and max(s.noise for s in drawn) > 0.15
    loaded = [s for s in drawn if not s.finite and s.utilisation >= 0.88 and s.breakdown_level]
    assert len(loaded) > 0.2 * len(drawn)  # the wide mix's quarter-loaded share and the loaded quarter
    assert BROAD_VALIDATION[:16] == WIDE_VALIDATION and len(set(BROAD_VALIDATION)) == 32
    assert not set(BROAD_VALIDATION) & set(STANDARD_SETTINGS)
    assert all(StandardSetting.parse(name).name == name for name in BROAD_VALIDATION)
    config = EvolutionConfig(mix="broad", reference="best", loss_penalty=2.0, pairs=1, streams=3, generations=1,
                             validate_every=1, train_warmup=20, train_recorded=60, validation_seeds=1,
                             validation_length=(10, 40), minutes=5)  # fmt: skip
    lines = []
    train(config, tmp_path, say=lines.append)
    config.generations = 2
    train(config, tmp_path, resume=True, say=lines.append)
    assert (tmp_path / "progress.csv").read_text().splitlines()[-1].startswith("2,")
    assert "x best" in lines[-1]
    from experiments import evolve_report

    command = "sched-env evolve --mix broad --reference best --loss-penalty 2"
    evolve_report.main([str(tmp_path), "--command", command, "--out", str(tmp_path / "report"), "--name", "broad"])
    record = (tmp_path / "report" / "training_broad.md").read_text()
    assert "ratio to the best of ATC and WSPT" in record and "BROAD_VALIDATION" in record
    assert "worse counts 3 times" in record and (tmp_path / "report" / "broad" / "seed0.onnx").is_file()
    with pytest.raises(SchedEnvError, match="reference must be 'atc' or 'best'"):
        EvolutionConfig(reference="wspt").check()


@pytest.mark.parametrize(
    "mix, searched",
    [("episodes", ("shop_early",)), ("flexible-episodes", ("shop_early",)), ("episodes", ("shop_draining",))],
)
def test_an_early_or_drain_only_run_on_short_episodes_moves_only_those_gates(tmp_path, mix, searched):
    from agents import evolve
    from agents.evolve import FJ, EvolutionConfig, RunState, initial_parameters, n_parameters, train
    from sched_env.standard import FLEXIBLE_SETTINGS

    names = evolve.EPISODE_VALIDATION if mix == "episodes" else evolve.FLEXIBLE_EPISODE_VALIDATION
    settings = [StandardSetting.parse(name) for name in names]
    assert len(set(names)) == 16 and all(s.finite and 20 <= s.recorded <= 60 for s in settings)
    assert all((s.alternatives > 1) == (mix != "episodes") for s in settings)
    assert not set(names) & set(STANDARD_SETTINGS + FLEXIBLE_SETTINGS)
    start = (
        "shipped"
        if mix == "episodes"
        else str(Path(__file__).resolve().parents[1] / "agents/models/dynamic_flexible.onnx")
    )
    only = {"early_only": "shop_early" in searched, "drain_only": "shop_draining" in searched}
    config = EvolutionConfig(mix=mix, **only, start=start, reference="best", loss_penalty=2.0, pairs=2, streams=3,
                             generations=2, validate_every=1, validation_seeds=1, minutes=5)  # fmt: skip
    train(config, tmp_path, say=lambda line: None)
    state, _ = RunState.load(tmp_path / "checkpoint.npz")
    begun = initial_parameters(0, np.random.default_rng(0), start, context=True, machines=config.picks_machines)
    assert len(state.theta) == n_parameters(0, True, machines=mix != "episodes")
    moved = np.flatnonzero(state.theta != begun)
    gates = n_parameters(0)
    columns = {getattr(K.DF, name) - FJ for name in searched}
    assert len(moved) and all(gates <= i and (i - gates) % K.N_DYNAMIC_CONTEXT in columns for i in moved)
    with pytest.raises(SchedEnvError, match="early_only and drain_only search the gates"):
        EvolutionConfig(**only).check()


def test_a_loss_against_the_best_rule_counts_more_than_a_gain_in_the_fitness_and_the_validation():
    from agents.evolve import penalised, validation_score

    np.testing.assert_allclose(penalised(np.array([-0.2, 0.0, 0.1]), 2.0), [-0.2, 0.0, 0.3])
    specs = [("missing-0.90-4-w0-r20-fin", 0, "validation"), ("missing-0.90-4-w0-r20-fin", 1, "validation"),
             ("full-0.85-3-w10-r40", 0, "validation")]  # fmt: skip
    reference = np.array([[10.0, 30.0, 5.0], [14.0, 14.0, 1.0]])  # ATC, WSPT per stream: the best rule per setting
    network = np.array([[18.0, 22.0, 2.0]])  # the same mean as ATC on the episode, worse than WSPT; 2 vs 1 on the other

    def evaluate(theta, hidden, streams):
        return network

    floor = [0.01 * 6 * 50, 0.01 * 10 * 50]  # 1 % of a job's mean work (mean operations x mean duration)
    first = (20 + floor[0]) / (14 + floor[0])
    second = (2 + floor[1]) / (1 + floor[1])
    plain = validation_score(evaluate, np.zeros(3), 0, specs, reference)
    assert plain == pytest.approx(np.sqrt(first * second))
    assert validation_score(evaluate, np.zeros(3), 0, specs, reference, 1.0) == pytest.approx(first * second)


def test_flexible_settings_cross_the_portfolio_with_the_machine_rules_and_keep_the_classic_streams():
    from experiments.bench_dynamic import FLEXIBLE_MACHINE_RULES
    from experiments.bench_standard import PORTFOLIO, best_rules, portfolio, run_table

    flexible = StandardSetting.parse("missing-0.95-3-a3-s0.2-w30-r150")
    assert flexible.name == "missing-0.95-3-a3-s0.2-w30-r150" and (flexible.alternatives, flexible.speed_spread) == (
        3,
        0.2,
    )
    scenario = flexible.scenario(0, "validation")
    classic = StandardSetting.parse("missing-0.95-3-w30-r150").scenario(0, "validation")
    assert scenario.is_flexible and np.array_equal(scenario.jobs.release_dates, classic.jobs.release_dates)
    options = (scenario.realized_durations > 0).sum(axis=2)[scenario.jobs.machines >= 0]
    assert options.min() == 1 and options.max() == 3
    assert portfolio(flexible.name) == tuple(f"{r}+{m}" for r in PORTFOLIO for m in FLEXIBLE_MACHINE_RULES)
    assert portfolio("missing-0.95-3") == PORTFOLIO
    with pytest.raises(InvalidScenarioError, match="alternatives in 1..machines"):
        StandardSetting.parse("missing-0.95-3-m4-a5")
    rows = run_table([flexible.scaled(20, 60).name], ["policy"], seeds=1, validation_seeds=1, parallel=1)
    flexible = flexible.scaled(20, 60)
    assert best_rules(rows)[flexible.name] in portfolio(flexible.name)
    assert {r["method"] for r in rows if r["purpose"] == "test"} >= {"policy"}


def test_the_sb3_recipe_trains_a_priority_net_from_the_evolved_dispatcher_and_exports_it_for_the_kernels(tmp_path):
    """MaskablePPO through DynamicJobShop-v0's batched env on standard streams: the priority net starts
    as the shipped evolved dispatcher, scores as agents.evolve does, trains, and exports as a priority
    network that the kernels run through the decider door."""
    pytest.importorskip("sb3_contrib")
    import torch

    from agents import evolve
    from agents.config import TrainConfig
    from agents.loading import load_policy
    from agents.onnx import export_onnx
    from agents.train import train
    from experiments.bench_standard import run_cell

    cfg = TrainConfig(shop="dynamic", algo="maskable-ppo", streams="standard", net="priority", init_from="dynamic",
                      stream_jobs=(20, 60), n_envs=2, n_steps=64, batch_size=64, n_epochs=1, timesteps=256,
                      eval_items=1, eval_every=128, checkpoint_every=256, out=str(tmp_path), threads=1, seed=3)  # fmt: skip
    cfg.check()
    result = train(cfg, progress=False)
    assert result["steps"] >= 256 and (tmp_path / cfg.run_name / "eval.jsonl").exists()
    from sb3_contrib import MaskablePPO

    net = MaskablePPO.load(result["final"]).policy.net
    obs, _ = BatchDynamicJobShopEnv(1, [StandardSetting.parse("missing-0.90-3-w10-r30").scenario(0)]).reset()
    with torch.no_grad():
        logits, _ = net(torch.as_tensor(obs["jobs"]), torch.as_tensor(obs["action_mask"], dtype=torch.float32))
    allowed = obs["action_mask"][0] > 0
    twin = evolve.score(np.array(net.theta()), 0, obs["jobs"][0].astype(np.float64))
    np.testing.assert_allclose(logits[0].numpy()[allowed], twin[allowed], rtol=1e-4, atol=1e-4)
    policy = load_policy(export_onnx(result["final"], tmp_path / "ppo.onnx"))
    assert policy.network is not None and policy.network[0] == 0
    np.testing.assert_allclose(policy.network[1], net.theta(), rtol=1e-6)
    rows = run_cell("missing-0.90-3-w20-r60", f"policy@{tmp_path / 'ppo.onnx'}", [0], "test", 320)
    assert rows[0]["weighted_tardiness_mean"] >= 0
