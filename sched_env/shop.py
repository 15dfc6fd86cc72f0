"""The env core: what the static and dynamic, single and batched envs share.

* option names and their kernel constants, checked in one place;
* :class:`Source`: where instances or scenarios come from (one, a list, a catalogue name, a
  generator), with the largest sizes it produces;
* :class:`ShopLayout`: the padded sizes, the size check at construction, named views of the
  kernel rows (generated from the field tables of ``sched_env._kernels``);
* :class:`SingleShopEnv` and :class:`BatchShopEnv`: reset with per-shop seeded streams,
  the strict action check, batch buffers, and same-step autoreset whose ``info`` follows
  ``gymnasium.vector``'s conventions (one entry per env, ``_key`` masks, ``final_obs``,
  ``final_info``). The four env classes only say how to encode an item and call the kernels.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import instances
from instances import InvalidActionError, InvalidInstanceError, JobShopInstance, RandomInstanceGenerator
from sched_env import _kernels as K
from sched_env.schedule import Schedule

# Option name -> kernel constant, as a Python int: numba's dispatcher types a numpy scalar argument
# on a slower path than an int, and these go into every step.
PLACEMENTS = {"active": int(K.PLACEMENT_ACTIVE), "append": int(K.PLACEMENT_APPEND)}
ACTION_SETS = {
    "any": int(K.ACTIONS_ANY),
    "giffler_thompson": int(K.ACTIONS_GT),
    "non_delay": int(K.ACTIONS_NON_DELAY),
}
REWARD_MODES = {"dense": int(K.REWARD_DENSE), "sparse": int(K.REWARD_SPARSE)}
#: Column names of the per-job feature matrix, in order (see ``JobShopEnv``).
FEATURE_NAMES = K.FEATURE_NAMES

InstanceSpec = (
    JobShopInstance | str | os.PathLike | Sequence[JobShopInstance | str] | Callable[..., JobShopInstance] | None
)


def option(value: str, choices: dict[str, int], what: str) -> int:
    """Map an option name to its kernel constant, or say which names are valid."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return choices[value]


def check_rule_id(rule_id: int) -> int:
    """A kernel rule id, or a clear error naming the rules (ids are ``K.RULE.<name>``)."""
    if not 0 <= int(rule_id) < len(K.RULE_NAMES):
        raise ValueError(f"unknown rule id {rule_id}; ids are K.RULE.<name> for {', '.join(K.RULE_NAMES)}")
    return int(rule_id)


class Source:
    """Where a shop's problems come from: fixed items (one drawn per reset) or a generator
    ``gen(rng) -> item`` (a new one per reset). ``sizes(item)`` gives (jobs, machines, ops)."""

    def __init__(self, fixed: list, generator: Callable | None, item_type: type, error: type, what: str) -> None:
        self.fixed, self.generator = fixed, generator
        self.item_type, self.error, self.what = item_type, error, what

    @classmethod
    def of_instances(cls, spec: InstanceSpec, *, directory: str | os.PathLike | None = None) -> Source:
        """One instance, a catalogue name or file, a list of those, or a generator."""
        if spec is None:
            spec = RandomInstanceGenerator(10, 10)
        fixed, generator = [], None
        if isinstance(spec, JobShopInstance):
            fixed = [spec]
        elif isinstance(spec, (str, os.PathLike)):
            fixed = [instances.load(spec, directory=directory)]
        elif callable(spec):
            generator = spec
        elif isinstance(spec, Sequence) and len(spec) > 0:
            fixed = [i if isinstance(i, JobShopInstance) else instances.load(i, directory=directory) for i in spec]
        else:
            raise InvalidInstanceError(
                "instance must be a JobShopInstance, a catalogue name or file, a non-empty list of"
                f" those, or a generator callable(rng) -> JobShopInstance; got {spec!r}"
            )
        return cls(fixed, generator, JobShopInstance, InvalidInstanceError, "instance")

    @staticmethod
    def sizes(item: Any) -> tuple[int, int, int]:
        jobs = item if isinstance(item, JobShopInstance) else item.jobs
        return jobs.n_jobs, jobs.n_machines, jobs.max_ops

    def limits(self) -> tuple[int | None, int | None, int | None]:
        """Largest (jobs, machines, ops per job) this source produces, None where unknown."""
        if self.fixed:
            sizes = np.array([self.sizes(item) for item in self.fixed])
            return tuple(int(v) for v in sizes.max(axis=0))  # type: ignore[return-value]
        jobs = getattr(self.generator, "max_jobs", None)
        machines = getattr(self.generator, "max_machines", None)
        return jobs, machines, getattr(self.generator, "max_ops", machines)

    @property
    def flexible(self) -> bool:
        """True when some item may be a flexible instance (a generator says so with ``flexible = True``)."""
        if self.generator is not None:
            return bool(getattr(self.generator, "flexible", False))
        return any(getattr(item, "is_flexible", False) for item in self.fixed)

    @property
    def changes(self) -> bool:
        """True when different resets can give different items."""
        return self.generator is not None or len(self.fixed) > 1

    def draw(self, rng: np.random.Generator) -> Any:
        if self.generator is not None:
            item = self.generator(rng)
            if not isinstance(item, self.item_type):
                raise self.error(
                    f"the {self.what} generator returned {type(item).__name__}, not a {self.item_type.__name__}"
                )
            return item
        return self.fixed[0] if len(self.fixed) == 1 else self.fixed[int(rng.integers(len(self.fixed)))]


@dataclass(frozen=True)
class ShopLayout:
    """Padded sizes of a shop's flat rows: J jobs (slots, in the dynamic shop), M machines,
    O operations per job; the dynamic shop adds D downtime windows and S stream jobs."""

    J: int
    M: int
    O: int  # noqa: E741
    D: int = 0
    S: int = 0
    dynamic: bool = False
    flexible: bool = False  # rows carry a (J*O, M) table of alternative durations

    @classmethod
    def for_source(
        cls,
        source: Source,
        max_jobs: int | None,
        max_machines: int | None,
        max_ops: int | None,
        *,
        window: bool = False,
    ) -> ShopLayout:
        """The padded sizes for ``source``, checked now (not at the first reset). With
        ``window`` (the dynamic shop) ``max_jobs`` is a window of job slots, which may be
        smaller than a scenario's jobs (see :func:`default_window`) but not than its machines."""
        jobs, machines, ops = source.limits()
        M = max_machines or machines
        O = max_ops or ops or M  # noqa: E741
        J = max_jobs or (default_window(jobs, M) if window and jobs and M else jobs)
        if J is None or M is None:
            raise ValueError(
                f"with a {source.what} generator that has no max_jobs/max_machines, pass max_jobs= and max_machines="
            )
        checks = [("max_machines", M, machines), ("max_ops", O, ops)] + ([] if window else [("max_jobs", J, jobs)])
        for name, asked, needed in checks:
            if needed is not None and asked < needed:
                raise ValueError(f"{name}={asked} is smaller than the {source.what}s need ({needed})")
        if window and jobs is not None and min(jobs, M) > J:
            raise ValueError(
                f"max_jobs={J} is too small a window for these {source.what}s ({jobs} jobs on {M} machines): with"
                f" fewer job slots than machines some machines must stay idle; use max_jobs >= {min(jobs, M)}"
                " (default: every job of a short scenario, else 8 per machine)"
            )
        return cls(int(J), int(M), int(O), dynamic=window, flexible=source.flexible)

    def fits(self, item: Any, name: str) -> None:
        """Raise a clear error if ``item`` is larger than the padded sizes."""
        jobs, machines, ops = Source.sizes(item)
        if (not self.dynamic and jobs > self.J) or machines > self.M or ops > self.O:
            raise InvalidInstanceError(
                f"{name!r} ({jobs} jobs, {machines} machines, up to {ops} ops per job) does not fit this env"
                f" (max_jobs={self.J}, max_machines={self.M}, max_ops={self.O}); create the env with larger limits"
            )

    @property
    def dims(self) -> dict[str, int]:
        return {"J": self.J, "M": self.M, "O": self.O, "D": self.D, "S": self.S}

    @functools.cached_property
    def instance_offsets(self):
        if self.dynamic:
            return K.dynamic_instance_offsets.py_func(self.J, self.M, self.O, self.D, self.S)
        return K.instance_offsets.py_func(self.J, self.M, self.O)

    @functools.cached_property
    def state_offsets(self):
        if self.dynamic:
            return K.dynamic_state_offsets.py_func(self.J, self.M, self.O, self.S)
        return K.state_offsets.py_func(self.J, self.M, self.O)

    @property
    def instance_length(self) -> int:
        """Length of an instance row: the fields, then (flexible) the table of alternatives."""
        if not self.flexible:
            return self.instance_offsets.length
        jobs = 2 * (self.J + self.S) if self.dynamic else self.J  # dynamic: planned and real, slots and stream
        return self.instance_offsets.length + jobs * self.O * self.M

    @property
    def state_length(self) -> int:
        return self.state_offsets.length

    def encode(self, instance: JobShopInstance, row: np.ndarray, machine_rule: int = 0) -> None:
        """Write ``instance`` into the static part of an instance row, or explain why it does not
        fit; ``machine_rule`` (a ``K.MACHINE_RULE`` id) serves job-only decisions on a flexible one."""
        self.fits(instance, instance.name)
        if instance.is_flexible and not self.flexible:
            raise InvalidInstanceError(
                f"{instance.name!r} is flexible (operations with alternative machines) but this env was built for"
                " classic instances; create the env with a flexible instance, a list holding one, or a flexible generator"
            )
        J, M, O = self.J, self.M, self.O  # noqa: E741
        I = K.instance_offsets.py_func(self.J, self.M, self.O)
        row[:] = 0
        row[I.n_jobs] = instance.n_jobs
        row[I.n_machines] = instance.n_machines
        row[I.time_scale] = max(1, instance.simple_lower_bound())
        row[I.alt_table] = K.NONE
        row[I.machine_rule] = machine_rule
        if self.flexible:
            table = np.full((J, O, M), -1, dtype=np.int64)
            table[: instance.n_jobs, : instance.max_ops, : instance.n_machines] = instance.processing_table()
            row[I.alt_table] = I.length
            row[I.length :] = table.ravel()
        row[I.duration_scale] = max(1, instance.longest_duration)
        row[I.op_machine : I.op_machine + J * O] = _padded(instance.machines, J, O, K.NONE).ravel()
        row[I.op_duration : I.op_duration + J * O] = _padded(instance.durations, J, O, 0).ravel()
        row[I.job_n_ops : I.job_n_ops + instance.n_jobs] = instance.n_ops
        if instance.release_dates is not None:
            row[I.job_release : I.job_release + instance.n_jobs] = instance.release_dates
        if instance.due_dates is not None:
            row[I.job_due : I.job_due + instance.n_jobs] = instance.due_dates
        weights = instance.weights if instance.weights is not None else 1
        row[I.job_weight : I.job_weight + instance.n_jobs] = weights

    def views(self, state_row: np.ndarray) -> dict[str, np.ndarray]:
        """Named numpy views of a state row (the same field table the kernels use)."""
        table = K.DYNAMIC_STATE_FIELDS if self.dynamic else K.STATE_FIELDS
        spans = K.field_spans(table, **self.dims)
        return {name: state_row[a:b] for name, (a, b) in spans.items() if name != "length"}

    def schedule(self, instance: JobShopInstance, state_row: np.ndarray) -> Schedule:
        """The (partial) schedule held in a static state row."""
        views = self.views(state_row)
        start = views["op_start"].reshape(self.J, self.O)
        end = views["op_end"].reshape(self.J, self.O)
        machines = views["op_machine_used"].reshape(self.J, self.O)
        return Schedule.from_matrices(instance, start, end, machines=machines)


def default_window(n_jobs: int, n_machines: int) -> int:
    """Job slots of a dynamic shop when ``max_jobs`` is not given: every job of a short
    scenario, else room for 8 active jobs per machine (at least 32); more active jobs queue."""
    return min(n_jobs, max(32, 8 * n_machines))


def _padded(matrix: np.ndarray, rows: int, columns: int, fill: int) -> np.ndarray:
    out = np.full((rows, columns), fill, dtype=np.int64)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


def observation_space(layout: ShopLayout, n_features: int, n_actions: int) -> spaces.Dict:
    """One shop's observation: per-job features and the action mask."""
    return spaces.Dict(
        {
            "jobs": spaces.Box(-K.FEATURE_LIMIT, K.FEATURE_LIMIT, shape=(layout.J, n_features), dtype=np.float32),
            "action_mask": spaces.MultiBinary(n_actions),
        }
    )


def add_vector_info(info: dict[str, Any], values: dict[str, Any], rows: np.ndarray, num_envs: int) -> dict[str, Any]:
    """Add per-env ``values`` (one entry per env in ``rows``) to a batch ``info`` the way
    ``gymnasium.vector`` does: ``info[key]`` has one entry per env, ``info["_" + key]`` marks
    the envs that have one; nested dicts are added the same way."""
    for key, value in values.items():
        present = info.get(f"_{key}", np.zeros(num_envs, dtype=np.bool_))
        if isinstance(value, dict):
            array = add_vector_info(info.get(key, {}), value, rows, num_envs)
        else:
            value = np.asarray(value) if not isinstance(value, list) else value
            if key in info:
                array = info[key]
            elif isinstance(value, np.ndarray) and value.dtype != object:
                array = np.zeros((num_envs, *value.shape[1:]), dtype=value.dtype)
            else:
                array = np.full(num_envs, None, dtype=object)
            if array.dtype == object:
                for row, i in enumerate(rows.tolist()):
                    array[i] = value[row]
            else:
                array[rows] = value
        present[rows] = True
        info[key], info[f"_{key}"] = array, present
    return info


class _ShopEnvBase:
    """Options and action checks shared by single and batched envs."""

    strict: bool
    layout: ShopLayout
    n_actions: int
    pair_actions: bool  # observations then also hold ``pairs`` (``_pair_features``)

    def _invalid_message(self, mask: np.ndarray, action: int, where: str = "", shop: int = 0) -> str:
        allowed = np.flatnonzero(mask).tolist()
        if not allowed:
            return f"{where}action {action}: the episode is over; call reset()"
        return f"{where}action {action} is not allowed {self._moment(shop)}; allowed actions: {allowed}"

    def _moment(self, shop: int) -> str:
        return "now"

    def _check_actions(self, masks: np.ndarray, actions: np.ndarray, label: bool) -> None:
        """With ``strict``, raise :class:`InvalidActionError` on the first action outside its mask."""
        inside = (actions >= 0) & (actions < self.n_actions)
        allowed = np.zeros(len(actions), dtype=bool)
        allowed[inside] = masks[np.flatnonzero(inside), actions[inside]] != 0
        if not allowed.all():
            i = int(np.argmin(allowed))
            where = f"shop {i}: " if label else ""
            raise InvalidActionError(self._invalid_message(masks[i], int(actions[i]), where, i))


class SingleShopEnv(_ShopEnvBase, gym.Env):
    """Core of the single envs: the source, reset with ``options={"instance"|"scenario": ...}``,
    the strict check, and ``info["invalid_action"]``. Subclasses implement ``_load``,
    ``_kernel_reset`` (-> reset info), ``_kernel_step`` (-> reward, done, invalid, extra info)."""

    option_key: str  # the reset option that names a one-off item: "instance" or "scenario"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        chosen = (options or {}).get(self.option_key)
        source = self._make_source(chosen) if chosen is not None else self._source
        item = source.draw(self.np_random)
        self._load(item)
        info = self._kernel_reset()
        return self._observation(), info

    def step(self, action):
        if self._item is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = int(action)
        if self.strict:
            self._check_actions(self._mask[None, :], np.array([action]), label=False)
        reward, done, invalid, info = self._kernel_step(action)
        info["invalid_action"] = bool(invalid)
        if done and not self._done:
            info.update(self._final_info())
        elif done:
            reward = 0.0  # stepping a finished episode changes nothing
        self._done = bool(done)
        return self._observation(), float(reward), self._done, self._truncated(), info

    def _truncated(self) -> bool:
        return False

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the allowed actions (the sb3-contrib ``MaskablePPO`` protocol)."""
        return self._mask.astype(bool)

    def _observation(self) -> dict[str, np.ndarray]:
        observation = {"jobs": self._features.copy(), "action_mask": self._mask.copy()}
        if self.pair_actions:  # the per-(job, machine) features
            observation["pairs"] = self._pair_features.copy()
        return observation


class BatchShopEnv(_ShopEnvBase):
    """Core of the batched envs: N shops in arrays of shape ``(num_envs, ...)``, per-shop seeded
    streams (results do not depend on the batch size), same-step autoreset, and ``info`` in
    ``gymnasium.vector``'s conventions. Subclasses implement ``_load(i, item)``,
    ``_reset_rows(rows)``, ``_kernel_step(actions)``, ``_reset_values(rows)`` and
    ``_final_values(rows)`` (the final info of finished shops)."""

    num_envs: int

    def _init_batch(self, num_envs: int, seed: int | None, n_features: int, state_length: int) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = N = int(num_envs)
        self._rngs = self._make_rngs(seed)
        self._masks = np.zeros((N, self.n_actions), dtype=np.int8)
        self._features = np.zeros((N, self.layout.J, n_features), dtype=np.float32)
        self._final_masks = np.zeros_like(self._masks)
        self._final_features = np.zeros_like(self._features)
        self._states = np.zeros((N, state_length), dtype=np.int64)
        self._final_states = np.zeros_like(self._states)
        self._rewards = np.zeros(N, dtype=np.float64)
        self._dones = np.zeros(N, dtype=np.bool_)
        self._invalids = np.zeros(N, dtype=np.bool_)
        self._items: list[Any] = [None] * N
        self._final_items: list[Any] = [None] * N
        self._all = np.arange(N, dtype=np.int64)

    def _make_rngs(self, seed: int | None) -> list[np.random.Generator]:
        return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(self.num_envs)]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every shop with a new draw from its stream; ``seed`` reseeds the streams;
        ``options={"instance"|"scenario": ...}`` puts that item in every shop once, and
        ``options={"instances"|"scenarios": [one per shop]}`` gives shop i the i-th item."""
        if seed is not None:
            self._rngs = self._make_rngs(seed)
        options = options or {}
        chosen = options.get(self.option_key)
        each = options.get(self.option_key + "s")
        if each is not None:
            if chosen is not None or len(each) != self.num_envs:
                raise ValueError(
                    f"options[{self.option_key + 's'!r}] must hold one {self.option_key} per shop ({self.num_envs}),"
                    f" got {len(each)}" + (f" and {self.option_key!r} as well" if chosen is not None else "")
                )
            for i, item in enumerate(each):
                self._load(i, self._make_source(item).draw(self._rngs[i]))
        else:
            source = self._make_source(chosen) if chosen is not None else self._source
            for i in range(self.num_envs):
                self._load(i, source.draw(self._rngs[i]))
        self._reset_rows(self._all)
        return self._observation(), add_vector_info({}, self._reset_values(self._all), self._all, self.num_envs)

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions (one per shop), got {actions.shape[0]}")
        if self.strict:
            self._check_actions(self._masks, actions, label=True)
        self._kernel_step(actions)
        N = self.num_envs
        info: dict[str, Any] = {"invalid_action": self._invalids.copy(), "_invalid_action": np.ones(N, dtype=np.bool_)}
        if self._dones.any():
            done = np.flatnonzero(self._dones)
            info = add_vector_info(info, {"final_obs": self._final_observations(done)}, done, N)
            for i in done.tolist():
                self._final_items[i] = self._items[i]
            info = add_vector_info(info, {"final_info": self._final_values(done)}, done, N)
            if self._source.changes:  # draw new items for the shops that finished
                for i in done.tolist():
                    self._load(i, self._source.draw(self._rngs[i]))
                self._reset_rows(done)
            info = add_vector_info(info, self._reset_values(done), done, N)
        return self._observation(), self._rewards.copy(), self._dones.copy(), self._truncations(), info

    def _truncations(self) -> np.ndarray:
        return np.zeros(self.num_envs, dtype=bool)

    def action_masks(self) -> np.ndarray:
        """``(num_envs, n_actions)`` boolean masks of the allowed actions."""
        return self._masks.astype(bool)

    def close(self) -> None:
        pass

    def _observation(self) -> dict[str, np.ndarray]:
        observation = {"jobs": self._features.copy(), "action_mask": self._masks.copy()}
        if self.pair_actions:  # the per-(job, machine) features
            observation["pairs"] = self._pair_features.copy()
        return observation

    def _final_observations(self, rows: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The last observation of each shop in ``rows`` before it restarted."""
        features, masks = self._final_features[rows], self._final_masks[rows]  # one copy each
        observations = [{"jobs": features[row], "action_mask": masks[row]} for row in range(len(rows))]
        if self.pair_actions:
            pairs = self._final_pair_features[rows]
            for row, observation in enumerate(observations):
                observation["pairs"] = pairs[row]
        return observations

    def _final_item(self, index: int) -> Any:
        item = self._final_items[index]
        if item is None:
            raise ValueError(f"shop {index} has not finished an episode yet")
        return item
