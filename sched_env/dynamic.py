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

from instances import InvalidActionError, InvalidScenarioError, SchedEnvError
from sched_env import _kernels as K
from sched_env.events import Scenario, ScenarioGenerator
from sched_env.schedule import Schedule, objectives, validate_schedule
from sched_env.shop import ShopLayout, final_info, option

OBJECTIVES = {"makespan": K.OBJECTIVE_MAKESPAN, "tardiness": K.OBJECTIVE_TARDINESS, "flow": K.OBJECTIVE_FLOW}
INTERRUPTION_IDS = {"resume": K.INTERRUPT_RESUME, "restart": K.INTERRUPT_RESTART}
DYNAMIC_FEATURE_NAMES = (
    "allowed",
    "next_planned_duration",
    "planned_remaining_work",
    "remaining_ops",
    "job_busy_for",
    "machine_busy_for",
    "machine_down",
    "machine_down_for",
    "machine_planned_load",
    "due_date_slack",
    "weight",
    "time_in_system",
)

ScenarioSpec = Scenario | Sequence[Scenario] | Callable[..., Scenario] | None


class ScenarioSource:
    """One scenario, a list (one drawn per reset), or a generator ``gen(rng) -> Scenario``."""

    def __init__(self, spec: ScenarioSpec) -> None:
        spec = ScenarioGenerator() if spec is None else spec
        self.generator = None
        self.fixed: list[Scenario] = []
        if isinstance(spec, Scenario):
            self.fixed = [spec]
        elif callable(spec):
            self.generator = spec
        elif isinstance(spec, Sequence) and spec and all(isinstance(s, Scenario) for s in spec):
            self.fixed = list(spec)
        else:
            raise InvalidScenarioError(
                f"scenario must be a Scenario, a non-empty list of them, or a generator callable(rng) -> Scenario; got {spec!r}"
            )

    def limits(self) -> tuple[int | None, int | None, int | None]:
        if self.fixed:
            jobs = [s.jobs for s in self.fixed]
            return max(i.n_jobs for i in jobs), max(i.n_machines for i in jobs), max(i.max_ops for i in jobs)
        return tuple(getattr(self.generator, f"max_{k}", None) for k in ("jobs", "machines", "ops"))  # type: ignore[return-value]

    @property
    def changes(self) -> bool:
        """True when different resets can give different scenarios."""
        return self.generator is not None or len(self.fixed) > 1

    def draw(self, rng: np.random.Generator) -> Scenario:
        if self.generator is not None:
            scenario = self.generator(rng)
            if not isinstance(scenario, Scenario):
                raise InvalidScenarioError(f"the scenario generator returned {type(scenario).__name__}, not a Scenario")
            return scenario
        return self.fixed[0] if len(self.fixed) == 1 else self.fixed[int(rng.integers(len(self.fixed)))]


def encode_scenario(layout: ShopLayout, scenario: Scenario, max_windows: int) -> np.ndarray:
    """The dynamic instance row of a scenario (static fields, real durations, weights, windows)."""
    J, M, O = layout.J, layout.M, layout.O  # noqa: E741
    row = np.zeros(K.dynamic_instance_row_length(J, M, O, max_windows), dtype=np.int64)
    jobs = scenario.jobs
    layout.encode(jobs, row[: layout.instance_length])
    row[K.IN_TIME_SCALE] = max(1, int(round(float(jobs.job_work().mean()))))
    REAL, WEIGHT, FIRST, START, END, KIND = K.dynamic_instance_offsets(J, M, O, max_windows)
    real = np.zeros((J, O), dtype=np.int64)
    real[: jobs.n_jobs, : jobs.max_ops] = scenario.realized_durations
    row[REAL : REAL + J * O] = real.ravel()
    row[WEIGHT : WEIGHT + jobs.n_jobs] = jobs.weights
    windows = scenario.downtimes  # sorted by machine, then start
    counts = np.bincount(windows[:, 0], minlength=M) if len(windows) else np.zeros(M, dtype=np.int64)
    row[FIRST : FIRST + M + 1] = np.concatenate([[0], np.cumsum(counts)])
    n = len(windows)
    row[START : START + n], row[END : END + n], row[KIND : KIND + n] = windows[:, 1], windows[:, 2], windows[:, 3]
    return row


class DynamicJobShopEnv(gym.Env):
    """A job shop that runs in time: arrivals, breakdowns, maintenance, noisy durations.

    ## Time and decisions
    The clock starts at 0. At each decision, the allowed jobs (the mask) are those whose next
    operation can start *now*: the job has arrived, its previous operation has finished, and
    the machine is idle and up. Action ``j`` starts job ``j``'s next operation now. When no
    job can start, the clock jumps by itself to the next event: an operation ends, a job
    arrives, or a machine is repaired (decision epochs). Operations take their *real*
    duration (planned x noise), known only when they end. A downtime (breakdown, or planned
    maintenance) that begins during an operation interrupts it, per the scenario's declared
    policy: ``resume`` (it continues after the repair) or ``restart`` (the work so far is
    lost; the job must start that operation again once the machine is back).

    ## Observation
    ``Dict(jobs=Box(max_jobs, 12) float32, action_mask=MultiBinary(max_jobs))`` from what a
    planner knows now: only arrived, unfinished jobs have non-zero rows; durations are the
    planned ones; a breakdown is seen once it has begun (with its repair time), maintenance
    only while it runs. Columns (``DYNAMIC_FEATURE_NAMES``): allowed, next planned duration,
    planned work left, operations left, time until the job's running op is expected to end,
    time until its next machine is expected to be free, machine down now, for how long,
    planned load of arrived jobs on that machine, due-date slack, weight (/ largest),
    time in system. Times are divided by the scenario's mean planned job work.

    ## Reward (``objective``)
    Accrued over the time that passes: ``"makespan"`` -elapsed time (the return is minus the
    makespan); ``"flow"`` -(jobs in system x time) / n_jobs (minus the mean flow time);
    ``"tardiness"`` (default) -(weighted late jobs x time) / n_jobs (minus the total weighted
    tardiness / n_jobs). All divided by the time scale.

    ## Episode end
    Terminates when every operation of every job has run (the clock then stands at the last
    completion). ``info`` then has ``makespan``, ``total_weighted_tardiness``,
    ``mean_flow_time``, ``wasted_work`` (lost to restarts) and the ``schedule`` of real times.
    ``info["time"]`` is the clock at every step. ``max_time`` truncates the episode.

    ## Arguments
    ``scenario``: a :class:`~sched_env.events.Scenario`, a list of them, or a generator
    ``gen(rng) -> Scenario`` (default: :class:`~sched_env.events.ScenarioGenerator()`: 5
    machines, 5 jobs at the start, 15 arriving at 85 % utilisation). ``max_jobs``,
    ``max_machines``, ``max_ops``: the padded window (default: what the source needs).
    ``strict``: raise :class:`InvalidActionError` on an action outside the mask (otherwise the
    lowest allowed job is started and ``info["invalid_action"]`` is True).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: ScenarioSpec = None,
        *,
        objective: str = "tardiness",
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        max_time: int | None = None,
        strict: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be 'ansi' or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.objective = objective
        self._objective = option(objective, OBJECTIVES, "objective")
        self.strict = bool(strict)
        self.max_time = max_time
        self._source = ScenarioSource(scenario)
        jobs, machines, ops = self._source.limits()
        J, M = max_jobs or jobs, max_machines or machines
        O = max_ops or ops or M  # noqa: E741
        if J is None or M is None:
            raise ValueError(
                "with a scenario generator that has no max_jobs/max_machines, pass max_jobs= and max_machines="
            )
        self.layout = ShopLayout(int(J), int(M), int(O))
        self.action_space = spaces.Discrete(self.layout.J)
        self.observation_space = spaces.Dict(
            {
                "jobs": spaces.Box(
                    -K.FEATURE_LIMIT, K.FEATURE_LIMIT, (self.layout.J, K.N_DYNAMIC_FEATURES), np.float32
                ),
                "action_mask": spaces.MultiBinary(self.layout.J),
            }
        )
        self._state_row = np.zeros(K.dynamic_state_row_length(J, M, O), dtype=np.int64)
        self._instance_row = np.zeros(0, dtype=np.int64)
        self._windows = 0
        self._mask = np.zeros(self.layout.J, dtype=np.int8)
        self._features = np.zeros((self.layout.J, K.N_DYNAMIC_FEATURES), dtype=np.float32)
        self._scenario: Scenario | None = None
        self._done = True

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        chosen = (options or {}).get("scenario")
        scenario = (
            ScenarioSource(chosen).draw(self.np_random) if chosen is not None else self._source.draw(self.np_random)
        )
        jobs = scenario.jobs
        L = self.layout
        if jobs.n_jobs > L.J or jobs.n_machines > L.M or jobs.max_ops > L.O:
            raise InvalidScenarioError(
                f"scenario {scenario.name!r} ({jobs.n_jobs} jobs, {jobs.n_machines} machines) does not fit this env"
                f" (max_jobs={L.J}, max_machines={L.M}, max_ops={L.O})"
            )
        self._windows = max(1, len(scenario.downtimes))
        self._instance_row = encode_scenario(L, scenario, self._windows)
        self._interruption = INTERRUPTION_IDS[scenario.interruption]
        self._scenario = scenario
        count = K.dynamic_reset_and_observe(
            self._instance_row, self._state_row, self._mask, self._features, L.J, L.M, L.O, self._windows
        )
        if count < 0:
            raise SchedEnvError(f"scenario {scenario.name!r}: no operation can ever start (check its downtimes)")
        self._done = count == 0
        return self._observation(), {"time": self.time, "scenario": scenario.name}

    def step(self, action):
        if self._scenario is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        action = int(action)
        if self.strict and not (0 <= action < self.layout.J and self._mask[action]):
            raise InvalidActionError(
                f"action {action} is not allowed at time {self.time}; allowed jobs: {np.flatnonzero(self._mask).tolist()}"
            )
        L = self.layout
        reward, done, invalid, stuck = K.dynamic_step_shop(
            self._instance_row, self._state_row, action, self._interruption, self._objective,
            self._mask, self._features, L.J, L.M, L.O, self._windows,
        )  # fmt: skip
        if stuck:
            raise SchedEnvError(f"scenario {self._scenario.name!r}: no operation can ever start again")
        info: dict[str, Any] = {"invalid_action": bool(invalid), "time": self.time}
        if done and not self._done:
            info.update(self.summary())
        elif done:
            reward = 0.0
        self._done = bool(done)
        truncated = not self._done and self.max_time is not None and self.time >= self.max_time
        return self._observation(), float(reward), self._done, truncated, info

    def action_masks(self) -> np.ndarray:
        return self._mask.astype(bool)

    def render(self):
        if self.render_mode != "ansi" or self._scenario is None:
            return None
        from sched_env.render import gantt_text

        return gantt_text(self.schedule(), self._scenario.jobs, color=False)

    # ------------------------------------------------------------------ shop access
    @property
    def scenario(self) -> Scenario | None:
        return self._scenario

    @property
    def time(self) -> int:
        return int(self._state_row[K.dynamic_state_offsets(self.layout.J, self.layout.M, self.layout.O)[0]])

    def schedule(self) -> Schedule:
        """Operations run so far, with their real start and end times."""
        if self._scenario is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self.layout.schedule(self._scenario.jobs, self._state_row)

    def snapshot(self):
        """What a planner knows now, as a :class:`~sched_env.snapshot.ShopState`."""
        from sched_env.snapshot import snapshot

        return snapshot(self)

    def summary(self) -> dict[str, Any]:
        """Objective values of the finished episode, and its validated schedule."""
        scenario = self._scenario
        jobs = scenario.jobs
        schedule = validate_schedule(
            jobs, self.schedule(), durations=scenario.realized_durations, downtimes=scenario.downtimes,
            interruption=scenario.interruption,
        )  # fmt: skip
        values = objectives(jobs, schedule)
        wasted = int(self._state_row[K.dynamic_state_offsets(self.layout.J, self.layout.M, self.layout.O)[1]])
        return {
            "makespan": values["makespan"],
            "total_weighted_tardiness": values["tardiness"],
            "mean_flow_time": values["mean_flow_time"],
            "wasted_work": wasted,
            "schedule": schedule,
        }

    def _observation(self) -> dict[str, np.ndarray]:
        return {"jobs": self._features.copy(), "action_mask": self._mask.copy()}


class BatchDynamicJobShopEnv:
    """N dynamic shops in arrays of shape ``(num_envs, ...)``, stepped by one kernel call, with
    same-step autoreset; same semantics and observation as :class:`DynamicJobShopEnv`.
    ``info`` after a step follows :class:`~sched_env.vector.BatchJobShopEnv` (``final_index``,
    ``final_obs``, ``_final``). ``max_windows`` bounds the downtime windows of one scenario
    (default: what the first scenarios need, doubled)."""

    def __init__(
        self,
        num_envs: int,
        scenario: ScenarioSpec = None,
        *,
        objective: str = "tardiness",
        max_jobs: int | None = None,
        max_machines: int | None = None,
        max_ops: int | None = None,
        max_windows: int | None = None,
        seed: int | None = None,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = N = int(num_envs)
        self.objective = objective
        self._objective = option(objective, OBJECTIVES, "objective")
        single = DynamicJobShopEnv(scenario, max_jobs=max_jobs, max_machines=max_machines, max_ops=max_ops)
        self._source, self.layout = single._source, single.layout
        self.single_observation_space, self.single_action_space = single.observation_space, single.action_space
        self._rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(N)]
        self._scenarios: list[Scenario] = [self._source.draw(rng) for rng in self._rngs]
        self.max_windows = max_windows or max(1, 2 * max(len(s.downtimes) for s in self._scenarios))
        L = self.layout
        self._insts = np.zeros((N, K.dynamic_instance_row_length(L.J, L.M, L.O, self.max_windows)), dtype=np.int64)
        self._states = np.zeros((N, K.dynamic_state_row_length(L.J, L.M, L.O)), dtype=np.int64)
        self._interruptions = np.zeros(N, dtype=np.int64)
        self._masks = np.zeros((N, L.J), dtype=np.int8)
        self._features = np.zeros((N, L.J, K.N_DYNAMIC_FEATURES), dtype=np.float32)
        self._final_masks, self._final_features = np.zeros_like(self._masks), np.zeros_like(self._features)
        self._final_states = np.zeros_like(self._states)
        self._rewards = np.zeros(N)
        self._dones, self._invalids, self._stuck = (np.zeros(N, dtype=np.bool_) for _ in range(3))
        self._counts = np.zeros(N, dtype=np.int64)
        self._final_scenarios: list[Scenario | None] = [None] * N

    def _load(self, i: int, scenario: Scenario) -> None:
        L = self.layout
        if len(scenario.downtimes) > self.max_windows:
            raise InvalidScenarioError(
                f"scenario {scenario.name!r} has {len(scenario.downtimes)} downtime windows; this batch holds"
                f" {self.max_windows}: pass a larger max_windows="
            )
        if scenario.jobs.n_jobs > L.J or scenario.jobs.n_machines > L.M or scenario.jobs.max_ops > L.O:
            raise InvalidScenarioError(f"scenario {scenario.name!r} does not fit this batch's window")
        self._insts[i] = encode_scenario(L, scenario, self.max_windows)
        self._interruptions[i] = INTERRUPTION_IDS[scenario.interruption]
        self._scenarios[i] = scenario

    def _reset_rows(self, rows: np.ndarray) -> None:
        L = self.layout
        K.dynamic_reset_batch(
            self._insts, self._states, rows, self._masks, self._features, self._counts, L.J, L.M, L.O, self.max_windows
        )
        if (self._counts[rows] < 0).any():
            raise SchedEnvError("a scenario in the batch can never start an operation (check its downtimes)")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(self.num_envs)]
            self._scenarios = [self._source.draw(rng) for rng in self._rngs]
        for i, scenario in enumerate(self._scenarios):
            self._load(i, scenario)
        self._reset_rows(np.arange(self.num_envs, dtype=np.int64))
        return self._observation(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions (one per shop), got {actions.shape[0]}")
        L = self.layout
        K.dynamic_step_batch(
            self._insts, self._states, actions, self._interruptions, self._objective, True, self._masks,
            self._features, self._rewards, self._dones, self._invalids, self._stuck, self._final_masks,
            self._final_features, self._final_states, L.J, L.M, L.O, self.max_windows,
        )  # fmt: skip
        if self._stuck.any():
            raise SchedEnvError(f"shop {int(np.argmax(self._stuck))}: no operation can ever start again")
        info: dict[str, Any] = {"invalid_action": self._invalids.copy()}
        if self._dones.any():
            info.update(final_info(self._dones, self._final_features, self._final_masks))
            done = info["final_index"]
            for i in done.tolist():
                self._final_scenarios[i] = self._scenarios[i]
            if self._source.changes:  # draw new scenarios for the shops that finished
                for i in done.tolist():
                    self._load(i, self._source.draw(self._rngs[i]))
                self._reset_rows(done.astype(np.int64))
        return self._observation(), self._rewards.copy(), self._dones.copy(), np.zeros(self.num_envs, dtype=bool), info

    def action_masks(self) -> np.ndarray:
        return self._masks.astype(bool)

    def scenario(self, index: int) -> Scenario:
        return self._scenarios[index]

    def final_schedule(self, index: int) -> Schedule:
        """Real-time schedule of the episode shop ``index`` finished most recently."""
        scenario = self._final_scenarios[index]
        if scenario is None:
            raise ValueError(f"shop {index} has not finished an episode yet")
        return self.layout.schedule(scenario.jobs, self._final_states[index])

    def _observation(self) -> dict[str, np.ndarray]:
        return {"jobs": self._features.copy(), "action_mask": self._masks.copy()}
