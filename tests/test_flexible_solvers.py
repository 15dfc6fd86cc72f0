"""Rules with machine rules and CP-SAT on flexible shops: valid plans, rescheduling a running flexible shop."""

from __future__ import annotations

import numpy as np
import pytest

import instances
from baselines import deciders, rules
from baselines.deciders import DeciderError
from instances import SchedEnvError
from sched_env.schedule import validate_schedule
from sched_env.snapshot import ShopState, plan_violations
from tests.reference import random_flexible_instance

MACHINE_RULES = ("eet", "spt", "ll", "est")


def test_every_rule_with_every_machine_rule_gives_valid_plans():
    rng = np.random.default_rng(5)
    shops = [random_flexible_instance(rng) for _ in range(40)]
    for rule in ("spt", "lpt", "mwkr", "lwkr", "mopnr", "fifo", "random", "wspt", "pt+winq", "2pt+winq+npt"):
        for machine_rule in MACHINE_RULES:
            for action_set in ("non_delay", "giffler_thompson", "any"):
                runs = rules.dispatch_many(shops, f"{rule}+{machine_rule}", action_set=action_set)  # each validated
                for shop, result in zip(shops, runs):
                    assert result.params.get("machine_rule") == (machine_rule if shop.is_flexible else None)


def test_rule_specs_name_the_machine_rule_and_plain_names_mean_eet():
    mk01 = instances.load("mk01")
    plain, explicit = deciders.solve(mk01, "mwkr"), deciders.solve(mk01, "mwkr+eet")
    assert plain.objective == explicit.objective and plain.params["machine_rule"] == "eet"
    assert deciders.solve(mk01, "spt+spt").params["machine_rule"] == "spt"
    assert (
        deciders.solve(instances.load("ft06"), "mwkr+spt").objective
        == deciders.solve(instances.load("ft06"), "mwkr").objective
    )
    with pytest.raises(DeciderError, match="RULE\\+MACHINE_RULE"):
        deciders.make("mwkr+fastest")


def test_balanced_assignment_moves_work_off_the_most_loaded_machine():
    # four operations, each 10 on machine 0 and 12 on machine 1: all on the fastest machine gives 40
    shop = instances.JobShopInstance.from_alternatives([[[(0, 10), (1, 12)]] for _ in range(4)], n_machines=2)
    balanced = rules.balanced_assignment(shop)
    assert not balanced.is_flexible and sorted(balanced.machines[:, 0].tolist()) == [0, 0, 1, 1]
    assert sorted(balanced.durations[:, 0].tolist()) == [10, 10, 12, 12]
    rng = np.random.default_rng(11)
    for _ in range(60):
        shop = random_flexible_instance(rng)
        balanced = rules.balanced_assignment(shop)
        table = shop.processing_table()
        real = np.arange(shop.max_ops)[None, :] < shop.n_ops[:, None]
        chosen = np.take_along_axis(table, np.maximum(balanced.machines, 0)[:, :, None], axis=2)[:, :, 0]
        assert (chosen[real] == balanced.durations[real]).all() and (chosen[real] >= 0).all()  # eligible, its duration
        fastest = np.bincount(shop.machines[real], weights=shop.durations[real], minlength=shop.n_machines)
        loads = np.bincount(balanced.machines[real], weights=balanced.durations[real], minlength=shop.n_machines)
        assert loads.max() <= fastest.max()
        plan = rules.balanced_rule_plan(shop)
        validate_schedule(shop, plan.schedule)
        assert plan.method.endswith("+balanced") and rules.best_rule_plan(shop).objective <= plan.objective


def test_the_balanced_start_rescues_a_search_on_a_large_shop_of_unrelated_machines():
    """On sd1 40x10 the machine rules' greedy choices cost 9 % that tabu:10 never won back (402 against
    OR-Tools' 369); 3000 moves from the best machine-rule plan alone reach 415, with the balanced start 376."""
    shop = instances.load("sd1_40x10_001")
    result = deciders.solve(shop, "tabu:iters=3000", seed=0)
    assert any(start.endswith("+balanced") for start in result.params["starts"]) and result.objective <= 385


def test_job_only_policies_refuse_flexible_shops_by_name():
    pytest.importorskip("onnxruntime")
    for method in ("policy@static", "policy:8@static", "policy@dynamic"):
        with pytest.raises(SchedEnvError, match="chooses jobs only.*policy@flexible.*mwkr\\+eet"):
            deciders.solve(instances.load("mk01"), method)


def test_cpsat_solves_small_flexible_shops_to_optimality_and_never_loses_to_a_rule():
    pytest.importorskip("ortools")
    mk01 = instances.load("mk01")
    result = deciders.solve(mk01, "cpsat:20")
    assert result.objective == 40 and result.status == "optimal"  # mk01's optimum
    rng = np.random.default_rng(11)
    for _ in range(12):
        shop = random_flexible_instance(rng, max_jobs=4, max_machines=3, max_ops=3)
        best = deciders.solve(shop, "cpsat:5")
        assert best.status == "optimal"
        validate_schedule(shop, best.schedule)
        assert best.objective <= min(
            r.objective for r in rules.dispatch_many([shop] * 4, ["mwkr", "spt+spt", "fifo", "random"])
        )


def test_cpsat_hint_keeps_the_hinted_machines_feasible():
    pytest.importorskip("ortools")
    from baselines import cpsat

    shop = instances.load("la01_rdata")
    hint = rules.dispatch(shop, "spt+spt").schedule
    jsm = cpsat.build_model(shop)
    cpsat.add_hint(jsm, hint)
    assert jsm.choices and all(len(options) >= 2 for options in jsm.choices.values())
    result = cpsat.solve(shop, time_limit_s=1.0, hint=hint)
    assert result.objective <= hint.makespan


def running_flexible_shop(instance, time: int, method: str = "mwkr+eet") -> ShopState:
    """The shop at ``time`` had it followed ``method``'s plan: done and running work on their machines."""
    plan = deciders.solve(instance, method).schedule
    done, running = [], []
    for j, k, m, s, e in zip(
        plan.job.tolist(), plan.op.tolist(), plan.machine.tolist(), plan.start.tolist(), plan.end.tolist()
    ):
        if e <= time:
            done.append([j, k, m, s, e])
        elif s < time:
            running.append([j, k, m, s, e])
    instance = instance.replace(
        release_dates=np.zeros(instance.n_jobs, dtype=int),
        due_dates=np.full(instance.n_jobs, time),
        weights=np.ones(instance.n_jobs, dtype=int),
    )
    downtimes = [[0, time, time + 7, 0]]  # machine 0 breaks down now: its waiting work may move
    return ShopState(time, instance, np.arange(instance.n_jobs), done, running, downtimes)


@pytest.mark.parametrize("method", ["cpsat:3", "right-shift"])
def test_replanning_a_running_flexible_shop_keeps_done_and_running_work_on_their_machines(method):
    if method.startswith("cpsat"):
        pytest.importorskip("ortools")
    state = running_flexible_shop(instances.load("mk01"), time=20)
    assert len(state.done) and len(state.running)
    hint = deciders.solve(instances.load("mk01"), "mwkr+eet").schedule
    result = deciders.solve(state, method, hint=hint if method == "right-shift" else None)
    assert not plan_violations(state, result.schedule)
    rows = {
        (j, k): (m, s, e)
        for j, k, m, s, e in zip(
            *(getattr(result.schedule, c).tolist() for c in ("job", "op", "machine", "start", "end"))
        )
    }
    for j, k, m, s, e in state.done.tolist() + state.running.tolist():
        assert rows[j, k] == (m, s, e)
    assert all(
        not (m == 0 and s < 27 and e > 20)
        for (j, k), (m, s, e) in rows.items()
        if [j, k] not in state.done[:, :2].tolist()
    )


def test_a_state_whose_running_op_sits_on_an_ineligible_machine_is_refused():
    shop = instances.load("mk01")
    machine = next(m for m in range(shop.n_machines) if shop.processing[0, 0, m] < 0)
    with pytest.raises(instances.InvalidScenarioError, match="that machine cannot run it"):
        ShopState(1, shop, np.arange(shop.n_jobs), [], [[0, 0, machine, 0, 5]], [])


def test_flexible_fuzz_subset_every_plan_valid():
    """A few hundred cases of experiments/flexible_fuzz.py (its committed run holds 100 000)."""
    pytest.importorskip("ortools")
    from experiments.flexible_fuzz import check_chunk

    report = check_chunk(0, 300, 30)
    assert report["cases"] == 300 and report["solver_cases"] == 10
    assert report["failures"] == []
