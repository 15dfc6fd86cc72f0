"""experiments/cli.py: the `sched-env` command, run as a user would (a real subprocess)."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main
from tests.helpers import run_cli

run = run_cli


def test_show_ta01_json_gives_jobs_machines_and_bounds():
    result = run("instances", "show", "ta01", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n_jobs"] == 15 and data["n_machines"] == 15 and len(data["jobs"]) == 15
    assert data["bounds"] == {"lower_bound": 1231, "upper_bound": 1231, "optimum": 1231}
    assert data["simple_lower_bound"] == 977


def test_list_family(capsys):
    assert main(["instances", "list", "--family", "ta"]) == 0
    out = capsys.readouterr().out
    assert "ta80" in out and "100x20" in out and "80 instances" in out and "la01" not in out


def test_list_json(capsys):
    assert main(["instances", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 238 and {r["data"] for r in rows} == {"generated", "bundled"}  # every name loads


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("instances", "show", "nope"), "unknown instance 'nope'"),
        (("solve", "ta01", "--method", "nope"), "unknown method 'nope'"),
        (("solve", "ta01", "--method", "atc"), "rule 'atc' needs due dates"),
        (("gantt", "missing.json", "--instance", "ta01"), "cannot read schedule file"),
        (("solve", "ta01", "--time-limit", "-5"), "argument --time-limit: must be a positive number of seconds, got -5"),
        (("train", "no-such-config.yaml"), "training config no-such-config.yaml: No such file"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_then_gantt(tmp_path):
    pytest.importorskip("matplotlib")
    result = run("demo", "--out", str(tmp_path), "--time-limit", "0.5", "--method", "hybrid:0.3")
    assert result.returncode == 0, result.stderr
    assert "| mwkr       | 1491     | 21.1 %" in result.stdout
    assert result.stdout.startswith("sched-env demo:"), "the first line says what the demo does"
    for method in ("policy", "policy:128", "cpsat:0.5", "atc (decides at every epoch)", "hybrid:0.3 replanning"):
        assert f"| {method}" in result.stdout, f"{method} missing from the demo's tables"
    assert "response time p50" in result.stdout and "one decision on ta01" in result.stdout
    schedule, chart = tmp_path / "ta01_schedule.json", tmp_path / "ta01_gantt.png"
    for png in (chart, tmp_path / "dynamic_plan_before_breakdown.png", tmp_path / "dynamic_plan_after_breakdown.png"):
        assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "## Dynamic shop" in (tmp_path / "report.md").read_text()
    out = tmp_path / "again.svg"
    result = run("gantt", str(schedule), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().lstrip().startswith("<?xml")
    redrawn = tmp_path / "dynamic.png"  # the demo's dynamic schedule redraws from its scenario file
    result = run("gantt", str(tmp_path / "dynamic_schedule.json"), "--scenario", str(tmp_path / "dynamic_scenario.json"),
                 "--now", "300", "--out", str(redrawn))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert redrawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gantt_rejects_an_infeasible_schedule(tmp_path):
    (tmp_path / "s.json").write_text(
        json.dumps({"instance": "ta01", "operations": [{"job": 0, "op": 0, "machine": 6, "start": 0, "end": 94}]})
    )
    result = run("gantt", str(tmp_path / "s.json"))
    assert result.returncode == 2 and "breaks 224 constraint(s)" in result.stderr


def test_a_yaml_syntax_error_in_a_training_config_is_one_line_with_its_place(tmp_path):
    pytest.importorskip("yaml")
    config = tmp_path / "bad.yaml"
    config.write_text("shop: static\nsizes: [5x3\nalgo: self-labeling\n")
    result = run("train", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "YAML syntax error at line" in result.stderr and len(result.stderr.strip().splitlines()) == 1
