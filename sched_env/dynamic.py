"""``DynamicJobShopEnv``: the job shop as it runs in a factory, on the same compiled kernels.

Jobs arrive over time, machines break down and are repaired, planned maintenance takes
machines away, and operations take their real (noisy) durations. See the class docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from instances import InvalidScenarioError, SchedEnvError
from sched_env import _kernels as K
from sched_env.events import OPEN_STREAM, Scenario, ScenarioGenerator
from sched_env.schedule import OBJECTIVE_NAMES, Schedule, objectives, validate_schedule
from sched_env.shop import (
    BatchShopEnv,
    ShopLayout,
    SingleShopEnv,
    Source,
    check_rule_id,
    observation_space,
    option,
)

#: Objective name -> kernel id; the names are those of :func:`sched_env.schedule.objectives`.
#: (Python ints, as the static shop's options: see ``sched_env.shop.PLACEMENTS``.)
OBJECTIVES = {
    "makespan": int(K.OBJECTIVE_MAKESPAN),
    "total_weighted_tardiness": int(K.OBJECTIVE_TARDINESS),
    "mean_flow_time": int(K.OBJECTIVE_FLOW),
}
assert set(OBJECTIVES) <= set(OBJECTIVE_NAMES)
INTERRUPTION_IDS = {"resume": int(K.INTERRUPT_RESUME), "restart": int(K.INTERRUPT_RESTART)}
DYNAMIC_FEATURE_NAMES = K.DYNAMIC_FEATURE_NAMES
DYNAMIC_CONTEXT_NAMES = K.DYNAMIC_CONTEXT_NAMES
DEFAULT_OBJECTIVE = "total_weighted_tardiness"

ScenarioSpec = Scenario | Sequence[Scenario] | Callable[..., Scenario] | None


def scenario_source(spec: ScenarioSpec) -> Source:
    """One scenario, a list (one drawn per reset), or a generator ``gen(rng) -> Scenario``."""
    spec = ScenarioGenerator() if spec is None else spec
    if isinstance(spec, Scenario):
        return Source([spec], None, Scenario, InvalidScenarioError, "scenario")
    if callable(spec):
        return Source([], spec, Scenario, InvalidScenarioError, "scenario")
    if isinstance(spec, Sequence) and spec and all(isinstance(s, Scenario) for s in spec):
        return Source(list(spec), None, Scenario, InvalidScenarioError, "scenario")
    raise InvalidScenarioError(
        f"scenario must be a Scenario, a non-empty list of them, or a generator callable(rng) -> Scenario; got {spec!r}"
    )


def _realized_on_shortest(scenario: Scenario) -> np.ndarray:
    """Real durations per operation; a flexible job's on its shortest machine (its tables hold the rest)."""
    if not scenario.is_flexible:
        return scenario.realized_durations
    machines = np.maximum(scenario.jobs.machines, 0)[:, :, None]
    return np.take_along_axis(scenario.realized_durations, machines, axis=2)[:, :, 0]


def _encode_alternatives(layout: ShopLayout, scenario: Scenario, order: np.ndarray, row: np.ndarray) -> None:
    """The flexible row's tables: the stream's planned and real durations per machine (the slots'
    tables are filled by the kernels as jobs take slots); see ``sched_env._kernels``."""
    J, M, O, S = layout.J, layout.M, layout.O, layout.S  # noqa: E741
    start = layout.instance_offsets.length
    row[layout.instance_offsets.alt_table] = start
    jobs = scenario.jobs
    planned = jobs.processing_table()
    realized = scenario.realized_durations
    if not jobs.is_flexible:  # a classic scenario in a flexible env: one alternative, its real times
        realized = np.where(planned >= 0, realized[:, :, None], -1)
    for offset, table in ((2 * J * O * M, planned), (2 * J * O * M + S * O * M, realized)):
        padded = np.full((S, O, M), -1, dtype=np.int64)
        padded[: jobs.n_jobs, : jobs.max_ops, : jobs.n_machines] = table[order]
        row[start + offset : start + offset + S * O * M] = padded.ravel()


def encode_scenario(layout: ShopLayout, scenario: Scenario, row: np.ndarray, machine_rule: int = 0) -> np.ndarray:
    """Write a scenario into a dynamic instance row (header, stream in arrival order, downtime
    windows; the slots are filled by the kernels). Returns the stream order: the scenario job
    index of each stream position."""
    I = layout.instance_offsets
    jobs = scenario.jobs
    S, O = layout.S, layout.O  # noqa: E741
    if jobs.n_jobs > S or len(scenario.downtimes) > layout.D:
        raise InvalidScenarioError(
            f"scenario {scenario.name!r} has {jobs.n_jobs} jobs and {len(scenario.downtimes)} downtime windows;"
            f" this env holds {S} and {layout.D}: pass larger max_stream= / max_windows="
        )
    layout.fits(scenario, scenario.name)
    if jobs.is_flexible and not layout.flexible:
        raise InvalidScenarioError(
            f"scenario {scenario.name!r} has operations with alternative machines but this env was built for classic"
            " scenarios; create it with a flexible scenario or generator (ScenarioGenerator(alternatives=...))"
        )
    order = np.argsort(jobs.release_dates, kind="stable")
    row[:] = 0
    row[I.n_jobs] = jobs.n_jobs
    row[I.alt_table] = K.NONE
    row[I.machine_rule] = machine_rule
    row[I.n_machines] = jobs.n_machines
    row[I.time_scale] = max(1, int(round(float(jobs.job_work().mean()))))
    row[I.duration_scale] = max(1, jobs.longest_duration)
    if layout.flexible:
        _encode_alternatives(layout, scenario, order, row)
    row[I.stream_jobs] = jobs.n_jobs
    row[I.stream_open] = int(bool(scenario.metadata.get(OPEN_STREAM, False)))
    n = jobs.n_jobs
    for field, matrix, fill in (
        ("stream_machine", jobs.machines, K.NONE),
        ("stream_duration", jobs.durations, 0),
        ("stream_real", _realized_on_shortest(scenario), 0),
    ):
        padded = np.full((S, O), fill, dtype=np.int64)
        padded[:n, : jobs.max_ops] = np.where(jobs.machines[order] >= 0, matrix[order], fill)
        start = getattr(I, field)
        row[start : start + S * O] = padded.ravel()
    for field, values in (
        ("stream_n_ops", jobs.n_ops),
        ("stream_release", jobs.release_dates),
        ("stream_due", jobs.due_dates),
        ("stream_weight", jobs.weights),
    ):
        start = getattr(I, field)
        row[start : start + n] = values[order]
    windows = scenario.downtimes  # sorted by machine, then start
    counts = np.bincount(windows[:, 0], minlength=layout.M) if len(windows) else np.zeros(layout.M, dtype=np.int64)
    row[I.window_first : I.window_first + layout.M + 1] = np.concatenate([[0], np.cumsum(counts)])
    w = len(windows)
    row[I.window_start : I.window_start + w] = windows[:, 1]
    row[I.window_end : I.window_end + w] = windows[:, 2]
    row[I.window_kind : I.window_kind + w] = windows[:, 3]
    return order


def encode_scenarios(scenarios, window: int | None = None, machine_rule: int = 0):
    """Several scenarios in one layout of ``window`` job slots (default: one per job of the
    largest), for one batched kernel call: (layout, instance rows, stream orders, interruption ids)."""
    jobs = [s.jobs for s in scenarios]
    layout = ShopLayout(
        window or max(i.n_jobs for i in jobs), max(i.n_machines for i in jobs), max(i.max_ops for i in jobs),
        D=max(1, max(len(s.downtimes) for s in scenarios)), S=max(i.n_jobs for i in jobs), dynamic=True,
        flexible=any(i.is_flexible for i in jobs),
    )  # fmt: skip
    insts = np.zeros((len(scenarios), layout.instance_length), dtype=np.int64)
    orders = [encode_scenario(layout, s, row, machine_rule) for s, row in zip(scenarios, insts)]
    interruptions = np.array([INTERRUPTION_IDS[s.interruption] for s in scenarios], dtype=np.int64)
    return layout, insts, orders, interruptions


def stream_schedule(rows: ShopLayout, scenario: Scenario, order: np.ndarray, state: np.ndarray) -> Schedule:
    """The operations run so far in a dynamic state row (real times, scenario job numbering)."""
    T = rows.state_offsets
    jobs = scenario.jobs
    n, S, O = jobs.n_jobs, rows.S, rows.O  # noqa: E741
    start = np.full((n, max(jobs.max_ops, 1)), -1, dtype=np.int64)
    end = start.copy()
    machines = start.copy()
    start[order] = state[T.stream_start : T.stream_start + S * O].reshape(S, O)[:n, : jobs.max_ops]
    end[order] = state[T.stream_end : T.stream_end + S * O].reshape(S, O)[:n, : jobs.max_ops]
    machines[order] = state[T.stream_machine_used : T.stream_machine_used + S * O].reshape(S, O)[:n, : jobs.max_ops]
    return Schedule.from_matrices(jobs, start, end, machines=machines)


def episode_summary(scenario: Scenario, schedule: Schedule, wasted: int, max_queued: int = 0) -> dict[str, Any]:
    """Objective values of a finished episode and its schedule, validated against the scenario."""
    schedule = validate_schedule(
        scenario.jobs, schedule, durations=scenario.realized_for(schedule), downtimes=scenario.downtimes,
        interruption=scenario.interruption,
    )  # fmt: skip
    values = objectives(scenario.jobs, schedule)
    return {
        "makespan": values["makespan"],
        "total_weighted_tardiness": values["total_weighted_tardiness"],
        "mean_flow_time": values["mean_flow_time"],
        "wasted_work": wasted,
        "max_queued": max_queued,
        "schedule": schedule,
    }


def _row_layout(layout: ShopLayout, scenario: Scenario, windows: int | None = None, stream: int | None = None):
    """The row sizes for a scenario (downtime windows D, stream jobs S) in a window layout."""
    D = max(1, len(scenario.downtimes)) if windows is None else windows
    S = max(1, scenario.jobs.n_jobs) if stream is None else stream
    return ShopLayout(layout.J, layout.M, layout.O, D, S, dynamic=True, flexible=layout.flexible)


def offers_wait(job_rows: int, mask_width: int) -> bool:
    """Whether an observation (or an observation space) with ``job_rows`` job rows and a mask of
    ``mask_width`` entries has the wait action: its mask has one entry more than job rows (a dynamic
    shop made with ``allow_wait=True``). The one place that question is answered."""
    return int(mask_width) == int(job_rows) + 1


class DynamicShopOptions:
    """The options of the dynamic shop, checked once for the single and the batched env."""

    option_key = "scenario"

    def _set_options(self, scenario, objective, max_jobs, max_machines, max_ops, allow_wait, strict,
                     machine_rule=None, pair_actions=None) -> None:  # fmt: skip
        from sched_env.env import machine_rule_id

        self.objective = objective
        self._objective = option(objective, OBJECTIVES, "objective")
        self.strict = bool(strict)
        self.allow_wait = bool(allow_wait)
        self._wait_width = int(self.allow_wait)  # the kernels' W (an int: a bool would compile them once more)
        self._source = scenario_source(scenario)
        self.layout = ShopLayout.for_source(self._source, max_jobs, max_machines, max_ops, window=True)
        if pair_actions is None:
            pair_actions = machine_rule is None and self.layout.flexible
        if pair_actions and machine_rule is not None:
            raise ValueError("machine_rule= chooses the machine of job-only actions; with pair_actions=True the"
                             " action already names the machine: drop one of them")  # fmt: skip
        self.machine_rule = machine_rule or "eet"
        self._machine_rule = machine_rule_id(self.machine_rule)
        #: True: an action is a (slot, machine) pair ``slot * max_machines + machine`` (wait: the last action).
        self.pair_actions = bool(pair_actions)
        width = self.layout.J * self.layout.M if self.pair_actions else self.layout.J
        self.n_actions = width + self.allow_wait

    def _dynamic_observation_space(self):
        space = observation_space(self.layout, K.N_DYNAMIC_FEATURES, self.n_actions)
        if self.pair_actions:
            L = self.layout
            shape = (L.J, L.M, K.N_PAIR_FEATURES)
            space.spaces["pairs"] = spaces.Box(-K.FEATURE_LIMIT, K.FEATURE_LIMIT, shape=shape, dtype=np.float32)
        return space

    def _make_source(self, spec: Any) -> Source:
        return scenario_source(spec)

    def _dims(self) -> tuple[int, ...]:
        """The kernels' size arguments J, M, O, D, S of the current rows."""
        R = self._rows
        return R.J, R.M, R.O, R.D, R.S


class DynamicJobShopEnv(DynamicShopOptions, SingleShopEnv):
    """A job shop that runs in time: arrivals, breakdowns, maintenance, noisy durations.

    ## Time and decisions
    The clock starts at 0. At each decision, the allowed jobs (the mask) are those whose next
    operation can start *now*: the job has arrived, its previous operation has finished, and
    the machine is idle and up. Action ``j`` starts the next operation of the job in slot ``j``
    now. When no job can start, the clock jumps by itself to the next event: an operation
    ends, a job arrives, or a machine fails or is repaired (decision epochs). Operations take
    their *real* duration (planned x noise), known only when they end. A downtime (breakdown,
    or planned maintenance) that begins during an operation interrupts it, per the scenario's
    declared policy: ``resume`` (it continues after the repair) or ``restart`` (the work so
    far is lost; the job must start that operation again once the machine is back).

    ## Waiting (``allow_wait=True``)
    By default the shop is non-delay: when a job can start, some job must. With
    ``allow_wait=True`` the action space gains one action, ``max_jobs``: keep every idle
    machine idle until the next event (allowed while an event is still to come), and
    :meth:`wait` takes an ``until`` time, so a plan can be carried out at its planned times.

    ## Job slots: endless streams
    The observation's rows are ``max_jobs`` *slots* holding the active jobs (arrived,
    unfinished): an arriving job takes a free slot (job n of the stream, in arrival order, takes
    slot n mod max_jobs or the next free one), and a slot is freed when its job completes, so a
    step costs the same whether the stream has 200 jobs or 5 000. While every slot is taken,
    arriving jobs wait in an admission queue in arrival order: invisible to the mask and
    features, but their flow time and tardiness count (``info["queued"]`` says how many).
    The default window holds every job of a short scenario, else 8 jobs per machine (at least
    32); a window smaller than the number of machines is refused at construction.

    ## Observation
    ``Dict(jobs=Box(max_jobs, 27) float32, action_mask=MultiBinary(max_jobs [+ 1]))`` from what
    a planner knows now: only slots with an unfinished job have non-zero rows; durations are
    the planned ones; a breakdown is seen once it has begun (with its repair time),
    maintenance only while it runs. Columns (``DYNAMIC_FEATURE_NAMES``): allowed, next planned
    duration, planned work left, operations left (/ machines), time until the job's running op is expected
    to end, time until its next machine is expected to be free, machine down now, for how
    long, planned load of the active jobs on that machine, due-date slack, weight (/ largest),
    time in system; then what the strong dispatching rules read: the duration of the operation
    after the next (NPT), the work waiting at that operation's machine (WINQ), the work and the
    number of jobs waiting at the job's own machine, slack per operation left, ATC's log index
    (k = 2), the critical ratio (due - now) / work left (clipped to +-10), WSPT's log index
    log(w x mean p / p) and the positive slack in mean operation lengths (so ATC with any k is
    ``wspt_priority - positive_slack / k``); last, the same in every job's row, the shop's
    context (``DYNAMIC_CONTEXT_NAMES``): unfinished jobs per machine, their planned work left per
    machine, the share of them already late (slack < 0), their mean critical ratio, the share of
    machines down, the machine count / 10, how early the shop is in its episode: 1 - jobs arrived
    so far / 100, at least 0 (a fresh shop and a short shift read 1 and near it, a long run 0), and
    whether it drains: 1 once the scenario's last job has arrived (an endless stream, and a plan of
    a running shop's known work, ``events.OPEN_STREAM``, read 0).
    Times are divided by the scenario's mean planned job work, durations by its longest operation;
    "mean p" is over the jobs allowed now.

    ## Reward (``objective``)
    Accrued over the time that passes: ``"makespan"`` -elapsed time (the return is minus the
    makespan); ``"mean_flow_time"`` -(jobs in system x time) / n_jobs; ``"total_weighted_tardiness"``
    (default) -(weighted late jobs x time) / n_jobs (minus the total weighted tardiness /
    n_jobs). All divided by the time scale.

    ## Episode end
    Terminates when every operation of every job has run (the clock then stands at the last
    completion). ``info`` then has ``makespan``, ``total_weighted_tardiness``,
    ``mean_flow_time``, ``wasted_work`` (lost to restarts) and the ``schedule`` of real times.
    ``info["time"]`` is the clock at every step. ``max_time`` truncates the episode.

    ## Flexible shops
    With flexible scenarios (``ScenarioGenerator(alternatives=(1, 3))``) an action is a (slot,
    machine) pair, ``slot * max_machines + machine`` (the wait action last): start that job's
    next operation now on that machine, which must be able to run it and be idle and up; the
    observation gains ``pairs`` (planned duration there, time until the machine is expected free,
    expected end there). With ``machine_rule`` the action is the slot alone, on the machine the
    rule picks among those where it can start now. A waiting operation whose machine is down
    goes to another that can take it; a started one stays on its machine under the
    interruption policy.

    ## Arguments
    ``scenario``: a :class:`~sched_env.events.Scenario`, a list of them, or a generator
    ``gen(rng) -> Scenario`` (default: :class:`~sched_env.events.ScenarioGenerator()`: 5
    machines, 5 jobs at the start, 15 arriving at 85 % utilisation); ``reset(options=
    {"scenario": ...})`` overrides it once. ``max_jobs``: the slot window; ``max_machines``,
    ``max_ops``: padded sizes (default: what the source needs). ``strict``: raise
    :class:`InvalidActionError` on an action outside the mask (otherwise the lowest allowed job
    is started and ``info["invalid_action"]`` is True).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: ScenarioSpec = None,
        *,
        objective: str = DEFAULT_OBJECTIVE,
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        max_time: int | None = None,
        allow_wait: bool = False,
        strict: bool = False,
        render_mode: str | None = None,
        machine_rule: str | None = None,
        pair_actions: bool | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be 'ansi' or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_time = max_time
        self._set_options(scenario, objective, max_jobs, max_machines, max_ops, allow_wait, strict, machine_rule,
                          pair_actions)  # fmt: skip
        L = self.layout
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = self._dynamic_observation_space()
        self._mask = np.zeros(self.n_actions, dtype=np.int8)
        self._job_mask = np.zeros(L.J + self.allow_wait, dtype=np.int8) if self.pair_actions else self._mask
        self._features = np.zeros((L.J, K.N_DYNAMIC_FEATURES), dtype=np.float32)
        self._pair_features = np.zeros((L.J, L.M, K.N_PAIR_FEATURES), dtype=np.float32)
        self._rows = self.layout
        self._instance_row = np.zeros(0, dtype=np.int64)
        self._state_row = np.zeros(0, dtype=np.int64)
        self._order = np.zeros(0, dtype=np.int64)
        self._item: Scenario | None = None
        self._done = True

    # ------------------------------------------------------------------ kernel calls
    def _load(self, scenario: Scenario) -> None:
        self.layout.fits(scenario, scenario.name)
        rows = _row_layout(self.layout, scenario)
        if rows != self._rows or self._state_row.size == 0:
            self._rows = rows
            self._instance_row = np.zeros(rows.instance_length, dtype=np.int64)
            self._state_row = np.zeros(rows.state_length, dtype=np.int64)
            self._T = rows.state_offsets
        self._order = encode_scenario(rows, scenario, self._instance_row, self._machine_rule)
        self._interruption = INTERRUPTION_IDS[scenario.interruption]
        self._item = scenario

    def _kernel_reset(self) -> dict[str, Any]:
        if self.pair_actions:
            count = K.dynamic_reset_and_observe_pairs(
                self._instance_row, self._state_row, self._job_mask, self._mask, self._features, self._pair_features,
                self._wait_width, *self._dims(),
            )  # fmt: skip
        else:
            count = K.dynamic_reset_and_observe(
                self._instance_row, self._state_row, self._mask, self._features, self._wait_width, *self._dims()
            )
        if count < 0:
            raise SchedEnvError(f"scenario {self._item.name!r}: no operation can ever start (check its downtimes)")
        self._done = count == 0
        return {"time": self.time, "scenario": self._item.name}

    def _kernel_step(self, action: int):
        if self.pair_actions:
            reward, done, invalid, stuck = K.dynamic_step_shop_pairs(
                self._instance_row, self._state_row, action, self._interruption, self._objective, self._job_mask,
                self._mask, self._features, self._pair_features, self._wait_width, *self._dims(),
            )  # fmt: skip
        else:
            reward, done, invalid, stuck = K.dynamic_step_shop(
                self._instance_row, self._state_row, action, self._interruption, self._objective, self._mask,
                self._features, self._wait_width, *self._dims(),
            )  # fmt: skip
        if stuck:
            raise SchedEnvError(f"scenario {self._item.name!r}: no operation can ever start again")
        return reward, done, invalid, {"time": self.time, "queued": self.queued}

    def _final_info(self) -> dict[str, Any]:
        return self.summary()

    def _moment(self, shop: int) -> str:
        return f"at time {self.time}"

    def _truncated(self) -> bool:
        return not self._done and self.max_time is not None and self.time >= self.max_time

    def wait(self, until: int | None = None):
        """Keep every idle machine idle until the next event, or until ``until`` if that comes
        first; then go on to the next decision. Returns what :meth:`step` returns. Needs
        ``allow_wait=True``."""
        if not self.allow_wait:
            raise SchedEnvError("this env was created without allow_wait=True; it cannot wait")
        if self._item is None:
            raise gym.error.ResetNeeded("call reset() before wait()")
        reward, done, stuck = K.dynamic_wait_shop(
            self._instance_row, self._state_row, int(K.NONE) if until is None else int(until), self._objective,
            self._job_mask, self._features, self._wait_width, *self._dims(),
        )  # fmt: skip
        if self.pair_actions:
            K.dynamic_observe_pairs(self._instance_row, self._state_row, self._job_mask, self._mask, self._features,
                                    self._pair_features, self._wait_width, *self._dims())  # fmt: skip
        if stuck:
            raise SchedEnvError(f"scenario {self._item.name!r}: no event is left to wait for")
        info: dict[str, Any] = {"invalid_action": False, "time": self.time, "queued": self.queued}
        if done and not self._done:
            info.update(self.summary())
        self._done = bool(done)
        return self._observation(), float(reward), self._done, self._truncated(), info

    def render(self):
        if self.render_mode != "ansi" or self._item is None:
            return None
        from sched_env.render import gantt_text

        return gantt_text(self.schedule(), self._item.jobs, color=False)

    # ------------------------------------------------------------------ shop access
    @property
    def scenario(self) -> Scenario | None:
        return self._item

    @property
    def time(self) -> int:
        """The clock."""
        return int(self._state_row[self._T.now]) if self._item is not None else 0

    @property
    def queued(self) -> int:
        """Jobs that have arrived but wait for a free slot."""
        if self._item is None:
            return 0
        return int(self._state_row[self._T.n_arrived] - self._state_row[self._T.n_admitted])

    def _slots(self, name: str, length: int | None = None) -> np.ndarray:
        start = getattr(self._T, name)
        return self._state_row[start : start + (length or self.layout.J)].copy()

    def slot_jobs(self) -> np.ndarray:
        """The scenario job index in each slot (-1 for a free slot)."""
        stream = self._slots("slot_job")
        jobs = np.full(len(stream), -1, dtype=np.int64)
        jobs[stream >= 0] = self._order[stream[stream >= 0]]
        return jobs

    def progress(self) -> dict[int, int]:
        """Next operation index of every active job (in a slot, or 0 while it queues), by
        scenario job index."""
        active = {int(j): int(k) for j, k in zip(self.slot_jobs(), self.next_operations()) if j >= 0}
        queue = self._order[self._state_row[self._T.n_admitted] : self._state_row[self._T.n_arrived]]
        active.update(dict.fromkeys(queue.tolist(), 0))
        return active

    def next_operations(self) -> np.ndarray:
        """Index of the next operation of the job in each slot (its operation count once done)."""
        return self._slots("job_next_op")

    def planned_machines(self) -> np.ndarray:
        """The machine each slot's next operation would take now under the machine rule (among the
        machines where it can start now, else the one expected to end it first); -1 for none."""
        machines = self._slots("job_machine")
        machines[self._slots("slot_job") < 0] = -1
        return machines

    def machine_free_times(self) -> np.ndarray:
        """When each machine is expected to be free (start + planned duration of its last op)."""
        return self._slots("machine_expected", self.layout.M)

    def schedule(self) -> Schedule:
        """Operations run so far, with their real start and end times (scenario job numbering)."""
        if self._item is None:
            raise gym.error.ResetNeeded("call reset() first")
        return stream_schedule(self._rows, self._item, self._order, self._state_row)

    def snapshot(self):
        """What a planner knows now, as a :class:`~sched_env.snapshot.ShopState`."""
        from sched_env.snapshot import snapshot

        return snapshot(self)

    def summary(self) -> dict[str, Any]:
        """Objective values of the finished episode, and its validated schedule."""
        T = self._T
        return episode_summary(
            self._item, self.schedule(), int(self._state_row[T.wasted]), int(self._state_row[T.max_queued])
        )


class BatchDynamicJobShopEnv(DynamicShopOptions, BatchShopEnv):
    """N dynamic shops in arrays of shape ``(num_envs, ...)``, stepped by one kernel call, with
    same-step autoreset; same semantics, options and observation as :class:`DynamicJobShopEnv`.
    ``info`` follows :class:`~sched_env.vector.BatchJobShopEnv` (gymnasium's vector conventions;
    ``final_info`` has ``makespan``, ``total_weighted_tardiness``, ``mean_flow_time`` and
    ``wasted_work``). ``max_windows`` and ``max_stream`` bound the downtime windows and jobs of
    one scenario (default: what the first scenarios, or every scenario of a fixed list, need, doubled)."""

    def __init__(
        self,
        num_envs: int,
        scenario: ScenarioSpec = None,
        *,
        objective: str = DEFAULT_OBJECTIVE,
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        max_windows: int | None = None,
        max_stream: int | None = None,
        allow_wait: bool = False,
        strict: bool = False,
        render_mode: str | None = None,
        seed: int | None = None,
        machine_rule: str | None = None,
        pair_actions: bool | None = None,
    ) -> None:
        self.render_mode = render_mode
        self._set_options(scenario, objective, max_jobs, max_machines, max_ops, allow_wait, strict, machine_rule,
                          pair_actions)  # fmt: skip
        self.single_observation_space = self._dynamic_observation_space()
        self.single_action_space = spaces.Discrete(self.n_actions)
        self.num_envs = int(num_envs)
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        first = [self._source.draw(rng) for rng in self._make_rngs(seed)]
        known = first + list(self._source.fixed)  # a fixed list: room for every scenario in it
        self._rows = _row_layout(
            self.layout,
            first[0],
            max_windows or max(1, 2 * max(len(s.downtimes) for s in known)),
            max_stream or self._source.limits()[0] or 2 * max(s.jobs.n_jobs for s in first),
        )
        self._init_batch(num_envs, seed, K.N_DYNAMIC_FEATURES, self._rows.state_length)
        self.max_windows, self.max_stream = self._rows.D, self._rows.S
        N = self.num_envs
        self._insts = np.zeros((N, self._rows.instance_length), dtype=np.int64)
        self._interruptions = np.zeros(N, dtype=np.int64)
        self._stuck = np.zeros(N, dtype=np.bool_)
        self._counts = np.zeros(N, dtype=np.int64)
        self._orders: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * N
        self._final_orders: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * N
        L = self.layout
        self._job_masks = np.zeros((N, L.J + self.allow_wait), dtype=np.int8) if self.pair_actions else self._masks
        self._pair_features = np.zeros((N, L.J, L.M, K.N_PAIR_FEATURES), dtype=np.float32)
        self._final_pair_features = np.zeros_like(self._pair_features)

    def _moment(self, shop: int) -> str:
        return f"at time {self._states[shop, self._rows.state_offsets.now]}"

    # ------------------------------------------------------------------ kernel calls
    def _load(self, i: int, scenario: Scenario) -> None:
        self._orders[i] = encode_scenario(self._rows, scenario, self._insts[i], self._machine_rule)
        self._interruptions[i] = INTERRUPTION_IDS[scenario.interruption]
        self._items[i] = scenario

    def _reset_rows(self, rows: np.ndarray) -> None:
        if self.pair_actions:
            K.for_batch(K.dynamic_reset_batch_pairs, self.num_envs)(
                self._insts, self._states, rows, self._job_masks, self._masks, self._features, self._pair_features,
                self._counts, self._wait_width, *self._dims(),
            )  # fmt: skip
        else:
            K.for_batch(K.dynamic_reset_batch, self.num_envs)(
                self._insts, self._states, rows, self._masks, self._features, self._counts, self._wait_width,
                *self._dims(),
            )  # fmt: skip
        if (self._counts[rows] < 0).any():
            raise SchedEnvError("a scenario in the batch can never start an operation (check its downtimes)")

    def _kernel_step(self, actions: np.ndarray) -> None:
        if self.pair_actions:
            K.for_batch(K.dynamic_step_batch_pairs, self.num_envs)(
                self._insts, self._states, actions, self._interruptions, self._objective, True, self._job_masks,
                self._masks, self._features, self._pair_features, self._rewards, self._dones, self._invalids,
                self._stuck, self._final_masks, self._final_features, self._final_pair_features, self._final_states,
                self._wait_width, *self._dims(),
            )  # fmt: skip
        else:
            K.for_batch(K.dynamic_step_batch, self.num_envs)(
                self._insts, self._states, actions, self._interruptions, self._objective, True, self._masks,
                self._features, self._rewards, self._dones, self._invalids, self._stuck, self._final_masks,
                self._final_features, self._final_states, self._wait_width, *self._dims(),
            )  # fmt: skip
        if self._stuck.any():
            raise SchedEnvError(f"shop {int(np.argmax(self._stuck))}: no operation can ever start again")
        for i in np.flatnonzero(self._dones).tolist():
            self._final_orders[i] = self._orders[i]

    def _reset_values(self, rows: np.ndarray) -> dict[str, Any]:
        T = self._rows.state_offsets
        return {"time": self._states[rows, T.now], "scenario": [self._items[i].name for i in rows.tolist()]}

    def _final_values(self, rows: np.ndarray) -> dict[str, Any]:
        T = self._rows.state_offsets
        n_jobs = np.array([max(self._final_items[i].jobs.n_jobs, 1) for i in rows.tolist()])
        return {
            "makespan": self._final_states[rows, T.makespan],
            "total_weighted_tardiness": self._final_states[rows, T.total_tardiness],
            "mean_flow_time": self._final_states[rows, T.total_flow] / n_jobs,
            "wasted_work": self._final_states[rows, T.wasted],
            "max_queued": self._final_states[rows, T.max_queued],
            "scenario": [self._final_items[i].name for i in rows.tolist()],
        }

    # ------------------------------------------------------------------ shop access
    def rule_choices(self, rule_id: int) -> np.ndarray:
        """The allowed job the dispatching rule with kernel id ``rule_id`` picks now, per shop
        (ATC with the clock as "now"; the random rule takes the first allowed job)."""
        rule_id = check_rule_id(rule_id)
        dims = self._dims()
        jobs = np.array(
            [K.dynamic_choose(self._insts[i], self._states[i], self._job_masks[i], rule_id, 0.0, *dims)
             for i in range(self.num_envs)], dtype=np.int64,
        )  # fmt: skip
        if not self.pair_actions:
            return jobs
        T = self._rows.state_offsets
        machines = self._states[np.arange(self.num_envs), T.job_machine + np.maximum(jobs, 0)]
        return np.where(jobs >= 0, jobs * self.layout.M + machines, jobs)

    def copy_shops(self, source: int, targets) -> None:
        """Put shop ``source``'s exact state (clock, slots, queues, what has run, its scenario's
        future) into each shop of ``targets``, so they can go on from the same moment with other
        decisions: the state copy of rollout-based look-ahead (try each action, then a base policy,
        with common random numbers). Targets keep their own random streams for the next reset."""
        targets = np.atleast_1d(np.asarray(targets, dtype=np.int64))
        if not 0 <= int(source) < self.num_envs or ((targets < 0) | (targets >= self.num_envs)).any():
            raise ValueError(f"shops are 0..{self.num_envs - 1}; got source {source} and targets {targets.tolist()}")
        if self._items[source] is None:
            raise gym.error.ResetNeeded("call reset() before copy_shops()")
        arrays = [self._insts, self._states, self._masks, self._features, self._interruptions, self._counts]
        if self.pair_actions:
            arrays += [self._job_masks, self._pair_features]
        for array in arrays:
            array[targets] = array[source]
        for i in targets.tolist():
            self._items[i], self._orders[i] = self._items[source], self._orders[source]

    def scenario(self, index: int) -> Scenario:
        return self._items[index]

    def instance(self, index: int):
        return self._items[index].jobs

    def schedule(self, index: int) -> Schedule:
        """Operations run so far in shop ``index`` (real times, scenario job numbering)."""
        return stream_schedule(self._rows, self._items[index], self._orders[index], self._states[index])

    def final_schedule(self, index: int) -> Schedule:
        """Real-time schedule of the episode shop ``index`` finished most recently."""
        scenario = self._final_item(index)
        return stream_schedule(self._rows, scenario, self._final_orders[index], self._final_states[index])
