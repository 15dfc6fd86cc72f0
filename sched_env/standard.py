"""The standard dynamic job-shop simulation of the dispatching literature, as named settings.

The GP hyper-heuristic line (GPJSS ``DynamicSimulation``) and jasima's ``DynamicShopExperiment``
judge online rules on one long-run shop: 10 machines, random routes without a machine twice,
processing times uniform in 1..99 (integers here), Poisson arrivals set from the utilisation,
due date = arrival + f x the job's total work, weights 4 / 2 / 1 with probabilities 0.2 / 0.6 /
0.2, 1 000 warm-up jobs and the next 5 000 recorded. The settings and the published figures they are checked
against: ``experiments/results/standard.md`` and ``experiments/holthaus_check.py``.

## Setting names
``ROUTING-UTILISATION-F[-blBL-rtfRTF][-mMACHINES][-pMAXP][-wWARMUP][-rRECORDED]``:

* ``ROUTING``: ``missing`` (operations per job uniform in 2..machines) or ``full`` (every
  machine once);
* ``UTILISATION``: the nominal machine utilisation, e.g. ``0.85``; ``F``: the due-date
  allowance factor, e.g. ``4`` (due = arrival + F x total work);
* ``-blBL-rtfRTF``: breakdowns (Holthaus 1999): breakdown level ``BL`` in percent of the time
  a machine is down, mean repair ``MTTR = RTF x mean processing time``; up-times exponential
  with mean ``MTTR / BL - MTTR``, repairs exponential with mean ``MTTR``; an interrupted
  operation resumes after the repair; arrivals are not slowed for the downtime;
* ``-mN`` machines (default 10), ``-pN`` the longest processing time (default 99, shortest
  1), ``-wN`` warm-up jobs (1 000), ``-rN`` recorded jobs (5 000);
* ``-aA-sS``: a flexible shop: each operation may also run on up to ``A - 1`` other machines
  (how many: uniform in 0..A-1), at its duration divided by that machine's speed, speeds uniform
  in ``1 -+ S`` per stream (``missing-0.90-4-a3-s0.2``); dispatching then picks the machine too;
* ``-iN``: the first ``N`` jobs are there at time 0 (a shift that starts with work waiting);
  the next arrive as before, counted from 0;
* ``-nN``: duration noise: each operation really takes ``round(planned x f)``, ``f`` uniform in
  ``1 -+ N`` (at least 1); dispatchers see the planned durations;
* ``-fin``: a finite episode: no jobs arrive after the recorded ones, so the shop fills, runs
  and drains (``missing-0.90-4-w0-r20-fin`` is a 20-job episode from an empty shop,
  ``full-0.90-1.5-m15-w0-r20-i5-n0.1-fin`` one that starts with 5 jobs waiting).

So ``missing-0.80-3`` and ``full-0.95-4-bl5-rtf10-m20`` are settings.

## What is recorded
Jobs are numbered in arrival order. The jobs ``WARMUP .. WARMUP + RECORDED - 1`` are recorded,
each counted when it finishes; arrivals go on after them (a tail of ``max(200, RECORDED / 5)``
more jobs keeps the shop loaded while the recorded jobs finish), and the run ends when every
job has finished. Dispatching is non-delay: a machine that is free and has a queue starts a job
at once. Ties go to the first-arrived job.

## Seeds
Seed ``s`` of purpose ``train``, ``validation`` or ``test`` draws from
``numpy.random.SeedSequence((PURPOSE_TAG, s))``: the three families never share a stream, for
any seeds. Benchmarks use the test seeds; training and model selection never do.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from instances import InvalidScenarioError, JobShopInstance
from sched_env.events import (  # noqa: F401
    BREAKDOWN,
    PURPOSES,
    RecordedStream,
    Scenario,
    _with_alternatives,
    alternating_windows,  # fmt: skip
    stream_rng,
)

#: The eight settings the literature reports (the issue's table): four without breakdowns, four with.
STANDARD_SETTINGS = (
    "missing-0.85-4", "missing-0.95-4", "full-0.85-4", "full-0.95-4",
    "missing-0.90-4-bl2.5-rtf5", "missing-0.90-4-bl5-rtf5", "missing-0.90-4-bl2.5-rtf10", "missing-0.90-4-bl5-rtf10",
)  # fmt: skip
#: Flexible settings in the same grammar (alternatives per operation, machine speed spread), loaded
#: enough that the alternatives' added balance still leaves tardiness; 300 + 1 500 jobs each.
FLEXIBLE_SETTINGS = (
    "missing-0.95-4-a2-s0.2-w300-r1500", "missing-0.98-2-a3-s0.2-w300-r1500", "full-0.97-3-a2-s0.3-w300-r1500",
    "missing-0.95-3-bl5-rtf5-a2-s0.2-w300-r1500",
)  # fmt: skip
WEIGHTS = (4, 2, 1)
WEIGHT_PROBABILITIES = (0.2, 0.6, 0.2)
_NAME = re.compile(
    r"^(?P<routing>missing|full)-(?P<utilisation>\d*\.?\d+)-(?P<allowance>\d*\.?\d+)"
    r"(?:-bl(?P<level>\d*\.?\d+)-rtf(?P<repair>\d*\.?\d+))?"
    r"(?:-m(?P<machines>\d+))?(?:-p(?P<max_duration>\d+))?(?:-a(?P<alternatives>\d+))?(?:-s(?P<spread>\d*\.?\d+))?(?:-w(?P<warmup>\d+))?(?:-r(?P<recorded>\d+))?"
    r"(?:-i(?P<initial>\d+))?(?:-n(?P<noise>\d*\.?\d+))?(?P<finite>-fin)?$"
)
GRAMMAR = (
    "ROUTING-UTILISATION-F[-blBL-rtfRTF][-mMACHINES][-pMAXP][-aALTERNATIVES][-sSPREAD][-wWARMUP][-rRECORDED]"
    "[-iINITIAL][-nNOISE][-fin], e.g. missing-0.85-4"
)


@dataclass(frozen=True)
class StandardSetting(RecordedStream):
    """One setting of the standard simulation (see the module docstring for the name grammar)."""

    routing: str = "missing"
    utilisation: float = 0.85
    allowance: float = 4.0
    breakdown_level: float = 0.0  # share of the time a machine is down (0.025 = 2.5 %)
    repair_factor: float = 0.0  # mean repair = repair_factor x mean processing time
    machines: int = 10
    max_duration: int = 99
    warmup: int = 1000
    recorded: int = 5000
    finite: bool = False  # an episode: no jobs after the recorded ones, the shop drains
    alternatives: int = 1  # a flexible shop: each operation may run on 1..alternatives machines
    speed_spread: float = 0.0  # machine speeds uniform in 1 -+ this (durations elsewhere than the route's)
    initial: int = 0  # jobs already there at time 0
    noise: float = 0.0  # real durations: planned x uniform(1 - noise, 1 + noise)

    @property
    def tail(self) -> int:
        return 0 if self.finite else super().tail

    def __post_init__(self) -> None:
        problems = []
        if self.routing not in ("missing", "full"):
            problems.append(f"routing must be 'missing' or 'full', got {self.routing!r}")
        if not 0 < self.utilisation < 1:
            problems.append(f"utilisation must be in (0, 1), got {self.utilisation}")
        if not self.allowance > 0:
            problems.append(f"the allowance factor must be > 0, got {self.allowance}")
        if not 0 <= self.breakdown_level < 0.5 or (self.breakdown_level > 0) != (self.repair_factor > 0):
            problems.append(
                "breakdowns need a level in (0, 50) % and a repair-time factor > 0 (bl2.5-rtf5), or neither"
            )
        if not 1 <= self.alternatives <= self.machines or not 0 <= self.speed_spread < 1:
            problems.append("alternatives in 1..machines and a speed spread in [0, 1)")
        if not 0 <= self.noise < 1 or not 0 <= self.initial <= self.warmup + self.recorded:
            problems.append("noise in [0, 1) and initial jobs in 0..warm-up + recorded")
        if self.machines < 2 or self.max_duration < 1 or self.warmup < 0 or self.recorded < 1:
            problems.append("machines >= 2, longest processing time >= 1, warm-up >= 0 and recorded >= 1 jobs")
        if problems:
            raise InvalidScenarioError(f"standard setting {self.name!r}: " + "; ".join(problems))

    @classmethod
    def parse(cls, text: str) -> StandardSetting:
        """A setting from its name, e.g. ``missing-0.90-4-bl2.5-rtf5``."""
        match = _NAME.match(str(text).strip().lower())
        if match is None:
            raise InvalidScenarioError(f"{text!r} is not a standard setting name; the grammar is {GRAMMAR}")
        g = {k: v for k, v in match.groupdict().items() if v is not None}
        options: dict[str, Any] = {"routing": g["routing"], "utilisation": float(g["utilisation"]),
                                   "allowance": float(g["allowance"])}  # fmt: skip
        if "level" in g:
            options |= {"breakdown_level": float(g["level"]) / 100, "repair_factor": float(g["repair"])}
        for key in ("machines", "max_duration", "alternatives", "warmup", "recorded", "initial"):
            if key in g:
                options[key] = int(g[key])
        if "spread" in g:
            options["speed_spread"] = float(g["spread"])
        if "noise" in g:
            options["noise"] = float(g["noise"])
        options["finite"] = "finite" in g
        return cls(**options)

    @property
    def name(self) -> str:
        name = f"{self.routing}-{self.utilisation:.2f}-{self.allowance:g}"
        if self.breakdown_level:
            name += f"-bl{100 * self.breakdown_level:g}-rtf{self.repair_factor:g}"
        defaults = StandardSetting.__dataclass_fields__
        tags = (("machines", "m"), ("max_duration", "p"), ("alternatives", "a"), ("speed_spread", "s"), ("warmup", "w"),
                ("recorded", "r"), ("initial", "i"), ("noise", "n"))  # fmt: skip
        for key, tag in tags:
            if getattr(self, key) != defaults[key].default:
                name += f"-{tag}{getattr(self, key):g}"
        return name + ("-fin" if self.finite else "")

    # ----------------------------------------------------------------- the stream
    @property
    def flexible(self) -> bool:
        return self.alternatives > 1

    @property
    def mean_ops(self) -> float:
        return (2 + self.machines) / 2 if self.routing == "missing" else float(self.machines)

    @property
    def mean_duration(self) -> float:
        return (1 + self.max_duration) / 2

    @property
    def mean_interarrival(self) -> float:
        """Mean time between arrivals: mean job work / (utilisation x machines)."""
        return self.mean_ops * self.mean_duration / (self.utilisation * self.machines)

    def scenario(self, seed: int, purpose: str = "test") -> Scenario:
        """The stream of seed ``seed`` in the ``purpose`` family (train / validation / test)."""
        rng = stream_rng(purpose, seed)
        n, M = self.n_jobs, self.machines
        n_ops = rng.integers(2, M + 1, size=n) if self.routing == "missing" else np.full(n, M)
        routes = np.argsort(rng.random((n, M)), axis=1)  # a random permutation of the machines per job
        durations = rng.integers(1, self.max_duration + 1, size=(n, M))
        beyond = np.arange(M)[None, :] >= n_ops[:, None]
        machines = np.where(beyond, -1, routes)
        durations = np.where(beyond, 0, durations)
        arrivals = np.round(np.cumsum(rng.exponential(self.mean_interarrival, size=n))).astype(np.int64)
        if self.initial:  # the first jobs wait at time 0; the rest keep their gaps, counted from 0
            arrivals[self.initial :] -= arrivals[self.initial - 1]
            arrivals[: self.initial] = 0
        work = durations.sum(axis=1)
        due = arrivals + np.round(self.allowance * work).astype(np.int64)
        weights = rng.choice(np.asarray(WEIGHTS, dtype=np.int64), size=n, p=WEIGHT_PROBABILITIES)
        jobs = JobShopInstance(
            machines, durations, n_machines=M, n_ops=n_ops, release_dates=arrivals, due_dates=due, weights=weights,
            name=f"{self.name}#{purpose}{seed}",
        )  # fmt: skip
        windows = []
        if self.breakdown_level:
            mttr = self.repair_factor * self.mean_duration
            mtbf = mttr / self.breakdown_level - mttr
            horizon = int(arrivals[-1] + 20 * self.mean_ops * self.mean_duration)
            for machine in range(M):
                windows += [(machine, s, e, BREAKDOWN) for s, e in alternating_windows(rng, mtbf, mttr, horizon)]
        realized = None
        if self.alternatives > 1:  # drawn after everything else: the classic streams stay as they were
            jobs, realized = _with_alternatives(jobs, rng, (1, self.alternatives), self.speed_spread, self.noise)
        elif self.noise:
            factors = rng.uniform(1 - self.noise, 1 + self.noise, size=durations.shape)
            realized = np.where(durations > 0, np.maximum(1, np.round(durations * factors)), 0).astype(np.int64)
        return Scenario(
            jobs, realized_durations=realized, downtimes=np.array(windows, dtype=np.int64).reshape(-1, 4),
            interruption="resume", name=jobs.name, metadata={"setting": self.name, "seed": int(seed), "purpose": purpose},
        )  # fmt: skip


def setting(spec):
    """A :class:`StandardSetting` from its name, a user's shop from ``shop:PATH`` (a
    :class:`~sched_env.shop_spec.ShopSpec` file, ``sched-env fit-shop``); a setting object as it is."""
    if not isinstance(spec, str):
        return spec
    if spec.startswith("shop:"):
        return _shop_spec(spec.removeprefix("shop:"))
    return StandardSetting.parse(spec)


@functools.lru_cache(maxsize=16)
def _shop_spec(path: str):
    from sched_env.shop_spec import ShopSpec

    return ShopSpec.load(path)


def recorded_metrics(setting: StandardSetting, scenario: Scenario, start: np.ndarray, end: np.ndarray) -> dict:
    """The standard objectives over the recorded jobs, from the real start and end times of every
    operation (stream-job rows, -1 where an operation never ran)."""
    jobs = scenario.jobs
    last = end[np.arange(jobs.n_jobs), jobs.n_ops - 1]
    if (last < 0).any():
        raise InvalidScenarioError(f"{scenario.name}: {int((last < 0).sum())} jobs never finished")
    window = setting.recorded_jobs
    completion = last[window]
    release, due, weight = jobs.release_dates[window], jobs.due_dates[window], jobs.weights[window]
    tardiness = np.maximum(0, completion - due)
    flow = completion - release
    t0, t1 = int(release.min()), int(completion.max())  # the recorded period: utilisation inside it
    ran = end >= 0
    busy = (np.clip(end, t0, t1) - np.clip(start, t0, t1))[ran].sum()
    return {
        "weighted_tardiness_mean": float((weight * tardiness).mean()),
        "tardiness_mean": float(tardiness.mean()),
        "flow_mean": float(flow.mean()),
        "flow_max": int(flow.max()),
        "tardy_share": float((tardiness > 0).mean()),
        "utilisation": float(busy / (scenario.n_machines * max(1, t1 - t0))),
        "steady_to_end": bool(t1 <= int(jobs.release_dates[-1])),  # arrivals still came when the last one finished
    }


# ---------------------------------------------------------------------- running streams fast
#: Job slots for a standard stream: more than the jobs ever in a 10-machine shop at 0.95 (FIFO
#: peaks near 200); ``max_queued`` in the results says whether any job ever waited for one.
DEFAULT_WINDOW = 320


def run_streams(scenarios, *, rules=None, params=None, hidden: int = 0, window: int = DEFAULT_WINDOW):
    """Run each stream to its end in one kernel call, shop i dispatching by rule id ``rules[i]``
    or by the priority network ``params[i]`` (``hidden`` units). Returns per shop the real
    (start, end) matrices by job and the most jobs that ever waited for a slot."""
    from sched_env import _kernels as K
    from sched_env.dynamic import encode_scenarios

    layout, insts, orders, interruptions = encode_scenarios(scenarios, window)
    for scenario, order in zip(scenarios, orders):
        if not np.array_equal(order, np.arange(scenario.jobs.n_jobs)):
            raise InvalidScenarioError(f"{scenario.name}: a stream's jobs must be numbered in arrival order")
    n = len(scenarios)
    states = np.zeros((n, layout.state_length), dtype=np.int64)
    masks = np.zeros((n, layout.J), dtype=np.int8)
    dims = (layout.J, layout.M, layout.O, layout.D, layout.S)
    if params is not None:
        kernel = K.for_batch(K.rollout_dynamic_scored, n, long_episodes=True)
        kernel(insts, states, np.ascontiguousarray(params, dtype=np.float64), int(hidden), interruptions,
               K.OBJECTIVE_TARDINESS, masks, *dims)  # fmt: skip
    else:
        kernel = K.for_batch(K.rollout_dynamic_rules, n, long_episodes=True)
        kernel(insts, states, np.asarray(rules, dtype=np.int64), np.zeros((n, 1)), interruptions,
               K.OBJECTIVE_TARDINESS, masks, *dims)  # fmt: skip
    T = layout.state_offsets
    out = []
    for scenario, state in zip(scenarios, states):
        jobs = scenario.jobs
        shape = (layout.S, layout.O)
        start = state[T.stream_start : T.stream_start + layout.S * layout.O].reshape(shape)[
            : jobs.n_jobs, : jobs.max_ops
        ]
        end = state[T.stream_end : T.stream_end + layout.S * layout.O].reshape(shape)[: jobs.n_jobs, : jobs.max_ops]
        out.append((start.copy(), end.copy(), int(state[T.max_queued])))
    return out


def weighted_tardiness_mean(setting: StandardSetting, scenario: Scenario, end: np.ndarray) -> float:
    """Mean weighted tardiness of the recorded jobs (the training signal; see :func:`recorded_metrics`)."""
    jobs = scenario.jobs
    window = setting.recorded_jobs
    completion = end[np.arange(jobs.n_jobs), jobs.n_ops - 1][window]
    return float((jobs.weights[window] * np.maximum(0, completion - jobs.due_dates[window])).mean())
