"""``BatchJobShopEnv``: N shops advanced by one compiled call per step, with thin adapters for
``gymnasium.vector.VectorEnv`` (here) and Stable-Baselines3's ``VecEnv`` (``sched_env.sb3``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from instances import JobShopInstance
from sched_env import _kernels as K
from sched_env.env import DEFAULT_ACTION_SET, DEFAULT_PLACEMENT, StaticShopOptions
from sched_env.schedule import Schedule
from sched_env.shop import (
    BatchShopEnv,
    InstanceSpec,
    check_rule_id,
)


class BatchJobShopEnv(StaticShopOptions, BatchShopEnv):
    """N independent job shops in arrays of shape ``(num_envs, ...)``; same semantics, options
    and observation as :class:`~sched_env.JobShopEnv`, stepped in parallel by one kernel call.

    ``step(actions)`` returns ``(obs, rewards, terminated, truncated, info)`` with batched
    arrays. Finished shops restart at once (same-step autoreset) and ``info`` follows
    ``gymnasium.vector``'s conventions: every key has one entry per shop and a boolean
    ``"_" + key`` mask of the shops it holds. ``info["final_obs"]`` (an object array) holds the
    last observation of each shop that finished, ``info["final_info"]`` its ``makespan`` and
    ``instance`` (:meth:`final_schedule` its schedule), and the keys of a reset info
    (``instance``, ``lower_bound``) describe the episodes that just began.
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
        reward_mode: str = "dense",
        strict: bool = False,
        instance_dir: str | os.PathLike | None = None,
        render_mode: str | None = None,
        seed: int | None = None,
        machine_rule: str | None = None,
        pair_actions: bool | None = None,
    ) -> None:
        self.render_mode = render_mode
        self._set_options(
            instance, max_jobs=max_jobs, max_machines=max_machines, max_ops=max_ops, placement=placement,
            action_set=action_set, reward_mode=reward_mode, strict=strict, instance_dir=instance_dir,
            machine_rule=machine_rule, pair_actions=pair_actions,
        )  # fmt: skip
        L = self.layout
        self.single_observation_space = self._static_observation_space()
        self.single_action_space = spaces.Discrete(self.n_actions)
        self._init_batch(num_envs, seed, K.N_FEATURES, L.state_length)
        self._insts = np.zeros((self.num_envs, L.instance_length), dtype=np.int64)
        self._job_masks = np.zeros((self.num_envs, L.J), dtype=np.int8) if self.pair_actions else self._masks
        self._pair_features = np.zeros((self.num_envs, L.J, L.M, K.N_PAIR_FEATURES), dtype=np.float32)
        self._final_pair_features = np.zeros_like(self._pair_features)

    # ------------------------------------------------------------------ kernel calls
    def _load(self, i: int, instance: JobShopInstance) -> None:
        if instance is not self._items[i]:
            self.layout.encode(instance, self._insts[i], self._machine_rule)
            self._items[i] = instance

    def _reset_rows(self, rows: np.ndarray) -> None:
        L = self.layout
        if self.pair_actions:
            K.for_batch(K.reset_batch_pairs, self.num_envs)(
                self._insts, self._states, rows, self._placement, self._action_set, self._job_masks, self._masks,
                self._features, self._pair_features, L.J, L.M, L.O,
            )  # fmt: skip
            return
        K.for_batch(K.reset_batch, self.num_envs)(
            self._insts, self._states, rows, self._placement, self._action_set, self._masks, self._features,
            L.J, L.M, L.O,
        )  # fmt: skip

    def _kernel_step(self, actions: np.ndarray) -> None:
        L = self.layout
        if self.pair_actions:
            K.for_batch(K.step_batch_pairs, self.num_envs)(
                self._insts, self._states, actions, self._placement, self._action_set, self._reward, True,
                self._job_masks, self._masks, self._features, self._pair_features, self._rewards, self._dones,
                self._invalids, self._final_masks, self._final_features, self._final_pair_features, self._final_states,
                L.J, L.M, L.O,
            )  # fmt: skip
            return
        K.for_batch(K.step_batch, self.num_envs)(
            self._insts, self._states, actions, self._placement, self._action_set, self._reward, True,
            self._masks, self._features, self._rewards, self._dones, self._invalids,
            self._final_masks, self._final_features, self._final_states, L.J, L.M, L.O,
        )  # fmt: skip

    def _reset_values(self, rows: np.ndarray) -> dict[str, Any]:
        return {
            "instance": [self._items[i].name for i in rows.tolist()],
            "lower_bound": self._states[rows, K.ST.lower_bound],
        }

    def _final_values(self, rows: np.ndarray) -> dict[str, Any]:
        return {
            "makespan": self._final_states[rows, K.ST.makespan],
            "instance": [self._final_items[i].name for i in rows.tolist()],
        }

    # ------------------------------------------------------------------ shop access
    def instance(self, index: int) -> JobShopInstance | None:
        return self._items[index]

    def schedule(self, index: int) -> Schedule:
        """The schedule being built in shop ``index``."""
        instance = self._items[index]
        if instance is None:
            raise ValueError("call reset() first")
        return self.layout.schedule(instance, self._states[index])

    def final_schedule(self, index: int) -> Schedule:
        """The complete schedule of the episode that shop ``index`` finished most recently
        (valid until that shop finishes again)."""
        return self.layout.schedule(self._final_item(index), self._final_states[index])

    def makespans(self) -> np.ndarray:
        return self._states[:, K.ST.makespan].copy()

    def rule_choices(self, rule_id: int) -> np.ndarray:
        """The allowed job the dispatching rule with kernel id ``rule_id`` picks now, per shop
        (the batched :meth:`JobShopEnv.rule_choice`; the random rule takes the first allowed job)."""
        rule_id = check_rule_id(rule_id)
        L = self.layout
        jobs = np.array(
            [K.choose_by_rule(self._insts[i], self._states[i], self._job_masks[i], rule_id, 0.0, L.J, L.M, L.O)
             for i in range(self.num_envs)], dtype=np.int64,
        )  # fmt: skip
        if not self.pair_actions:
            return jobs
        machines = self._states[np.arange(self.num_envs), self.layout.state_offsets.job_machine + np.maximum(jobs, 0)]
        return np.where(jobs >= 0, jobs * L.M + machines, jobs)


class ShopVectorEnv(VectorEnv):
    """``gymnasium.vector.VectorEnv`` over a batched shop env (same-step autoreset): the batch
    already speaks gymnasium's vector conventions, so this only declares the spaces."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["ansi"]}

    def __init__(self, batch: BatchShopEnv) -> None:
        self.batch = batch
        self.num_envs = batch.num_envs
        self.render_mode = batch.render_mode
        self.single_observation_space = batch.single_observation_space
        self.single_action_space = batch.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.batch.reset(seed=seed, options=options)

    def step(self, actions):
        return self.batch.step(actions)

    def action_masks(self) -> np.ndarray:
        return self.batch.action_masks()

    def render(self):
        """Text Gantt charts of every shop (``render_mode="ansi"``), else None."""
        if self.render_mode != "ansi":
            return None
        from sched_env.render import gantt_text

        return tuple(
            gantt_text(self.batch.schedule(i), self.batch.instance(i), color=False) for i in range(self.num_envs)
        )


class JobShopVectorEnv(ShopVectorEnv):
    """The ``vector_entry_point`` of ``sched_env/JobShop-v0``:
    ``gymnasium.make_vec("sched_env/JobShop-v0", num_envs=64, instance="ta01")``."""

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(BatchJobShopEnv(num_envs, **kwargs))


def make_vector_env(num_envs: int = 1, **kwargs: Any) -> JobShopVectorEnv:
    """The ``vector_entry_point`` of the registered ids."""
    return JobShopVectorEnv(num_envs, **kwargs)


def make_dynamic_vector_env(num_envs: int = 1, **kwargs: Any) -> ShopVectorEnv:
    """The ``vector_entry_point`` of ``sched_env/DynamicJobShop-v0``: N dynamic shops stepped
    by one kernel call (:class:`~sched_env.dynamic.BatchDynamicJobShopEnv`)."""
    from sched_env.dynamic import BatchDynamicJobShopEnv

    return ShopVectorEnv(BatchDynamicJobShopEnv(num_envs, **kwargs))
