"""Stable-Baselines3 ``VecEnv`` over :class:`~sched_env.vector.BatchJobShopEnv`.

Import this module only when SB3 is installed (``pip install 'sched-env[rl]'``)::

    from sb3_contrib import MaskablePPO
    from sched_env.sb3 import JobShopVecEnv
    env = JobShopVecEnv(64, instance=RandomInstanceGenerator(10, 10), seed=0)
    MaskablePPO("MultiInputPolicy", env).learn(100_000)
    env = DynamicJobShopVecEnv(64, scenario=ScenarioGenerator(10), seed=0)  # the dynamic shop

All N shops step in one compiled call; ``env_method("action_masks")`` returns the N masks
at once, which is how sb3-contrib's MaskablePPO asks for them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from sched_env.vector import BatchJobShopEnv

#: Batch methods that take a shop index: ``get_attr``/``env_method`` call them once per env.
PER_SHOP = ("instance", "schedule", "final_schedule")


class JobShopVecEnv(VecEnv):
    """SB3 ``VecEnv`` adapter: fills ``terminal_observation`` and answers the mask protocol.
    A finished episode's info has ``final_keys`` (the makespan here) next to it, and the
    ``episode`` statistics (return ``r``, length ``l``, seconds ``t``) that SB3's ``VecMonitor``
    would add, so ``rollout/ep_rew_mean`` is logged without wrapping the env."""

    final_keys: tuple[str, ...] = ("makespan",)

    def __init__(self, num_envs: int = 8, seed: int | None = None, **kwargs: Any) -> None:
        self.batch = self._make_batch(num_envs, seed=seed, **kwargs)
        super().__init__(self.batch.num_envs, self.batch.single_observation_space, self.batch.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = seed
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._started = time.perf_counter()

    def reset(self):
        obs, _ = self.batch.reset(seed=self._seed)
        self._seed = None  # seed once; later resets continue the streams
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._returns[:], self._lengths[:] = 0.0, 0
        return obs

    def seed(self, seed: int | None = None):
        self._seed = seed
        return [seed] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, _truncated, info = self.batch.step(self._actions)
        self._returns += rewards
        self._lengths += 1
        invalid = info["invalid_action"]
        infos: list[dict[str, Any]] = [{"invalid_action": bool(invalid[i])} for i in range(self.num_envs)]
        if "final_obs" in info:
            final = info["final_info"]
            for i in np.flatnonzero(info["_final_obs"]).tolist():
                infos[i]["terminal_observation"] = info["final_obs"][i]
                infos[i]["TimeLimit.truncated"] = False
                for key in self.final_keys:
                    infos[i][key] = final[key][i].item()
        for i in np.flatnonzero(terminated).tolist():
            elapsed = round(time.perf_counter() - self._started, 6)
            infos[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": elapsed}
            self._returns[i], self._lengths[i] = 0.0, 0
        return obs, rewards.astype(np.float32), terminated, infos

    @staticmethod
    def _make_batch(num_envs: int, **kwargs: Any):
        return BatchJobShopEnv(num_envs, **kwargs)

    def close(self) -> None:
        self.batch.close()

    def action_masks(self) -> np.ndarray:
        return self.batch.action_masks()

    # ------------------------------------------------------------------ attribute protocol
    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def has_attr(self, attr_name: str) -> bool:
        return hasattr(self.batch, attr_name)

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """One value per env: the batch's per-shop value where it has one (``instance``,
        ``schedule``, ...), else the batch-wide attribute."""
        value = getattr(self.batch, attr_name)
        if callable(value) and attr_name in PER_SHOP:
            return [value(i) for i in self._indices(indices)]
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.batch, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        """Call a method once per env: ``action_masks`` from one array, per-shop methods
        (``schedule``, ``instance``, ...) with the shop's index first."""
        rows = self._indices(indices)
        if method_name == "action_masks":  # all N masks from one array, no per-env calls
            return list(self.batch.action_masks()[rows])
        method = getattr(self.batch, method_name)
        if method_name in PER_SHOP:
            return [method(i, *method_args, **method_kwargs) for i in rows]
        raise AttributeError(
            f"{method_name!r} is a method of the whole batch, not of one env; call env.batch.{method_name}() instead"
        )

    def env_is_wrapped(self, wrapper_class, indices=None) -> Sequence[bool]:
        return [False for _ in self._indices(indices)]


class DynamicJobShopVecEnv(JobShopVecEnv):
    """The same adapter over :class:`~sched_env.dynamic.BatchDynamicJobShopEnv`: N dynamic shops
    stepped by one kernel call; finished episodes report makespan, weighted tardiness and flow."""

    final_keys = ("makespan", "total_weighted_tardiness", "mean_flow_time")

    @staticmethod
    def _make_batch(num_envs: int, **kwargs: Any):
        from sched_env.dynamic import BatchDynamicJobShopEnv

        return BatchDynamicJobShopEnv(num_envs, **kwargs)
