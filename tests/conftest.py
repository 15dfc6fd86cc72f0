"""Shared fixtures: the benchmark folder beside the checkout (skipped where absent) and tiny instances."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from instances import JobShopInstance

REPO = Path(__file__).resolve().parents[1]
JSPLIB = Path(os.environ.get("SCHED_ENV_JSPLIB", REPO.parent / "shared" / "instances" / "jsplib"))


def jsplib_available() -> bool:
    return (JSPLIB / "bounds.json").is_file()


needs_jsplib = pytest.mark.skipif(
    not jsplib_available(),
    reason=f"JSPLIB benchmark files not found at {JSPLIB}: these tests compare the bundled instances with them;"
    " set SCHED_ENV_JSPLIB to a folder of JSPLIB instance files and their bounds.json to run them",
)


@pytest.fixture(scope="session")
def jsplib() -> Path:
    if not jsplib_available():
        pytest.skip(f"JSPLIB benchmark files not found at {JSPLIB}; set SCHED_ENV_JSPLIB to a folder of JSPLIB"
                    " instance files and their bounds.json to run this")  # fmt: skip
    return JSPLIB


FJSP = Path(os.environ.get("SCHED_ENV_FJSP", REPO.parent / "shared" / "instances" / "fjsp"))


@pytest.fixture(scope="session")
def fjsp() -> Path:
    """The shared flexible benchmark tree (family folders of .fjs files, bounds.csv, sd1/)."""
    if not (FJSP / "bounds.csv").is_file():
        pytest.skip(f"flexible benchmark files not found at {FJSP}; set SCHED_ENV_FJSP to a folder holding the"
                    " family folders of .fjs files, bounds.csv and sd1/ to run this")  # fmt: skip
    return FJSP


@pytest.fixture
def flexible_tiny() -> JobShopInstance:
    """3 jobs x 3 machines with alternatives, small enough to check by hand."""
    return JobShopInstance.from_alternatives(
        [
            [[(0, 3), (1, 5)], [(1, 2)], [(2, 2), (0, 4)]],
            [[(1, 4)], [(0, 2), (2, 1)]],
            [[(2, 3), (0, 3), (1, 3)], [(0, 1)], [(1, 2), (2, 5)]],
        ],
        name="flexible_tiny",
    )


@pytest.fixture(scope="session")
def published_bounds(jsplib) -> dict:
    return json.loads((jsplib / "bounds.json").read_text())


@pytest.fixture
def tiny() -> JobShopInstance:
    """3 jobs x 3 machines, small enough to check by hand (a feasible schedule is in test_schedule)."""
    return JobShopInstance.from_jobs(
        [[(0, 3), (1, 2), (2, 2)], [(0, 2), (2, 1), (1, 4)], [(1, 4), (2, 3), (0, 1)]], name="tiny"
    )


@pytest.fixture(scope="session")
def ft06(jsplib):
    import instances

    return instances.load("ft06", directory=jsplib)


THIRD_PARTY = '''
"""A decider from another package: schedules jobs in reverse index order, then by a rule."""
import dataclasses
from baselines import deciders


@dataclasses.dataclass
class Reverse:
    spec: str

    def solve(self, problem, *, budget_s=None, seed=0, hint=None):
        result = deciders.solve(problem, "lpt", seed=seed)
        return dataclasses.replace(result, method=self.spec, params={"from": "thirdparty"})


def factory(spec, **options):
    return Reverse(spec.text)


@dataclasses.dataclass
class Quick:
    """A dispatcher: the lowest-index allowed job, online; it declares what it is."""
    spec: str
    dispatches = True
    time_limit_s = None

    def choose(self, batch, observation):
        return observation["action_mask"][:, : observation["jobs"].shape[1]].argmax(-1)

    def solve(self, problem, *, budget_s=None, seed=0, hint=None):
        result = deciders.solve(problem, "fifo", seed=seed)
        return dataclasses.replace(result, method=self.spec)


@dataclasses.dataclass
class Slowpoke:
    """A planner with its own limit that takes the host's models."""
    spec: str
    time_limit_s: float = 0.2
    models: dict = dataclasses.field(default_factory=dict)

    def use(self, models):
        self.models = dict(models)

    def solve(self, problem, *, budget_s=None, seed=0, hint=None):
        result = deciders.solve(problem, "mwkr" if hasattr(problem, "n_operations") else "atc", seed=seed)
        return dataclasses.replace(result, method=self.spec, params={"models": sorted(self.models)})


def quick(spec, **options):
    return Quick(spec.text)


def slowpoke(spec, **options):
    return Slowpoke(spec.text, float(spec.args[0]) if spec.args else 0.2)
'''


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """Install a package the way pip would: a module and a dist-info with an entry point."""
    (tmp_path / "thirdparty_decider.py").write_text(textwrap.dedent(THIRD_PARTY))
    info = tmp_path / "thirdparty_decider-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-decider\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[sched_env.deciders]\nreverse = thirdparty_decider:factory\nquick = thirdparty_decider:quick\n"
        "slowpoke = thirdparty_decider:slowpoke\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    from baselines import deciders

    monkeypatch.setattr(deciders, "_entry_points_loaded", False)
    yield tmp_path
    for name in ("reverse", "quick", "slowpoke"):
        deciders._REGISTRY.pop(name, None)
