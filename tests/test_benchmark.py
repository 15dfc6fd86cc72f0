"""experiments/benchmark.py and `sched-env bench` / `sched-env solve`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from experiments.benchmark import COLUMNS, run, run_matrix, write_outputs
from experiments.cli import UserError, expand_names
from tests.helpers import run_cli

pytest.importorskip("ortools")


def test_expand_names():
    assert expand_names("ta01-ta03,ft06,ta09-10") == ["ta01", "ta02", "ta03", "ft06", "ta09", "ta10"]
    with pytest.raises(UserError):
        expand_names("ta05-ta01")


def test_run_gives_one_row_with_every_column():
    row = run("ta01", "mwkr")
    assert set(row) == set(COLUMNS)
    assert (row["instance"], row["size"], row["makespan"], row["best_known"]) == ("ta01", "15x15", 1491, 1231)
    assert row["gap"] == pytest.approx(1491 / 1231 - 1, abs=1e-6)
    assert json.loads(row["params"]) == {"action_set": "non_delay", "placement": "active"}
    assert "numba" in json.loads(row["versions"])


def test_bench_command_writes_csv_markdown_and_png(tmp_path):
    result = run_cli(
        "bench", "--instances", "ta01-ta02", "--methods", "mwkr,cpsat:0.5", "--out", str(tmp_path), "--quiet",
        "--parallel", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "benchmark.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and tuple(rows[0]) == COLUMNS
    assert {r["method"] for r in rows} == {"mwkr", "cpsat:0.5"}
    report = (tmp_path / "benchmark.md").read_text()
    assert "| 15x15 | mwkr | 2 |" in report and "| 15x15 | cpsat:0.5 | 2 |" in report
    if (tmp_path / "benchmark.png").exists():
        assert (tmp_path / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


def test_ray_rows_equal_process_pool_rows(tmp_path):
    pytest.importorskip("ray")
    methods = ["mwkr", "random:4", "spt@any"]
    pool_rows = run_matrix(["ta01", "ta02"], methods, seeds=range(2), parallel=2, show_progress=False)
    ray_rows = run_matrix(
        ["ta01", "ta02"], methods, seeds=range(2), parallel=2, ray_address="local", show_progress=False
    )
    key = ("instance", "method", "seed", "makespan", "status")
    assert [tuple(r[k] for k in key) for r in ray_rows] == [tuple(r[k] for k in key) for r in pool_rows]
    assert len(write_outputs(ray_rows, tmp_path, "ray", "ray", "test")) >= 2


def test_solve_command_json_and_outputs(tmp_path):
    out, gantt = tmp_path / "s.json", tmp_path / "g.png"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "solve", "ta01", "--method", "mopnr", "--json", "--out", str(out), "--gantt", str(gantt)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["instance"] == "ta01" and data["makespan"] == data["schedule"]["makespan"]
    assert data["best_known"] == 1231 and data["gap"] > 0 and data["status"] == "feasible"
    assert out.exists()


def test_unknown_method_is_one_clear_line():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "bench", "--methods", "mwkr,bogus", "--instances", "ta01"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown method 'bogus'" in result.stderr and "Traceback" not in result.stderr


def test_flexible_names_expand_with_suffixes_and_sd1_sizes():
    assert expand_names("la01_edata-la03_edata,mk09-10") == ["la01_edata", "la02_edata", "la03_edata", "mk09", "mk10"]
    sizes = expand_names("sd1:20x5")
    assert len(sizes) == 100 and sizes[0] == "sd1_20x5_001" and sizes[-1] == "sd1_20x5_100"
    with pytest.raises(UserError, match="sd1 sizes are 10x5, 20x5"):
        expand_names("sd1:7x7")


def test_bench_on_flexible_families_shows_the_published_columns(tmp_path):
    result = run_cli(
        "bench", "--instances", "mk01-mk02,sd1_10x5_001-sd1_10x5_003", "--methods", "mwkr+eet,cpsat:0.5", "--out",
        str(tmp_path), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "benchmark.md").read_text()
    assert "| mk | mwkr+eet | 2 |" in report and "| sd1 10x5 | cpsat:0.5 | 3 |" in report
    assert "| mk | CP-SAT 900 s, 8 workers (published) | 2 | 0.0 % |" in report
    assert "| sd1 10x5 | DANIEL greedy, trained on 10x5 (published) | 3 |" in report
    with open(tmp_path / "benchmark.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(json.loads(r["params"]).get("machine_rule") == "eet" for r in rows if r["method"] == "mwkr+eet")


def test_solve_command_on_a_flexible_instance_and_a_clear_refusal():
    result = run_cli("solve", "mk01", "--method", "spt+spt", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["best_known"] == 40 and {row["machine"] for row in data["schedule"]["operations"]} <= set(range(6))
    planned = run_cli("solve", "mk01", "--method", "policy", "--json")  # the pair policy
    assert planned.returncode == 0, planned.stderr
    assert {row["machine"] for row in json.loads(planned.stdout)["schedule"]["operations"]} <= set(range(6))
    refused = run_cli("solve", "mk01", "--method", "policy@static")  # a job-only policy
    assert refused.returncode != 0 and "chooses jobs only" in refused.stderr and "policy@flexible" in refused.stderr
    assert "Traceback" not in refused.stderr
