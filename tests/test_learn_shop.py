"""Learn your own shop: a shop's event log read back (``service.history``), fitted into a stream
generator (``sched-env fit-shop``), replayed under other dispatchers (``sched-env replay``, whose
``recorded`` row must reproduce the history exactly), trained on (``sched-env evolve --shop``) and
benchmarked (``bench --dynamic standard --settings shop:SPEC``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from instances import InvalidScenarioError
from sched_env.events import Scenario
from sched_env.shop_spec import ShopSpec, Template, draw, quantiles_of

pytest.importorskip("pydantic")
REPO = Path(__file__).resolve().parents[1]


def small_truth(**changes) -> ShopSpec:
    """Three machines, two products, frequent breakdowns on two machines (many events per test)."""
    spec = dict(
        equipment=("cut", "weld", "paint"), mean_interarrival=25.0,
        templates=(Template((((0, 10),), ((1, 15),), ((2, 8),)), 2.0), Template((((1, 12),), ((0, 6),)), 1.0)),
        noise=((0.9, 1.3), (0.8, 1.2), (1.0, 1.0)), mtbf=(150.0, 300.0, 0.0), mttr=(10.0, 25.0, 0.0),
        allowance=(1.5, 4.0), priorities={1: 0.5, 2: 0.3, 4: 0.2}, label="small", warmup=20, recorded=100,
    )  # fmt: skip
    return ShopSpec(**{**spec, **changes})


def logged_history(tmp_path: Path, spec: ShopSpec, jobs: int, practice: str = "fifo", seed: int = 3,
                   interruption: str = "resume"):  # fmt: skip
    """A run of ``spec`` dispatched by ``practice``, written to a service database as an MES would
    have sent it (through the store the service itself writes). Returns (db, scenario, schedule)."""
    from baselines import deciders
    from experiments.learn_shop import history_events
    from service.store import EventStore, digest

    scenario = spec.scaled(0, jobs).scenario(seed, "train")
    if interruption != scenario.interruption:
        scenario = Scenario(scenario.jobs, realized_durations=scenario.realized_durations, downtimes=scenario.downtimes,
                            interruption=interruption, name=scenario.name)  # fmt: skip
    schedule = deciders.dispatch_online(deciders.make(practice), [scenario], window=scenario.jobs.n_jobs)[0].schedule
    events = history_events(spec, scenario, schedule)
    db = tmp_path / "shop.sqlite3"
    store = EventStore(db)
    config = {"name": "line-1", "equipment": [{"id": e} for e in spec.equipment], "method": practice, "time": 0,
              "interruption": interruption}  # fmt: skip
    store.create_shop("shop-1", 0.0, json.dumps(config))
    rows = [(e["event_id"], digest(json.dumps(e)), json.dumps(e)) for e in events]
    store.append("shop-1", 0, rows)
    store.close()
    return db, scenario, schedule


def test_a_spec_draws_streams_of_its_shop_and_refuses_nonsense():
    spec = small_truth()
    scenario = spec.scenario(0, "train")
    jobs = scenario.jobs
    assert jobs.n_jobs == spec.n_jobs and not jobs.is_flexible
    gaps = np.diff(jobs.release_dates)
    assert abs(gaps.mean() / spec.mean_interarrival - 1) < 0.15
    planned, real = jobs.durations[jobs.machines == 0], scenario.realized_durations[jobs.machines == 0]
    assert (np.floor(0.9 * planned) <= real).all() and (real <= np.ceil(1.3 * planned)).all()  # noise U(0.9, 1.3)
    assert set(np.unique(scenario.downtimes[:, 0])) == {0, 1}  # paint never breaks down
    assert spec.scenario(0, "train") == scenario and spec.scenario(0, "test") != scenario
    assert ShopSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(InvalidScenarioError, match="mtbf and mttr are both > 0"):
        small_truth(mttr=(10.0, 0.0, 0.0))
    with pytest.raises(InvalidScenarioError, match="machine 0..2"):
        small_truth(templates=(Template((((5, 10),),)),))
    with pytest.raises(InvalidScenarioError, match="not a shop spec"):
        ShopSpec.from_dict({"equipment": []})
    data = spec.to_dict()
    with pytest.raises(InvalidScenarioError, match="field 'mtbf' is missing"):
        ShopSpec.from_dict({k: v for k, v in data.items() if k != "mtbf"})
    with pytest.raises(InvalidScenarioError, match="wrong type or shape .*'fast'"):
        ShopSpec.from_dict({**data, "mean_interarrival": "fast"})
    with pytest.raises(InvalidScenarioError, match=r"^shop spec 'small': mean_interarrival must be a positive"):
        ShopSpec.from_dict({**data, "mean_interarrival": -1})
    q = quantiles_of(np.random.default_rng(0).uniform(2, 5, 4000))
    assert (
        abs(q[0] - 2) < 0.05
        and abs(q[-1] - 5) < 0.05
        and abs(draw(q, np.random.default_rng(1), 4000).mean() - 3.5) < 0.1
    )


def test_fit_shop_recovers_a_known_shop_from_its_log(tmp_path):
    from experiments.fit_shop import fit_shop

    truth = small_truth()
    db, _, _ = logged_history(tmp_path, truth, jobs=900)
    report = fit_shop(db, "line-1", tmp_path / "fitted.json")  # by name; the id works too
    fitted = ShopSpec.load(tmp_path / "fitted.json")
    assert report["events"] > 7000 and (tmp_path / "fitted.md").read_text().startswith("# Shop line-1")
    assert abs(truth.mean_interarrival / fitted.mean_interarrival - 1) < 0.08
    for m in (0, 1):  # breakdown rates and repair times
        assert abs(truth.mtbf[m] / fitted.mtbf[m] - 1) < 0.25, (m, fitted.mtbf)
        assert abs(fitted.mttr[m] / truth.mttr[m] - 1) < 0.25, (m, fitted.mttr)
    assert fitted.mtbf[2] == 0 and fitted.mttr[2] == 0
    assert sorted(t.operations for t in fitted.templates) == sorted(t.operations for t in truth.templates)
    assert abs(fitted.templates[0].share - 2 / 3) < 0.06
    for m in range(3):  # real / planned (integer times: a 6-unit operation at x 0.9 takes 5, so compare the means)
        assert abs(np.mean(fitted.noise[m]) - np.mean(truth.noise[m])) < 0.03, (m, fitted.noise[m])
    assert abs(fitted.allowance[0] - 1.5) < 0.1 and abs(fitted.allowance[-1] - 4.0) < 0.15
    assert abs(fitted.priorities[2] - 0.3) < 0.05


def test_replaying_the_recorded_decisions_reproduces_the_history_exactly(tmp_path):
    from experiments.replay import replay, replay_recorded, same_history
    from service.history import read_history

    db, scenario, schedule = logged_history(tmp_path, small_truth(), jobs=300, practice="spt")
    history = read_history(db, "shop-1")
    replayed_scenario, recorded, ids = history.scenario()
    assert ids == [f"WO{j}" for j in range(scenario.jobs.n_jobs)]
    assert np.array_equal(replayed_scenario.realized_durations, scenario.realized_durations)
    again = replay_recorded(replayed_scenario, recorded, window=400)
    assert same_history(again, recorded) and same_history(recorded, schedule)
    result = replay(db, "shop-1", ["spt", "atc", "policy"])
    rows = {r["method"]: r for r in result["rows"]}
    # the shop dispatched by spt: spt dispatching the recorded history is the recorded history
    assert rows["spt"]["total_weighted_tardiness"] == rows["recorded"]["total_weighted_tardiness"]
    assert rows["spt"]["makespan"] == rows["recorded"]["makespan"]
    assert rows["atc"]["total_weighted_tardiness"] < rows["recorded"]["total_weighted_tardiness"]


def test_a_shop_whose_interrupted_work_restarts_replays_exactly_too(tmp_path):
    from experiments.replay import replay

    db, scenario, schedule = logged_history(tmp_path, small_truth(), jobs=200, practice="spt", interruption="restart")
    rows = {r["method"]: r for r in replay(db, "line-1", ["spt"])["rows"]}
    assert rows["spt"]["total_weighted_tardiness"] == rows["recorded"]["total_weighted_tardiness"]
    assert rows["spt"]["makespan"] == rows["recorded"]["makespan"] == int(schedule.end.max())


def test_a_history_the_simulator_cannot_run_is_refused_not_misread(tmp_path):
    from experiments.replay import replay_recorded, same_history
    from instances import SchedEnvError
    from sched_env.schedule import Schedule
    from service.history import read_history

    db, _, _ = logged_history(tmp_path, small_truth(), jobs=60)
    scenario, recorded, _ = read_history(db, "shop-1").scenario()
    start = recorded.start.copy()
    first_on_cut = int(np.flatnonzero(recorded.machine == 0)[np.argsort(recorded.start[recorded.machine == 0])][1])
    start[first_on_cut] -= 1_000_000  # started before its order was released: impossible
    forged = Schedule(recorded.job, recorded.op, recorded.machine, np.maximum(start, 0), recorded.end)
    try:
        again = replay_recorded(scenario, forged, window=200)
    except SchedEnvError as error:  # it could not even be carried out
        assert "replay diverged" in str(error) or "no event" in str(error)
    else:  # carried out, it is not the history: `replay` refuses it (see experiments.replay.replay)
        assert same_history(again, recorded) and not same_history(again, forged)


def test_reading_a_log_names_what_is_wrong(tmp_path):
    from service.history import read_history
    from service.store import StoreError

    with pytest.raises(StoreError, match="no shop database"):
        read_history(tmp_path / "missing.sqlite3", "x")
    db, _, _ = logged_history(tmp_path, small_truth(), jobs=10)
    with pytest.raises(StoreError, match=r"has no shop 'nope'; its shops: shop-1 \(line-1\)"):
        read_history(db, "nope")


def test_evolve_on_a_users_shop_trains_resumes_and_benchmarks(tmp_path):
    from agents.evolve import SHOP_VALIDATION_STREAMS, EvolutionConfig, RunState, train
    from agents.loading import load_policy
    from experiments.bench_standard import PORTFOLIO, best_rules, run_cell, run_table
    from experiments.validate_networks import fresh_specs

    spec_path = small_truth().save(tmp_path / "spec.json")
    config = EvolutionConfig(shop=str(spec_path), start="shipped", pairs=2, streams=2, generations=2, validate_every=1,
                             train_warmup=20, train_recorded=80, validation_seeds=1, minutes=5)  # fmt: skip
    out = tmp_path / "run"
    path = train(config, out, say=lambda line: None)
    assert load_policy(path).kind == "dynamic" and ShopSpec.load(out / "shop.json") == small_truth()
    state, saved = RunState.load(out / "checkpoint.npz")
    assert saved.shop == str((out / "shop.json").resolve()) and state.generation == 2
    saved.generations = 3
    train(saved, out, resume=True, say=lambda line: None)
    assert (out / "progress.csv").read_text().splitlines()[-1].startswith("3,")
    rows = run_cell(f"shop:{spec_path}", f"policy@{path}", [0, 1], "test", 320)
    assert [r["setting"] for r in rows] == ["shop:small-w20-r100"] * 2 and all(
        r["weighted_tardiness_mean"] >= 0 for r in rows
    )
    table = run_table([f"shop:{spec_path}"], [f"policy@{path}"], seeds=1, validation_seeds=1, parallel=1)
    assert best_rules(table)["shop:small-w20-r100"] in PORTFOLIO  # the bench command's table on a user's shop
    with pytest.raises(Exception, match="cannot read the shop spec"):
        EvolutionConfig(shop=str(tmp_path / "none.json")).check()
    fresh = fresh_specs("standard", 1, 2, str(spec_path))  # choosing among a shop's runs on fresh streams
    assert [seed for _, seed, _ in fresh] == list(range(SHOP_VALIDATION_STREAMS, 2 * SHOP_VALIDATION_STREAMS))
    assert all(spec == small_truth() and purpose == "validation" for spec, _, purpose in fresh)


def test_the_loop_runs_from_the_command_line_through_a_real_server(tmp_path):
    """record (an MES feeding `sched-env serve` over HTTP), then fit-shop and replay as a user runs them."""
    pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from experiments.learn_shop import record

    db = tmp_path / "shop.sqlite3"
    sent = record(db, jobs=150, label="press")
    assert sent["events"] > 1500

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "experiments.cli", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = cli("fit-shop", "--db", str(db), "--shop", "press", "--out", str(tmp_path / "press.json"))
    assert f"fitted from {sent['events']:,} events" in out
    table = cli(
        "replay", "--db", str(db), "--shop", sent["shop"], "--methods", "fifo,atc", "--out", str(tmp_path / "r.md")
    )
    rows = {r["method"]: r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert rows["fifo"]["total_weighted_tardiness"] == rows["recorded"]["total_weighted_tardiness"]  # fifo ran it
    assert "| recorded |" in table
    bad = subprocess.run([sys.executable, "-m", "experiments.cli", "replay", "--db", str(db), "--shop", "press",
                          "--methods", "nonsense"], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "unknown method 'nonsense'" in bad.stderr and "Traceback" not in bad.stderr


def test_a_flexible_shops_history_replays_exactly_with_the_equipment_it_chose(tmp_path):
    from experiments.fit_shop import fit_history
    from experiments.replay import replay
    from service.history import read_history

    flexible = small_truth(templates=(Template((((0, 10), (1, 14)), ((1, 15),), ((2, 8), (0, 9))), 2.0),
                                      Template((((1, 12), (2, 10)), ((0, 6),)), 1.0)))  # fmt: skip
    db, scenario, schedule = logged_history(tmp_path, flexible, jobs=200, practice="atc+ll")
    assert scenario.is_flexible
    _, recorded, _ = read_history(db, "shop-1").scenario()
    assert sorted(zip(recorded.job, recorded.op, recorded.machine)) == sorted(
        zip(schedule.job, schedule.op, schedule.machine)
    )
    rows = {r["method"]: r for r in replay(db, "line-1", ["atc+ll", "atc+eet", "policy"])["rows"]}
    assert rows["atc+ll"]["total_weighted_tardiness"] == rows["recorded"]["total_weighted_tardiness"]
    fitted, _ = fit_history(read_history(db, "shop-1"))
    assert fitted.flexible and {len(o) for t in fitted.templates for o in t.operations} == {1, 2}


def test_a_shop_run_is_fitted_to_the_ratio_of_means_it_is_judged_by(tmp_path):
    """On one shop the fitness is the generation's total weighted tardiness over ATC's (a few congested
    streams carry most of it), not the mean of per-stream log ratios (a mix's: every shop counts alike)."""
    from agents.evolve import (
        Evaluator,
        EvolutionConfig,
        RunState,
        generation_step,
        initial_parameters,
        rule_tardiness,
        stream_tardiness,
    )

    spec_path = small_truth().save(tmp_path / "spec.json")
    config = EvolutionConfig(shop=str(spec_path), pairs=1, streams=3, train_warmup=20, train_recorded=80)
    config.check()
    rng = np.random.default_rng(5)
    theta = initial_parameters(0, rng, "atc", context=True)
    theta += 0.3 * rng.standard_normal(len(theta))  # not ATC: its ratio is not 1
    state = RunState(theta.copy(), np.zeros_like(theta), np.zeros_like(theta), scales=np.ones_like(theta))
    draws = np.random.default_rng((config.seed, 0))  # the streams generation 0 draws
    shop = small_truth().scaled(20, 80)
    specs = [(shop, int(draws.integers(2**31)), "train") for _ in range(3)]
    wt, atc = stream_tardiness(theta[None, :], 0, specs)[0], rule_tardiness(specs)[0]
    floor = 3 * 0.01 * shop.mean_ops * shop.mean_duration
    fitness = generation_step(state, config, Evaluator())
    assert fitness == pytest.approx(np.log((wt.sum() + floor) / (atc.sum() + floor)))
    assert fitness != pytest.approx(np.log((wt + floor / 3) / (atc + floor / 3)).mean())  # the streams differ


def test_validation_scores_rules_beside_the_networks_and_refuses_unknown_ones(tmp_path, capsys):
    """`validate_networks --rules wspt,atc`: a row per rule on the same streams and quarters (ATC as a
    network and as the rule read 1 exactly); an unknown rule is refused with the list of rules."""
    from agents.evolve import export_onnx, initial_parameters
    from experiments.validate_networks import main

    spec = str(small_truth().save(tmp_path / "spec.json"))
    atc = export_onnx(initial_parameters(0, np.random.default_rng(0), "atc", context=True), 0, tmp_path / "atc.onnx",
                      {"config": {}, "env_options": {}})  # fmt: skip
    assert (
        main([str(atc), "--shop", spec, "--seeds", "2:3", "--rules", "wspt, atc", "--name", str(tmp_path / "v")]) == 0
    )
    text = (tmp_path / "v.md").read_text()
    assert f"| `{atc}` | 1.0000 |" in text and "| atc (rule) | 1.0000 |" in text and "| wspt (rule) |" in text
    assert f"Best: `{atc}`." in text  # the best network, never a rule
    assert text.count("| wspt (rule) |") == 2 and "| atc (rule) | 1.000 | 1.000 | 1.000 | 1.000 |" in text
    with pytest.raises(SystemExit):
        main([str(atc), "--shop", spec, "--rules", "wspt,fastest"])
    assert "unknown rule fastest; rules: " in capsys.readouterr().err


def test_a_decaying_step_moves_the_network_less_as_the_run_ends(tmp_path):
    """--final-learning-rate: the Adam step follows a cosine from the first rate to the last over
    the run; the same generation moves the network 10x less at the end of a 0.02 -> 0.002 run."""
    from agents.evolve import Evaluator, EvolutionConfig, RunState, generation_step, initial_parameters, learning_rate

    spec_path = small_truth().save(tmp_path / "spec.json")
    config = EvolutionConfig(shop=str(spec_path), pairs=1, streams=2, train_warmup=20, train_recorded=80,
                             learning_rate=0.02, final_learning_rate=0.002)  # fmt: skip
    config.check()
    assert [learning_rate(config, done) for done in (0, 0.5, 1, 1.5)] == pytest.approx([0.02, 0.011, 0.002, 0.002])
    assert learning_rate(replace(config, final_learning_rate=None), 0.9) == 0.02  # no schedule: constant
    theta = initial_parameters(0, np.random.default_rng(5), "atc", context=True)
    steps = []
    for done in (0.0, 1.0):
        state = RunState(theta.copy(), np.zeros_like(theta), np.zeros_like(theta), scales=np.ones_like(theta))
        generation_step(state, config, Evaluator(), done)
        steps.append(state.theta - theta)
    assert np.abs(steps[0]).max() > 0
    np.testing.assert_allclose(steps[0], 10 * steps[1])


def test_validation_says_where_a_network_gains_on_light_and_congested_streams():
    from experiments.validate_networks import congestion_quarters

    reference = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 10.0, 14.0])  # the most congested quarter: 24 of 36
    lines = congestion_quarters({"net.onnx": reference * [0.5, 0.5, 1, 1, 1, 1, 1, 1]}, reference, "atc")
    assert "| network | lightest (6%) | second (11%) | third (17%) | most congested (67%) |" in lines
    assert "| `net.onnx` | 0.500 | 1.000 | 1.000 | 1.000 |" in lines
    never_late = congestion_quarters({"a": np.array([0.0, 0, 1, 1])}, np.array([0.0, 0, 1, 1]), "atc")
    assert never_late[-1] == "| `a` | 1 | 1 | 1.000 | 1.000 |"


def test_tardiness_sources_takes_out_one_source_at_a_time_on_the_same_streams(tmp_path, capsys):
    """experiments.tardiness_sources: the variants keep every arrival, routing and due date; noise at
    its mean scales each machine's durations by one multiple; no breakdowns drops the downtimes; the
    clairvoyant stream shows the real durations as the planned ones; ATC as a network reads ATC."""
    from agents.evolve import export_onnx, initial_parameters
    from experiments.tardiness_sources import clairvoyant, main, mean_multiple, shop_variants

    spec = small_truth()
    variants = shop_variants(spec)
    assert list(variants) == ["as specified", "noise at its mean", "no breakdowns", "neither"]
    base, steady, unbroken = (variants[v].scenario(4, "validation") for v in list(variants)[:3])
    for other in (steady, unbroken):
        np.testing.assert_array_equal(other.jobs.release_dates, base.jobs.release_dates)
        np.testing.assert_array_equal(other.jobs.due_dates, base.jobs.due_dates)
        np.testing.assert_array_equal(other.jobs.durations, base.jobs.durations)
    multiples = [mean_multiple(q) for q in spec.noise]
    assert multiples == pytest.approx([1.1, 1.0, 1.0]) and mean_multiple((1, 2, 6)) == pytest.approx(2.75)
    ops = base.jobs.durations > 0
    expected = np.maximum(1, np.round(base.jobs.durations * np.array(multiples)[base.jobs.machines]))
    np.testing.assert_array_equal(steady.realized_durations[ops], expected[ops])
    assert len(base.downtimes) > 0 and len(unbroken.downtimes) == 0
    np.testing.assert_array_equal(unbroken.realized_durations, base.realized_durations)
    seen = clairvoyant(base)
    np.testing.assert_array_equal(seen.jobs.durations, base.realized_durations)
    np.testing.assert_array_equal(seen.downtimes, base.downtimes)
    assert not np.array_equal(base.jobs.durations, base.realized_durations)

    path = str(spec.save(tmp_path / "spec.json"))
    atc = export_onnx(initial_parameters(0, np.random.default_rng(0), "atc", context=True), 0, tmp_path / "atc.onnx",
                      {"config": {}, "env_options": {}})  # fmt: skip
    assert main(["--shop", path, "--seeds", "2:3", "--rules", "atc,wspt", "--networks", str(atc),
                 "--name", str(tmp_path / "sources")]) == 0  # fmt: skip
    rows = [line for line in (tmp_path / "sources.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 8 and rows[0].startswith("| as specified | planned | 1.000 (1.000) |")
    assert all(
        row.strip("| ").split(" | ")[2] == row.strip("| ").split(" | ")[4] for row in rows
    )  # ATC the network = ATC the rule
    flexible = small_truth(templates=(Template((((0, 10), (1, 12)), ((2, 8),)), 1.0),))
    with pytest.raises(SystemExit):
        main(["--shop", str(flexible.save(tmp_path / "flex.json"))])
    assert "is a flexible shop; the clairvoyant runs need one machine per operation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--shop", path, "--seeds", "4:2"])
    assert "need 0 <= FIRST < LAST, got '4:2'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--shop", path, "--networks", str(tmp_path / "none.onnx")])
    assert "none.onnx does not exist" in capsys.readouterr().err
