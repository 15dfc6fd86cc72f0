"""Ctrl-C stops every long command within a second or two, keeps what is done and leaves no worker
behind: the searches (tabu, CP-SAT) return their best plan so far, benches write their completed runs."""

from __future__ import annotations

import _thread
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import instances
from baselines import deciders
from sched_env.schedule import validate_schedule

REPO = Path(__file__).resolve().parents[1]


def interrupt_after(seconds: float) -> threading.Timer:
    """Ctrl-C to this process's main thread after ``seconds``."""
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


@pytest.mark.parametrize("method", ["tabu:60", "cpsat:60"])
def test_a_search_stops_at_ctrl_c_and_keeps_its_best_plan(method):
    if method.startswith("cpsat"):
        pytest.importorskip("ortools")
    instance = instances.load("ta21")
    decider = deciders.make(method)  # imports and compiling before the clock
    deciders.solve(instance, "mwkr")
    interrupt_after(1.0)
    started = time.perf_counter()
    with pytest.raises(deciders.SolveInterrupted) as stopped:
        deciders.solve(instance, decider)
    assert time.perf_counter() - started < 15, "Ctrl-C must stop the search within seconds, not at its 60 s limit"
    result = stopped.value.result
    assert result.params["interrupted"] and result.schedule is not None
    validate_schedule(instance, result.schedule)
    assert result.objective <= deciders.solve(instance, "mwkr").objective * 1.5


def _group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class _OutputReader(threading.Thread):
    """Collects a process's output as it comes, so a test can wait for a line without blocking on it."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream, self.chunks = stream, []

    def run(self) -> None:
        for chunk in iter(lambda: os.read(self.stream.fileno(), 4096), b""):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


def test_a_bench_interrupted_writes_its_completed_runs_and_leaves_no_worker(tmp_path):
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "experiments.cli", "bench", "--instances", "ta21,ta22", "--methods",
               "mwkr,cpsat:120", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    reader = _OutputReader(process.stdout)
    reader.start()
    deadline = time.time() + 180  # imports, the worker and numba's cache load slowly on a busy machine
    while not re.search(r"\b[1-3]/4\b", reader.text()) and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # until the progress bar shows a rule run done; CP-SAT then runs its 120 s
    if process.poll() is not None or not re.search(r"\b[1-3]/4\b", reader.text()):
        with contextlib.suppress(ProcessLookupError):  # leave no 120 s CP-SAT worker behind a failed test
            os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"the bench ended or showed no finished run in 180 s:\n{reader.text()}")
    process.send_signal(signal.SIGINT)  # to the process alone: its worker never sees the signal
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("the bench did not stop within 30 s of Ctrl-C") from None
    reader.join(timeout=10)
    output = reader.text()
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output, output
    rows = (out / "benchmark.csv").read_text().splitlines()
    assert len(rows) >= 2 and any(",mwkr," in row for row in rows), rows  # the rule runs completed and were kept
    deadline = time.time() + 10
    while not _group_is_gone(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _group_is_gone(process.pid), "a worker process outlived the bench"
