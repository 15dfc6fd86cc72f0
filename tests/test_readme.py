"""Every Python snippet of the README runs on its own (a fresh namespace each: no name from an
earlier snippet), with training and search budgets shortened so the suite stays fast."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
#: What a test may shorten: budgets and sizes, never what the snippet does.
QUICKER = [
    (r"\.learn\([\d_]+\)", ".learn(256)"),
    (r"JobShopVecEnv\(64,", "JobShopVecEnv(4,"),
    (r'"(cpsat|tabu|hybrid):10', r'"\1:0.5'),
    (r"budget_s=5\b", "budget_s=1"),
    (r"time_limit_s=10\b", "time_limit_s=1"),
    (r'"tabu:1"', '"tabu:0.2"'),
]


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 5


@pytest.fixture(scope="module")
def live_service():
    """A real server on a free port, for the snippets that talk to `sched-env serve`."""
    pytest.importorskip("fastapi")
    pytest.importorskip("onnxruntime")
    from service.app import Settings
    from tests.test_service import LiveServer

    live = LiveServer(Settings(workers=2, queue=8))
    yield live
    live.stop()


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_each_readme_snippet_runs_alone(index, request):
    code = SNIPPETS[index]
    if "SchedEnvClient(" in code:  # a worked session: against a real server, on its port
        code = code.replace("http://127.0.0.1:8000", request.getfixturevalue("live_service").url)
    if "sb3_contrib" in code or "MaskablePPO" in code:
        pytest.importorskip("sb3_contrib")
    if "cpsat" in code:
        pytest.importorskip("ortools")
    for pattern, replacement in QUICKER:
        code = re.sub(pattern, replacement, code)
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": "__readme__"})
