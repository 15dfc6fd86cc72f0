"""experiments/cli/: the `sched-env` command, run as a user would (a real subprocess, or main() in process)."""

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
    assert len(rows) == 238 + 850 and {r["data"] for r in rows} == {"generated", "bundled"}  # every name loads
    mk10 = next(r for r in rows if r["name"] == "mk10")
    assert mk10["family"] == "mk" and mk10["size"] == "20x11" and mk10["upper_bound"] == "193"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("instances", "show", "nope"), "unknown instance 'nope'"),
        (("solve", "ta01", "--method", "nope"), "unknown method 'nope'"),
        (("solve", "ta01", "--method", "atc"), "rule 'atc' needs due dates"),
        (("gantt", "missing.json", "--instance", "ta01"), "cannot read schedule file"),
        (
            ("solve", "ta01", "--time-limit", "-5"),
            "argument --time-limit: must be a positive number of seconds, got -5",
        ),
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
    shown = ("policy", "policy:128", "cpsat:0.5", "atc (decides at every epoch)", "policy:16 replanning")
    for method in (*shown, "hybrid:0.3 replanning"):
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


def _refusal(args, capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as stop:  # argparse refuses by exiting
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "ta01", "--workers", "0"], "argument --workers: must be a whole number, 1 or more, got 0"),
        (["solve", "ta01", "--budget", "nan"], "argument --budget: must be a positive number of seconds"),
        (["serve", "--port", "99999"], "argument --port: must be a port number from 1 to 65535, got 99999"),
        (["bench", "--seeds", "0"], "argument --seeds: must be a whole number, 1 or more, got 0"),
        (["bench", "--parallel", "0"], "argument --parallel: must be a whole number, 1 or more, got 0"),
        (["instances", "list", "--family", "zz"], "--family zz: no such family; choose one of abz"),
        (["instances", "list", "--dir", "no-such-folder"], "argument --dir: no such folder: no-such-folder"),
        (["solve", "ta01", "--method", "mwkr", "--out", "no-such-folder/x.json"],
         "--out no-such-folder/x.json: the folder no-such-folder does not exist"),
        (["solve", "ta01", "--method", "mwkr", "--gantt", "chart.bmpx"], "--gantt chart.bmpx: write one of .png"),
        (["gantt", "plan.json", "--out", "chart.bmpx"], "--out chart.bmpx: write one of .png"),
        (["export-onnx", "model.zip", "--out", "model.txt"], "--out model.txt: write one of .onnx"),
        (["train"], "give a CONFIG file (e.g. experiments/configs/static.yaml) or settings with --set"),
        (["evolve"], "give --out DIR for a new run, or --resume DIR to continue one"),
        (["bench", "--dynamic", "standard", "--policy", "no-such-model.onnx", "--out", "out"],
         "--policy no-such-model.onnx: no such model file"),
        (["bench", "--policy", "no-such-model.onnx", "--out", "out"], "--policy, --instant and --replanners belong to"),
        (["bench", "--dynamic", "--instant", "--policy", "no-such-model.onnx", "--out", "out"],
         "--policy no-such-model.onnx:"),
    ],
)  # fmt: skip
def test_a_bad_option_is_refused_in_one_line_naming_it(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if args[0] == "train":
        pytest.importorskip("sb3_contrib")
    code, err = _refusal(args, capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_config_value_error_names_the_config_not_an_option(tmp_path, capsys):
    pytest.importorskip("sb3_contrib")
    config = tmp_path / "bad.yaml"
    config.write_text("timesteps: many\n")
    code, err = _refusal(["train", str(config)], capsys)
    assert code == 2 and "config timesteps='many': expected a number" in err and "--set" not in err, err


def test_serve_on_a_busy_port_is_one_line_before_it_says_it_listens(tmp_path, capsys):
    pytest.importorskip("fastapi")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _refusal(["serve", "--port", str(port), "--db", str(tmp_path / "shops.sqlite3")], capsys)
    assert code == 2 and f"--port {port}: cannot listen there" in err, err
    assert "listening" not in capsys.readouterr().out


def test_the_serve_socket_gives_connections_tcp_nodelay():
    """`serve` binds its socket itself; made without IPPROTO_TCP, asyncio left Nagle on for every
    connection and each answer of a keep-alive client waited ~40 ms for a delayed ACK (42 ms per
    /healthz against 1 ms in-process)."""
    import asyncio
    import socket

    from experiments.cli.serving import _listen

    sock = _listen("127.0.0.1", 0)
    port, seen = sock.getsockname()[1], []

    async def main() -> None:
        async def accepted(_reader, writer) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(main())
    assert seen and seen[0] != 0, "accepted connections have Nagle's algorithm on"


@pytest.mark.parametrize(("options", "environment", "message"), [
    (["--mqtt-username", "bridge"], {}, "--mqtt-username bridge: set its password in $SCHED_ENV_MQTT_PASSWORD"),
    ([], {"SCHED_ENV_MQTT_PASSWORD": "pw"}, "an MQTT password is given but no --mqtt-username"),
    (["--mqtt-username", "bridge", "--mqtt-password-file", "/nonexistent/pw"], {}, "--mqtt-password-file /nonexistent/pw:"),
    (["--mqtt-ca", "/nonexistent/ca.pem"], {}, "--mqtt-ca /nonexistent/ca.pem: no such file"),
    (["--mqtt-topic-root", "a/#"], {}, "--mqtt-topic-root 'a/#': give topic levels without wildcards"),
])  # fmt: skip
def test_serve_refuses_mqtt_credentials_it_cannot_use_in_one_line(tmp_path, capsys, monkeypatch, options, environment,
                                                                   message):  # fmt: skip
    """The broker password comes from the environment or a file, never the command line (issue 27, item 7)."""
    pytest.importorskip("fastapi")
    monkeypatch.delenv("SCHED_ENV_MQTT_PASSWORD", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    code, err = _refusal(
        ["serve", "--db", str(tmp_path / "shops.sqlite3"), "--mqtt", "localhost:1883", *options], capsys
    )
    assert code == 2 and message in err, err


def test_evolve_minutes_alone_is_a_run_of_that_many_minutes(tmp_path, monkeypatch):
    """`evolve --minutes 20` runs 20 minutes, not the recipe's 150 generations; --generations still bounds it."""
    import agents.evolve

    seen = []
    monkeypatch.setattr(agents.evolve, "train", lambda config, out, **_: seen.append(config) or tmp_path / "p.onnx")
    assert main(["evolve", "--out", str(tmp_path / "a"), "--minutes", "20"]) == 0
    assert main(["evolve", "--out", str(tmp_path / "b"), "--minutes", "20", "--generations", "40"]) == 0
    assert main(["evolve", "--out", str(tmp_path / "c")]) == 0
    assert [(c.minutes, c.generations) for c in seen] == [(20, 1_000_000), (20, 40), (30, 150)]
    assert main(["evolve", "--out", str(tmp_path / "d"), "--final-learning-rate", "0.001"]) == 0
    assert seen[-1].final_learning_rate == 0.001 and seen[-1].learning_rate == 0.01


def test_evolve_refuses_a_final_learning_rate_above_the_first(tmp_path, capsys):
    assert main(["evolve", "--out", str(tmp_path / "a"), "--final-learning-rate", "0.05"]) == 2
    assert "final_learning_rate must be > 0 and at most learning_rate (0.01), got 0.05" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evolve", "--out", str(tmp_path / "b"), "--final-learning-rate", "tiny"])
    assert "invalid float value: 'tiny'" in capsys.readouterr().err
