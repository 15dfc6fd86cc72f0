"""sched_env/snapshot.py: what a planner knows of a running dynamic shop."""

from __future__ import annotations

import numpy as np
import pytest

from instances import InvalidScenarioError
from sched_env.dynamic import DynamicJobShopEnv
from sched_env.events import MAINTENANCE, ScenarioGenerator
from sched_env.snapshot import ShopState
from tests.helpers import noisy_shop


@pytest.mark.parametrize("interruption", ["resume", "restart"])
def test_snapshots_agree_with_what_happens_next(interruption):
    for seed in range(8):
        env, obs, rng = noisy_shop(seed, interruption, (2, 300, 350))
        snapshots, done = [], False
        while not done:
            if rng.random() < 0.2:
                snapshots.append(env.snapshot())
            obs, _, done, _, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        final = info["schedule"]
        rows = {(int(j), int(k)): (int(s), int(e)) for j, k, s, e in zip(final.job, final.op, final.start, final.end)}
        for state in snapshots:
            assert ShopState.from_json(state.to_json()) == state
            assert (state.jobs.release_dates <= state.time).all()
            ids = state.job_ids
            for job, op, _machine, start, end in state.done.tolist():  # done work never changes
                assert rows[int(ids[job]), op] == (start, end) and end <= state.time
            for job, op, _machine, start, expected in state.running.tolist():
                assert start <= state.time <= expected
                assert state.jobs.durations[job, op] + start <= expected or expected == state.time
            for _machine, start, end, kind in state.downtimes.tolist():  # only what is known now
                assert end > state.time and (start <= state.time or kind == MAINTENANCE)
            assert len(state.done) + len(state.running) + len(state.waiting()) == state.jobs.n_operations


def test_malformed_state_is_a_clear_error():
    env = DynamicJobShopEnv(ScenarioGenerator())
    env.reset(seed=0)
    data = env.snapshot().to_dict()
    del data["jobs"]
    with pytest.raises(InvalidScenarioError, match="malformed shop state"):
        ShopState.from_dict(data)
    with pytest.raises(InvalidScenarioError, match="not valid JSON"):
        ShopState.from_json("[")
