"""experiments/latency.py: the harness on a small stream gives every column, and a budgeted
decider that overruns is caught (exit status 1)."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("ortools")
pytest.importorskip("onnxruntime")

from experiments import latency  # noqa: E402


def test_event_streams_have_the_events_asked_for():
    arrivals = latency.event_stream(6, 4, "arrivals", 4, seed=1)
    assert int((arrivals.jobs.release_dates > 0).sum()) == 4 and len(arrivals.downtimes) == 0
    breakdowns = latency.event_stream(6, 4, "breakdowns", 4, seed=1)
    assert len(breakdowns.downtimes) == 2 and int((breakdowns.jobs.release_dates > 0).sum()) == 0
    mixed = latency.event_stream(6, 4, "mixed", 6, seed=1)
    assert int((mixed.jobs.release_dates > 0).sum()) == 3 and len(mixed.downtimes) == 1


def test_the_harness_writes_every_column_for_every_decider(tmp_path):
    specs = "mwkr,policy,policy:4,cpsat:0.3,hybrid:0.3"
    code = latency.main(["--sizes", "6x4", "--scenario", "mixed", "--deciders", specs, "--events", "4",
                         "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "latency.csv").open()))
    assert [r["decider"] for r in rows] == specs.split(",")
    for row in rows:
        for column in latency.COLUMNS:
            assert column in row
        assert int(row["plans"]) >= 2 and float(row["p99_s"]) < latency.PROMISE_S
    assert rows[0]["decision_p50_ms"] and rows[1]["decision_p50_ms"], "dispatching deciders report one decision"
    assert rows[3]["budget_s"] and rows[3]["over_budget_at_p99"] == "False"
    assert (tmp_path / "latency.png").stat().st_size > 5000
    assert "p99 < 10 s" in (tmp_path / "latency.md").read_text()


def test_a_decider_over_its_budget_fails_the_run(tmp_path, monkeypatch):
    from baselines import deciders

    original = deciders.solve

    def slow(problem, method, **kwargs):  # every plan takes 0.3 s longer than a 0.05 s budget allows
        import time

        result = original(problem, method, **kwargs)
        time.sleep(0.3)
        return result

    monkeypatch.setattr("baselines.replan.run_decider", slow)
    code = latency.main(["--sizes", "5x3", "--deciders", "cpsat:0.05", "--events", "2", "--out", str(tmp_path),
                         "--name", "over"])  # fmt: skip
    assert code == 1
    row = next(csv.DictReader((tmp_path / "over.csv").open()))
    assert row["over_budget_at_p99"] == "True"
