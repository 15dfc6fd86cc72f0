"""sched_env/render.py: Gantt charts a person can read."""

from __future__ import annotations

import numpy as np
import pytest

import instances
from sched_env import JobShopEnv
from sched_env.render import gantt_text


@pytest.fixture
def finished():
    env = JobShopEnv(instances.random_instance(5, 4, seed=1), action_set="non_delay")
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, _, done, _, info = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
    return env.instance, info["schedule"]


def test_text_gantt_has_one_row_per_machine_and_every_job(finished):
    instance, schedule = finished
    text = gantt_text(schedule, instance, width=60, color=False)
    rows = text.splitlines()
    assert len(rows) == 1 + instance.n_machines and f"makespan {schedule.makespan}" in rows[0]
    assert all(len(row) == len("M0  |") + 60 + 1 for row in rows[1:])
    assert set("01234") <= set("".join(rows[1:]))
    assert "\x1b[" in gantt_text(schedule, instance, color=True)


def test_png_gantt(tmp_path, finished):
    pytest.importorskip("matplotlib")
    from sched_env.render import gantt_rgb, save_gantt

    instance, schedule = finished
    path = save_gantt(schedule, tmp_path / "g.png", instance)
    assert path.read_bytes()[:4] == b"\x89PNG"
    image = gantt_rgb(schedule, instance)
    assert image.shape[2] == 3 and len(np.unique(image.reshape(-1, 3), axis=0)) > 6  # several job colours
