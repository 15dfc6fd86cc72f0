"""baselines/deciders.py: one door for every decider (specs, registry, entry points, budgets)."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import instances
from baselines import deciders, rules
from baselines.deciders import DeciderError, MethodSpec
from sched_env.dynamic import DynamicJobShopEnv
from sched_env.events import generate_scenario
from sched_env.schedule import validate_schedule
from sched_env.snapshot import plan_violations
from tests.helpers import run_cli, running_shop_state, within_budget


def test_method_specs_parse_and_bad_ones_say_what_to_write():
    assert MethodSpec.parse("mwkr") == MethodSpec("mwkr", "mwkr")
    assert MethodSpec.parse("spt@giffler_thompson").qualifier == "giffler_thompson"
    assert MethodSpec.parse("cpsat:10:hint").args == ("10", "hint")
    assert MethodSpec.parse("policy@models/a.zip") == MethodSpec("policy@models/a.zip", "policy", (), "models/a.zip")
    made = deciders.make("random:16")
    assert (made.rule, made.samples) == ("random", 16)
    cp = deciders.make("cpsat:10:hint")
    assert (cp.time_limit_s, cp.hinted) == (10.0, True)
    for bad, message in (
        ("foo", "unknown method 'foo'"),
        ("cpsat:x", "SECONDS must be a positive number"),
        ("cpsat:10:hints", "write cpsat:SECONDS or cpsat:SECONDS:hint"),
        ("mwkr@left", "unknown action set 'left'"),
        ("mwkr:3", "only random takes :N"),
        ("random:0", "sample count N must be a positive integer"),
        ("", "non-empty string"),
        # every number has a range: no spec asks for unbounded work (the service's abuse findings)
        ("hybrid:nan", "SECONDS must be a positive number"),
        ("cpsat:inf", "SECONDS must be a positive number"),
        ("cpsat:86401", r"at most 86,400"),
        ("random:10001", r"at most 10,000"),
        ("policy:1000000000000", r"sample count K must be a positive integer \(at most 10,000\)"),
        ("tabu:iters=0", "iters must be a positive integer"),
        ("tabu:1:iters=2000000000", r"at most 1,000,000,000"),
        ("policy@agents/models/dynamic.onnx:16", r"go before '@': policy:16@agents/models/dynamic.onnx"),
    ):
        with pytest.raises(DeciderError, match=message):
            deciders.make(bad)


def test_a_third_party_decider_joins_through_its_entry_point(third_party):
    assert deciders.registered()["reverse"].origin == "entry point (thirdparty-decider)"
    result = deciders.solve(instances.load("ft06"), "reverse")
    assert result.method == "reverse" and result.params == {"from": "thirdparty"}
    validate_schedule(instances.load("ft06"), result.schedule)


def test_a_third_party_decider_runs_through_solve_and_bench(third_party, tmp_path):
    listing = run_cli("solve", "--list-methods")
    assert "reverse" in listing.stdout and "thirdparty-decider" in listing.stdout
    solved = run_cli("solve", "ft06", "--method", "reverse")
    assert solved.returncode == 0 and "ft06: reverse makespan" in solved.stdout, solved.stderr
    out = tmp_path / "bench"
    bench = run_cli(
        "bench",
        "--instances",
        "ft06,la01",
        "--methods",
        "reverse,mwkr",
        "--out",
        str(out),
        "--quiet",
        "--parallel",
        "2",
    )
    assert bench.returncode == 0, bench.stderr
    with open(out / "benchmark.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["instance"], r["method"]) for r in rows} == {
        ("ft06", "reverse"),
        ("ft06", "mwkr"),
        ("la01", "reverse"),
        ("la01", "mwkr"),
    }


def test_a_decider_that_declares_nothing_gets_the_defaults(third_party):
    info = deciders.traits(deciders.make("reverse"))
    assert (info.family, info.time_limit_s, info.dispatches, info.reads_files, info.takes_models) == (
        "reverse",
        None,
        False,
        False,
        False,
    )
    info = deciders.traits(deciders.make("slowpoke:0.3"))
    assert (info.family, info.time_limit_s, info.dispatches, info.takes_models) == ("slowpoke", 0.3, False, True)
    assert deciders.traits(deciders.make("quick")).dispatches


def test_built_in_deciders_declare_what_they_are():
    pytest.importorskip("ortools")
    expected = {"mwkr": (None, True), "random:4": (None, False), "cpsat:2": (2.0, False), "right-shift": (None, False)}
    for spec, (limit, dispatches) in expected.items():
        info = deciders.traits(deciders.make(spec))
        assert (info.time_limit_s, info.dispatches, info.reads_files) == (limit, dispatches, False), spec


def test_a_third_party_dispatcher_and_planner_go_through_every_caller(third_party):
    from baselines.replan import Replanner
    from experiments import latency

    scenario = generate_scenario(4, initial_jobs=3, arriving_jobs=3, seed=1)
    (online,) = deciders.dispatch_online(deciders.make("quick"), [scenario])
    assert online.method == "quick" and len(online.schedule) == scenario.jobs.n_operations
    with pytest.raises(DeciderError, match="does not dispatch online"):
        deciders.dispatch_online(deciders.make("slowpoke"), [scenario])
    planner = deciders.make("slowpoke:0.3")
    assert latency.budget_of(planner, 10.0) == 0.3 and latency.budget_of(deciders.make("reverse"), 10.0) is None
    assert latency.decision_latency(deciders.make("quick"), scenario) is not None
    assert latency.decision_latency(planner, scenario) is None
    deciders.give_models(planner, {"static": "S", "dynamic": "D"})
    replanned = Replanner(planner, execution="priority").run(DynamicJobShopEnv(scenario))
    assert replanned.method == "slowpoke:0.3" and replanned.params["plans"] >= 1
    with pytest.raises(DeciderError, match="this host reads none"):
        deciders.make("reverse@/etc/passwd", allow_files=False)  # a third party's '@...' may be a file
    assert deciders.make("mwkr@giffler_thompson", allow_files=False).action_set == "giffler_thompson"


def _state():
    scenario = generate_scenario(4, initial_jobs=4, arriving_jobs=5, mtbf=120, mttr=30, noise=0.2, seed=3)
    env = DynamicJobShopEnv(scenario)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(10):
        obs, *_ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
    return env.snapshot()


@pytest.mark.parametrize("name", sorted(deciders.registered()))
def test_every_registered_decider_keeps_a_tiny_budget(name):
    pytest.importorskip("ortools")
    registration = deciders.registered()[name]
    budget = 0.3
    problems = [instances.load("ta21"), _state()]
    for problem in problems:
        try:
            result = deciders.solve(problem, registration.example, budget_s=budget, seed=0)
        except (DeciderError, instances.InvalidInstanceError) as error:  # a refusal must say why
            assert any(why in str(error) for why in ("ShopState", "static", "needs due dates")), error
            continue
        assert result.budget_s == budget
        assert within_budget(result), f"{name}: {result.wall_time_s:.3f} s for {budget} s"
        if isinstance(problem, instances.JobShopInstance) and result.schedule is not None:
            validate_schedule(problem, result.schedule)
        elif result.schedule is not None:
            assert plan_violations(problem, result.schedule) == []


def test_an_overrun_is_reported_instead_of_hidden():
    class Sleepy:  # a decider that ignores its budget
        spec = "sleepy"

        def solve(self, problem, *, budget_s=None, seed=0, hint=None):
            time.sleep(0.12)
            return rules.quick_rule_plan(problem)

    result = deciders.solve(instances.load("ft06"), Sleepy(), budget_s=1e-3)
    assert result.over_budget and result.wall_time_s > result.budget_s


def test_random_samples_stop_at_the_budget_and_keep_only_the_best():
    """random:N runs in chunks of bounded memory and stops when its budget is spent: random:10000
    on a 100x20 shop within 0.2 s answers with far fewer samples, the best of those run."""
    instance = instances.load("ta71")
    result = deciders.solve(instance, "random:10000", budget_s=0.2)
    assert result.schedule is not None and 1 <= result.params["samples_run"] < 10_000
    assert result.wall_time_s < 0.2 + 0.15, result.wall_time_s
    state = running_shop_state(10, initial_jobs=50, arriving_jobs=10, seed=4, steps=60)
    planned = deciders.solve(state, "random:10000", budget_s=0.1)
    assert plan_violations(state, planned.schedule) == [] and planned.params["samples_run"] < 10_000
    full = deciders.solve(instances.random_instance(6, 4, seed=1), "random:300")  # no budget: all of them
    assert full.params["samples_run"] == 300


def test_cpsat_limit_covers_building_the_model():
    pytest.importorskip("ortools")
    result = deciders.solve(instances.load("ta71"), "cpsat:0.5:hint")
    assert within_budget(dataclasses.replace(result, budget_s=0.5)) and result.schedule is not None


PLANNERS = ("cpsat:1", "cpsat:1:hint", "hybrid:1", "policy", "policy:16")


@pytest.mark.parametrize("spec", PLANNERS)
def test_every_planner_answers_a_100x20_shop_and_a_50_job_state_within_a_tenth_of_a_second(spec):
    """Anytime: with 0.1 s, each planner returns a valid plan in time (a rule's when nothing else
    fits, status start-plan), never no plan."""
    if spec.startswith(("cpsat", "hybrid")):
        pytest.importorskip("ortools")
    if spec.startswith(("policy", "hybrid")):
        pytest.importorskip("onnxruntime")
    decider = deciders.make(spec)
    state = running_shop_state(10, initial_jobs=50, arriving_jobs=10, seed=4, steps=60)
    assert state.jobs.n_jobs >= 50
    for problem in (instances.load("ta71"), state):
        result = deciders.solve(problem, decider, budget_s=0.1)
        assert result.schedule is not None and result.status in ("optimal", "feasible", "start-plan")
        if isinstance(problem, instances.JobShopInstance):
            validate_schedule(problem, result.schedule)
        else:
            assert plan_violations(problem, result.schedule) == []
        assert within_budget(result), f"{spec}: {result.wall_time_s:.3f} s for 0.1 s"


def test_cpsat_without_a_solution_returns_the_given_hint_and_says_so(monkeypatch):
    pytest.importorskip("ortools")
    from baselines import cpsat
    from sched_env.schedule import SolveResult

    instance = instances.load("ta21")
    hint = deciders.solve(instance, "spt").schedule  # the reference, computed apart

    def nothing(problem, **kwargs):
        return SolveResult(None, None, "unknown", "cpsat", 0.0, problem.name)

    monkeypatch.setattr(cpsat, "solve", nothing)
    result = deciders.solve(instance, "cpsat:1", hint=hint)
    assert result.status == "start-plan" and result.params["search_status"] == "unknown"
    assert result.schedule == hint and result.objective == hint.makespan
    unhinted = deciders.solve(instance, "cpsat:1")  # no hint: the best rule's plan
    validate_schedule(instance, unhinted.schedule)
    assert unhinted.status == "start-plan"
    assert unhinted.objective == min(deciders.solve(instance, r).objective for r in rules.HINT_RULES)


def test_rescheduling_deciders_keep_done_and_running_work():
    pytest.importorskip("ortools")
    state = _state()
    for method in ("atc", "edd", "random:8", "cpsat:0.5", "cpsat:0.5:hint", "right-shift"):
        result = deciders.solve(state, method)
        assert plan_violations(state, result.schedule) == [], method
        assert result.method == method and result.params["objective"] == "total_weighted_tardiness"


def test_bad_problems_and_budgets_are_clear_errors():
    with pytest.raises(DeciderError, match="budget_s must be > 0"):
        deciders.solve(instances.load("ft06"), "mwkr", budget_s=0)
    with pytest.raises(DeciderError, match="JobShopInstance or a ShopState"):
        deciders.solve("ft06", "mwkr")
    with pytest.raises(DeciderError, match="right-shift repairs a plan of a running shop"):
        deciders.solve(instances.load("ft06"), "right-shift")
    with pytest.raises(DeciderError, match="names are lower case"):
        deciders.register("Bad:Name", lambda spec: None)


def test_right_shift_runs_without_or_tools():
    """Rescheduling by repair must not need the `cp` extra."""
    code = textwrap.dedent("""
        import sys
        sys.modules["ortools"] = None  # any import of OR-Tools now fails
        import numpy as np
        from baselines import deciders
        from sched_env.dynamic import DynamicJobShopEnv
        from sched_env.events import generate_scenario
        from sched_env.snapshot import plan_violations

        env = DynamicJobShopEnv(generate_scenario(3, initial_jobs=3, arriving_jobs=3, seed=1))
        obs, _ = env.reset(seed=1)
        obs, *_ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        state = env.snapshot()
        result = deciders.solve(state, "right-shift")
        assert plan_violations(state, result.schedule) == []
        try:
            deciders.make("cpsat:1")
        except deciders.DeciderError as error:
            assert "needs OR-Tools" in str(error)
        else:
            raise AssertionError("cpsat without OR-Tools must say so")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_unknown_rule_id_raises_instead_of_scoring_zero():
    from sched_env import JobShopEnv

    env = JobShopEnv("ft06")
    env.reset()
    with pytest.raises(ValueError, match="unknown rule id 42"):
        env.rule_choice(42)
