"""``BatchJobShopEnv``: N shops advanced by one compiled call per step, with thin adapters for
``gymnasium.vector.VectorEnv`` (here) and Stable-Baselines3's ``VecEnv`` (``sched_env.sb3``)."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from instances import InvalidActionError, JobShopInstance
from sched_env import _kernels as K
from sched_env.env import DEFAULT_ACTION_SET, DEFAULT_PLACEMENT, observation_space
from sched_env.schedule import Schedule
from sched_env.shop import InstanceSource, InstanceSpec, ShopOptions, final_info


class BatchJobShopEnv(ShopOptions):
    """N independent job shops in arrays of shape ``(num_envs, ...)``; same semantics, options
    and observation as :class:`~sched_env.JobShopEnv`, stepped in parallel by one kernel call.

    ``step(actions)`` returns ``(obs, rewards, terminated, truncated, info)`` with batched
    arrays. Finished shops restart at once (same-step autoreset): ``info["final_index"]`` lists
    them, ``info["final_obs"]`` holds their last observations (one row each, in that order),
    ``info["final_makespan"]`` their makespans and :meth:`final_schedule` their schedules;
    ``info["_final"]`` marks them in a boolean array of all shops.
    Each shop draws its instances from its own seeded generator, so results do not depend on
    how many shops share the batch.
    """

    def __init__(
        self,
        num_envs: int,
        instance: InstanceSpec = None,
        *,
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        placement: str = DEFAULT_PLACEMENT,
        action_set: str = DEFAULT_ACTION_SET,
        reward: str = "dense",
        strict: bool = False,
        instance_dir: str | os.PathLike | None = None,
        seed: int | None = None,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.render_mode = None
        self._set_options(
            instance, max_jobs=max_jobs, max_machines=max_machines, max_ops=max_ops, placement=placement,
            action_set=action_set, reward=reward, strict=strict, instance_dir=instance_dir,
        )  # fmt: skip
        self.single_observation_space = observation_space(self.layout)
        self.single_action_space = spaces.Discrete(self.layout.J)
        N, J = self.num_envs, self.layout.J
        self._instance_rows = np.zeros((N, self.layout.instance_length), dtype=np.int64)
        self._state_rows = np.zeros((N, self.layout.state_length), dtype=np.int64)
        self._masks = np.zeros((N, J), dtype=np.int8)
        self._features = np.zeros((N, J, K.N_FEATURES), dtype=np.float32)
        self._final_masks = np.zeros_like(self._masks)
        self._final_features = np.zeros_like(self._features)
        self._final_states = np.zeros_like(self._state_rows)
        self._rewards = np.zeros(N, dtype=np.float64)
        self._dones = np.zeros(N, dtype=np.bool_)
        self._invalids = np.zeros(N, dtype=np.bool_)
        self._instances: list[JobShopInstance | None] = [None] * N
        self._final_instances: list[JobShopInstance | None] = [None] * N
        self._all = np.arange(N, dtype=np.int64)
        self._rngs = self._make_rngs(seed)

    def _make_rngs(self, seed: int | None) -> list[np.random.Generator]:
        children = np.random.SeedSequence(seed).spawn(self.num_envs)
        return [np.random.default_rng(child) for child in children]

    # ------------------------------------------------------------------ core API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every shop; ``seed`` reseeds the per-shop instance generators."""
        if seed is not None:
            self._rngs = self._make_rngs(seed)
        chosen = (options or {}).get("instance")
        source = InstanceSource(chosen) if chosen is not None else self._source
        for i in range(self.num_envs):
            self._load(i, source.draw(self._rngs[i]))
        self._reset_rows(self._all)
        return self._observation(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions (one per shop), got {actions.shape[0]}")
        if self.strict:
            self._check_actions(actions)
        L = self.layout
        K.step_batch(
            self._instance_rows, self._state_rows, actions, self._placement, self._action_set, self._reward, True,
            self._masks, self._features, self._rewards, self._dones, self._invalids,
            self._final_masks, self._final_features, self._final_states, L.J, L.M, L.O,
        )  # fmt: skip
        info: dict[str, Any] = {"invalid_action": self._invalids.copy()}
        if self._dones.any():
            info.update(final_info(self._dones, self._final_features, self._final_masks))
            done = info["final_index"]
            info["final_makespan"] = self._final_states[done, K.ST_MAKESPAN]
            for i in done.tolist():
                self._final_instances[i] = self._instances[i]
            if self._source.changes:  # draw new instances for the shops that finished
                for i in done.tolist():
                    self._load(i, self._source.draw(self._rngs[i]))
                self._reset_rows(done.astype(np.int64))
        return self._observation(), self._rewards.copy(), self._dones.copy(), np.zeros(self.num_envs, dtype=bool), info

    def action_masks(self) -> np.ndarray:
        """``(num_envs, max_jobs)`` boolean masks of the allowed actions."""
        return self._masks.astype(bool)

    # ------------------------------------------------------------------ shop access
    def instance(self, index: int) -> JobShopInstance | None:
        return self._instances[index]

    def schedule(self, index: int) -> Schedule:
        """The schedule being built in shop ``index``."""
        instance = self._instances[index]
        if instance is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self.layout.schedule(instance, self._state_rows[index])

    def final_schedule(self, index: int) -> Schedule:
        """The complete schedule of the episode that shop ``index`` finished most recently
        (valid until that shop finishes again)."""
        instance = self._final_instances[index]
        if instance is None:
            raise ValueError(f"shop {index} has not finished an episode yet")
        return self.layout.schedule(instance, self._final_states[index])

    def makespans(self) -> np.ndarray:
        return self._state_rows[:, K.ST_MAKESPAN].copy()

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ internals
    def _load(self, i: int, instance: JobShopInstance) -> None:
        if instance is not self._instances[i]:
            self.layout.encode(instance, self._instance_rows[i])
            self._instances[i] = instance

    def _reset_rows(self, indices: np.ndarray) -> None:
        L = self.layout
        K.reset_batch(
            self._instance_rows, self._state_rows, indices, self._placement, self._action_set,
            self._masks, self._features, L.J, L.M, L.O,
        )  # fmt: skip

    def _observation(self) -> dict[str, np.ndarray]:
        return {"jobs": self._features.copy(), "action_mask": self._masks.copy()}

    def _check_actions(self, actions: np.ndarray) -> None:
        J = self.layout.J
        inside = (actions >= 0) & (actions < J)
        allowed = np.zeros(self.num_envs, dtype=bool)
        allowed[inside] = self._masks[np.flatnonzero(inside), actions[inside]] != 0
        if not allowed.all():
            i = int(np.argmin(allowed))
            raise InvalidActionError(
                f"shop {i}: action {actions[i]} is not allowed now; allowed jobs: {np.flatnonzero(self._masks[i]).tolist()}"
            )


class JobShopVectorEnv(VectorEnv):
    """``gymnasium.vector.VectorEnv`` over :class:`BatchJobShopEnv` (same-step autoreset).

    This is the ``vector_entry_point`` of ``sched_env/JobShop-v0``:
    ``gymnasium.make_vec("sched_env/JobShop-v0", num_envs=64, instance="ta01")``.
    When a shop finishes, ``info["final_obs"]`` holds its last observation (an object array,
    ``None`` for shops that did not finish; mask in ``info["_final_obs"]``)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        kwargs.pop("render_mode", None)
        self.batch = BatchJobShopEnv(num_envs, **kwargs)
        self.num_envs = self.batch.num_envs
        self.single_observation_space = self.batch.single_observation_space
        self.single_action_space = self.batch.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.batch.reset(seed=seed, options=options)

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.batch.step(actions)
        if "final_obs" in info:
            final = np.full(self.num_envs, None, dtype=object)
            for row, i in enumerate(info.pop("final_index").tolist()):
                final[i] = {key: value[row] for key, value in info["final_obs"].items()}
            info["final_obs"] = final
            info["_final_obs"] = info.pop("_final")
        return obs, rewards, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.batch.action_masks()


def make_vector_env(num_envs: int = 1, **kwargs: Any) -> JobShopVectorEnv:
    """The ``vector_entry_point`` of the registered ids."""
    return JobShopVectorEnv(num_envs, **kwargs)
