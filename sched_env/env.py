"""``JobShopEnv``: the Gymnasium job-shop environment on the compiled simulator."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from instances import JobShopInstance
from sched_env import _kernels as K
from sched_env._names import MACHINE_RULES
from sched_env.schedule import Schedule
from sched_env.shop import (
    ACTION_SETS,
    PLACEMENTS,
    REWARD_MODES,
    InstanceSpec,
    ShopLayout,
    SingleShopEnv,
    Source,
    check_rule_id,
    observation_space,
    option,
)

DEFAULT_PLACEMENT = "active"
DEFAULT_ACTION_SET = "non_delay"


MACHINE_RULE_IDS = {name: int(getattr(K.MACHINE_RULE, name)) for name in MACHINE_RULES}


def machine_rule_id(name: str) -> int:
    """The kernel id of a machine rule name, or a clear error naming them."""
    return option(name, MACHINE_RULE_IDS, "machine_rule")


class StaticShopOptions:
    """The options of the static shop, checked once for the single and the batched env."""

    option_key = "instance"

    def _set_options(
        self, instance: InstanceSpec, *, max_jobs, max_machines, max_ops, placement, action_set, reward_mode, strict,
        instance_dir, machine_rule=None, pair_actions=None,
    ) -> None:  # fmt: skip
        self.placement, self.action_set, self.reward_mode = placement, action_set, reward_mode
        self._placement = option(placement, PLACEMENTS, "placement")
        self._action_set = option(action_set, ACTION_SETS, "action_set")
        self._reward = option(reward_mode, REWARD_MODES, "reward_mode")
        self.strict = bool(strict)
        self._directory = instance_dir
        self._source = Source.of_instances(instance, directory=instance_dir)
        self.layout = ShopLayout.for_source(self._source, max_jobs, max_machines, max_ops)
        if pair_actions is None:
            pair_actions = machine_rule is None and self.layout.flexible
        if pair_actions and machine_rule is not None:
            raise ValueError("machine_rule= chooses the machine of job-only actions; with pair_actions=True the"
                             " action already names the machine: drop one of them")  # fmt: skip
        self.machine_rule = machine_rule or "eet"
        self._machine_rule = machine_rule_id(self.machine_rule)
        #: True: an action is a (job, machine) pair ``job * max_machines + machine``; False: a job.
        self.pair_actions = bool(pair_actions)
        self.n_actions = self.layout.J * self.layout.M if self.pair_actions else self.layout.J

    def _make_source(self, spec) -> Source:
        return Source.of_instances(spec, directory=self._directory)

    def _static_observation_space(self) -> spaces.Dict:
        space = observation_space(self.layout, K.N_FEATURES, self.n_actions)
        if self.pair_actions:
            L = self.layout
            shape = (L.J, L.M, K.N_PAIR_FEATURES)
            space.spaces["pairs"] = spaces.Box(-K.FEATURE_LIMIT, K.FEATURE_LIMIT, shape=shape, dtype=np.float32)
        return space

    def decode_action(self, action: int) -> tuple[int, int | None]:
        """``(job, machine)`` of a pair action, ``(job, None)`` of a job action."""
        return divmod(int(action), self.layout.M) if self.pair_actions else (int(action), None)


class JobShopEnv(StaticShopOptions, SingleShopEnv):
    """Job-shop scheduling as a sequence of dispatching decisions (static: all jobs known at 0).

    ## Action
    ``Discrete(max_jobs)``: action ``j`` starts the next unscheduled operation of job ``j``
    at its earliest feasible time. Which jobs are allowed is given by :meth:`action_masks`
    (and ``obs["action_mask"]``); sb3-contrib's ``MaskablePPO`` reads it automatically. The mask
    is never all-false before the episode ends.

    An action outside the mask (out of range, finished job, or not in the action set) is
    replaced by the lowest-index allowed job and ``info["invalid_action"]`` is True: the
    episode stays well-defined and finite. With ``strict=True`` it raises
    :class:`InvalidActionError` instead and leaves the state unchanged.

    ## Semantics: placement and action set
    * ``placement="active"`` (default): the operation goes into the earliest idle gap of its
      machine that starts at or after the job is ready and is long enough (left shift, as L2D).
      ``"append"``: after the machine's last operation (semi-active schedules).
    * ``action_set`` says which jobs the mask allows:
      ``"non_delay"`` (default): only jobs whose next operation can start at the earliest
      possible start time (no machine is left idle while an operation could run).
      ``"giffler_thompson"``: take the job whose next operation could *complete* first, at
      time C on machine m; allowed are the jobs whose next operation is on m and can start
      before C. Builds exactly the active schedules, so an optimal one is always reachable.
      ``"any"``: every unfinished job (with either placement an optimal schedule is
      reachable: replaying any schedule in start-time order never makes it longer).

    Why non-delay is the default (``experiments/results/action_sets.md``, ta01-ta10, mean gap
    to the best-known makespan): MWKR 19.2 % under non-delay vs 26.9 % (Giffler-Thompson),
    27.0 % (active, any), 54.3 % (append, any); uniformly random rollouts 30.8 % on average
    (best of 500: 13.2 %) vs 48.5 % (27.3 %) for Giffler-Thompson; a per-job MaskablePPO
    policy learns fastest under it. The price: the non-delay schedules may all be suboptimal
    (ft06: the best non-delay schedule found has makespan 57, the optimum is 55). Choose
    ``"giffler_thompson"`` or ``"any"`` when the optimum must stay reachable (search,
    imitation of optimal schedules, rescheduling with CP-SAT plans).

    ## Observation
    ``Dict(jobs=Box(max_jobs, 10) float32, action_mask=MultiBinary(max_jobs))``. Rows are jobs;
    padded rows (beyond the instance's jobs) are all zero. "now" is the earliest start of any
    unfinished job; times are divided by the instance's simple lower bound, durations by its
    longest operation; values are clipped to +-1000 (reached only by absurdly long schedules).
    Columns (``sched_env.FEATURE_NAMES``):

    0. allowed: 1 if the job is in the action mask
    1. next_duration: duration of the job's next operation
    2. remaining_work: work left in the job, next operation included
    3. remaining_ops: operations left / max_ops
    4. earliest_start: earliest feasible start of the next operation - now
    5. ready_time: end of the job's previous operation (or release) - now
    6. machine_remaining_work: unscheduled work of the next operation's machine
    7. machine_free_time: end of that machine's last operation - now
    8. machine_contention: unfinished jobs whose next operation is on that machine / n_jobs
    9. done: 1 once every operation of the job is scheduled (then columns 0-8 are 0)

    ## Reward
    ``reward_mode="dense"`` (default): the decrease of a makespan lower bound, ``LB = max(current
    makespan, max_j earliest start of j's next op + j's remaining work)``, divided by the
    time scale. LB starts at the longest job and ends at the makespan, so the episode return is
    ``-(makespan - LB_0) / scale``: maximising it minimises the makespan.
    ``"sparse"``: 0 until the last step, then ``-makespan / scale``.

    ## Episode end
    Terminates when every operation is scheduled (exactly one step per operation); never
    truncated. ``info["makespan"]`` and ``info["schedule"]`` (a :class:`Schedule`) are given
    at the end; ``info["invalid_action"]`` at every step.

    ## Arguments
    * ``instance``: a :class:`JobShopInstance`, a catalogue name (``"ta01"``) or file path, a
      list of those (one drawn per reset), or a generator ``gen(rng) -> JobShopInstance`` such as
      ``RandomInstanceGenerator(10, 10)`` (a new instance per reset, from ``np_random``).
      Default: random 10x10 instances. ``reset(options={"instance": ...})`` overrides it once.
    * ``max_jobs``, ``max_machines``, ``max_ops``: padded sizes (default: what the source
      needs); one env can then serve instances of different sizes up to these.
    * ``placement``, ``action_set``, ``reward_mode``: see above. ``strict``: raise on invalid actions.
    * ``render_mode``: ``"ansi"`` (text Gantt) or ``"rgb_array"`` (Gantt image, needs matplotlib).
    * ``instance_dir``: a folder of benchmark files for catalogue names (see ``instances.load``).

    ## Flexible shops (operations with alternative machines)
    On a flexible instance (or generator, or list holding one) the action is a (job, machine)
    pair, ``Discrete(max_jobs * max_machines)``: action ``j * max_machines + m`` starts job ``j``'s
    next operation on machine ``m`` (one that can run it) at its earliest feasible time there;
    the action set applies to pairs (non-delay: the pairs that can start at the earliest start
    of any pair; Giffler-Thompson: the pairs on the machine of the pair that completes first).
    The observation gains ``pairs``, ``Box(max_jobs, max_machines, 3)``: per pair the duration
    there, when that machine is free and when the operation would end there (relative to now,
    zeros for machines that cannot run it). ``pair_actions=True`` gives a classic instance the
    same interface (one pair per job). With ``machine_rule`` (``"eet"`` earliest end time,
    ``"spt"`` shortest duration, ``"ll"`` least loaded, ``"est"`` earliest start) the action is
    the job alone, on the machine the rule picks among the job's allowed pairs, and the
    observation is the classic one; the job features then read each job's planned pair (the
    rule's choice). The dense reward's lower bound takes each operation at its shortest.

    ## Shop access
    ``instance``, ``makespan``, ``lower_bound``, ``now`` (the earliest start of any unfinished
    job), ``schedule()``, ``earliest_starts()``, ``next_operations()``, ``ready_times()``,
    ``machine_free_times()``, ``planned_machines()`` and ``rule_choice(rule_id)`` read the
    simulator's state; the kernel rows themselves are private.

    ## Version history
    * v0: first release (``reward`` renamed ``reward_mode`` before 0.2).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        instance: InstanceSpec = None,
        *,
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        placement: str = DEFAULT_PLACEMENT,
        action_set: str = DEFAULT_ACTION_SET,
        reward_mode: str = "dense",
        strict: bool = False,
        render_mode: str | None = None,
        instance_dir: str | os.PathLike | None = None,
        machine_rule: str | None = None,
        pair_actions: bool | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self._set_options(
            instance, max_jobs=max_jobs, max_machines=max_machines, max_ops=max_ops, placement=placement,
            action_set=action_set, reward_mode=reward_mode, strict=strict, instance_dir=instance_dir,
            machine_rule=machine_rule, pair_actions=pair_actions,
        )  # fmt: skip
        L = self.layout
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = self._static_observation_space()
        self._offsets = L.state_offsets
        self._instance_row = np.zeros(L.instance_length, dtype=np.int64)
        self._state_row = np.zeros(L.state_length, dtype=np.int64)
        self._mask = np.zeros(self.n_actions, dtype=np.int8)
        self._job_mask = np.zeros(L.J, dtype=np.int8) if self.pair_actions else self._mask
        self._features = np.zeros((L.J, K.N_FEATURES), dtype=np.float32)
        self._pair_features = np.zeros((L.J, L.M, K.N_PAIR_FEATURES), dtype=np.float32)
        self._item: JobShopInstance | None = None
        self._done = True

    # ------------------------------------------------------------------ kernel calls
    def _load(self, instance: JobShopInstance) -> None:
        if instance is not self._item:
            self.layout.encode(instance, self._instance_row, self._machine_rule)
            self._item = instance

    def _kernel_reset(self) -> dict[str, Any]:
        L = self.layout
        if self.pair_actions:
            K.reset_and_observe_pairs(
                self._instance_row, self._state_row, self._placement, self._action_set, self._job_mask, self._mask,
                self._features, self._pair_features, L.J, L.M, L.O,
            )  # fmt: skip
        else:
            K.reset_and_observe(
                self._instance_row, self._state_row, self._placement, self._action_set, self._mask, self._features,
                L.J, L.M, L.O,
            )  # fmt: skip
        self._done = False
        return {"instance": self._item.name, "lower_bound": self.lower_bound}

    def _kernel_step(self, action: int):
        L = self.layout
        if self.pair_actions:
            reward, done, invalid = K.step_shop_pairs(
                self._instance_row, self._state_row, action, self._placement, self._action_set, self._reward,
                self._job_mask, self._mask, self._features, self._pair_features, L.J, L.M, L.O,
            )  # fmt: skip
        else:
            reward, done, invalid = K.step_shop(
                self._instance_row, self._state_row, action, self._placement, self._action_set, self._reward,
                self._mask, self._features, L.J, L.M, L.O,
            )  # fmt: skip
        return reward, done, invalid, {}

    def _final_info(self) -> dict[str, Any]:
        return {"makespan": self.makespan, "schedule": self.schedule()}

    def render(self):
        if self.render_mode is None or self._item is None:
            return None
        from sched_env.render import gantt_rgb, gantt_text

        if self.render_mode == "ansi":
            return gantt_text(self.schedule(), self._item, color=False)
        return gantt_rgb(self.schedule(), self._item)

    # ------------------------------------------------------------------ shop access
    @property
    def instance(self) -> JobShopInstance | None:
        """The instance of the current episode."""
        return self._item

    @property
    def makespan(self) -> int:
        """Latest end of the operations scheduled so far."""
        return int(self._state_row[K.ST.makespan])

    @property
    def lower_bound(self) -> int:
        """The current makespan lower bound (equals the makespan at the end)."""
        return int(self._state_row[K.ST.lower_bound])

    @property
    def done(self) -> bool:
        return self._done

    @property
    def now(self) -> int:
        """The earliest start of any unfinished job's next operation (the makespan once done)."""
        starts = self.earliest_starts()[self._field("job_machine", self.layout.J) != K.NONE]
        return int(starts.min()) if starts.size else self.makespan

    def schedule(self) -> Schedule:
        """The schedule built so far (complete once the episode has terminated)."""
        if self._item is None:
            raise gym.error.ResetNeeded("call reset() before schedule()")
        return self.layout.schedule(self._item, self._state_row)

    def _field(self, name: str, length: int) -> np.ndarray:
        start = getattr(self._offsets, name)
        return self._state_row[start : start + length].copy()

    def earliest_starts(self) -> np.ndarray:
        """Earliest feasible start of each job's next operation (completion time if done)."""
        return self._field("job_est", self.layout.J)

    def next_operations(self) -> np.ndarray:
        """Index of each job's next unscheduled operation (its operation count once done)."""
        return self._field("job_next_op", self.layout.J)

    def ready_times(self) -> np.ndarray:
        """When each job's last scheduled operation ends (its release before the first)."""
        return self._field("job_ready", self.layout.J)

    def machine_free_times(self) -> np.ndarray:
        """End of each machine's last scheduled operation."""
        return self._field("machine_end", self.layout.M)

    def rule_choice(self, rule_id: int, uniform: float = 0.0) -> int:
        """The action the dispatching rule with kernel id ``rule_id`` takes now (see
        ``baselines.rules``): the allowed job it picks, or with pair actions that job and the
        machine rule's machine for it; ``uniform`` in [0, 1) drives the random rule."""
        rule_id = check_rule_id(rule_id)
        if self._item is None:
            raise gym.error.ResetNeeded("call reset() before rule_choice()")
        L = self.layout
        job = int(
            K.choose_by_rule(self._instance_row, self._state_row, self._job_mask, rule_id, uniform, L.J, L.M, L.O)
        )
        if not self.pair_actions or job < 0:
            return job
        return job * L.M + int(self._state_row[self._offsets.job_machine + job])

    def planned_machines(self) -> np.ndarray:
        """The machine each unfinished job's next operation would take under the machine rule
        (among its allowed machines), NONE (-1) once done."""
        return self._field("job_machine", self.layout.J)


def replay(
    instance: JobShopInstance,
    schedule: Schedule,
    *,
    placement: str = DEFAULT_PLACEMENT,
    action_set: str = "any",
) -> Schedule:
    """Dispatch a schedule's operations in start-time order (on their machines) through the simulator.

    With ``action_set="any"`` the result is never longer than ``schedule`` (a feasible one):
    every schedule the simulator can improve on is reachable. Raises
    :class:`InvalidActionError` if an operation is not allowed under ``action_set``."""
    env = JobShopEnv(instance, placement=placement, action_set=action_set, strict=True, pair_actions=True)
    env.reset()
    rows = schedule.sorted()
    for job, machine in zip(rows.job.tolist(), rows.machine.tolist()):
        env.step(job * env.layout.M + machine)
    return env.schedule()
