"""Shared fixtures: the benchmark folder beside the checkout (skipped where absent) and tiny instances."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from instances import JobShopInstance

REPO = Path(__file__).resolve().parents[1]
JSPLIB = Path(os.environ.get("SCHED_ENV_JSPLIB", REPO.parent / "shared" / "instances" / "jsplib"))


def jsplib_available() -> bool:
    return (JSPLIB / "bounds.json").is_file()


needs_jsplib = pytest.mark.skipif(
    not jsplib_available(),
    reason=f"benchmark files not found at {JSPLIB} (the ../shared folder of the development checkout);"
    " set SCHED_ENV_JSPLIB to a JSPLIB folder with bounds.json to run these",
)


@pytest.fixture(scope="session")
def jsplib() -> Path:
    if not jsplib_available():
        pytest.skip(f"benchmark files not found at {JSPLIB}; set SCHED_ENV_JSPLIB")
    return JSPLIB


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
