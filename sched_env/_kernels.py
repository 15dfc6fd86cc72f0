"""Every compiled (numba) function of sched-env: one simulator for env, batch, rules and service.

A shop is two flat int64 rows: an *instance row* (what the problem is) and a *state row* (what
has been decided). A batch of N shops is two 2-D arrays whose rows are shops, so one kernel
call advances all of them. Fixed padded sizes ``J`` (jobs), ``M`` (machines), ``O``
(operations per job) give every row the same length; operation ``k`` of job ``j`` is the
flat index ``p = j * O + k``.

**One field table per row kind** (``INSTANCE_FIELDS``, ``STATE_FIELDS`` and their dynamic
extensions) says, in order, each field's name and size. From it are generated: the njit
function that returns every field's offset as a namedtuple (``state_offsets(J, M, O).job_ready``),
the row length (its ``length`` field), and the named numpy views of ``sched_env.shop``. Nothing
refers to a field by position, so inserting one shifts nothing by hand.
Kernels index the rows through integer offsets (``state[S.job_ready + j]``) rather than array
views: building views costs about 0.3 us per call, more than a whole decision.

Semantics of one decision "start the next operation of job j" (see ``JobShopEnv``):
* placement APPEND: at max(job ready, end of the machine's last operation) (semi-active);
* placement ACTIVE: in the earliest idle gap of the machine, at or after the job is ready,
  that the operation fits in (left shift / active schedule generation); the machine's
  operations are kept as a doubly linked list in start order (``op_next``/``op_previous``,
  ``machine_head``/``machine_tail``).
The action mask is every unfinished job (ANY), the Giffler-Thompson conflict set (GT), or the
jobs whose next operation can start at the earliest possible start time (NON_DELAY).

Plain-Python twins of every kernel live in ``tests/reference.py``; tests compare both.
"""

from __future__ import annotations

import functools
import types
from collections import namedtuple

import numpy as np
from numba import config, njit, prange

from sched_env._names import MACHINE_RULE_NAMES, RULE_FIELDS, RULE_NAMES
from sched_env.jit import KERNEL_FLAGS, index_table, kernel

# Decorator flags: set once for every kernel of the project, in sched_env.jit.
_kernel = kernel
#: The same, inlined into each caller at numba's level (tiny helpers called in inner loops).
_inline_kernel = njit(inline="always", **KERNEL_FLAGS)

#: Batches at least this large run their shops on every core. A parallel loop (numba parfor)
#: compiles about 3x slower than a plain one and gains little on 64 shops and 2 cores, so the
#: batch kernels are compiled serially and get their parallel twin only when such a batch comes.
PARALLEL_MIN_SHOPS = 256
_parallel_twins: dict = {}


def _batch_kernel(function):
    """A kernel over the shops of a batch (a ``prange`` loop), compiled serially; see :func:`for_batch`."""
    return _kernel(function)


def for_batch(kernel, n_shops: int, long_episodes: bool = False):
    """``kernel`` itself, or for ``n_shops >= PARALLEL_MIN_SHOPS`` (any two shops when each runs
    a ``long_episodes`` stream) on a multi-core machine its parallel twin (compiled, or loaded
    from the cache, on first use). The twin is a copy of the function under its own name, so
    the two never share a cache entry."""
    if n_shops < (2 if long_episodes else PARALLEL_MIN_SHOPS) or config.NUMBA_NUM_THREADS < 2:
        return kernel
    twin = _parallel_twins.get(kernel.py_func.__name__)
    if twin is None:
        source = kernel.py_func
        copy = types.FunctionType(source.__code__, source.__globals__, source.__name__ + "_parallel")
        copy.__qualname__ = source.__qualname__ + "_parallel"
        copy.__doc__ = source.__doc__
        twin = _parallel_twins[source.__name__] = njit(parallel=True, **KERNEL_FLAGS)(copy)
    return twin


# Constants are numpy integers, not Python ints: a kernel called with a Python-int constant is
# compiled once more for that literal (numba types it Literal[int]), which cost seconds of compiling.
NONE = np.int64(-1)  # "no operation / no job" in lists, slots and choices
FOREVER = np.int64(2**62)  # a time after every event

# ---- field tables --------------------------------------------------------------------
# (name, size): size is an expression in the padded sizes J, M, O, the downtime windows D
# and the jobs of a dynamic stream S. Scalars (size "1") come first so their offsets are
# constants (``IN``/``ST`` below, for the Python side).
INSTANCE_FIELDS = (
    ("n_jobs", "1"),
    ("n_machines", "1"),
    ("time_scale", "1"),  # normalises times in features/rewards: max(1, simple lower bound)
    ("duration_scale", "1"),  # normalises durations: max(1, longest operation)
    ("alt_table", "1"),  # flexible shop: offset of the (J*O, M) table of durations (-1: not eligible)
    # appended after the fields below (so no size depends on it), NONE for a classic row
    ("machine_rule", "1"),  # flexible shop: which allowed machine a job-only decision takes (MACHINE_RULE)
    ("op_machine", "J * O"),  # NONE past a job's last operation
    ("op_duration", "J * O"),
    ("job_n_ops", "J"),
    ("job_release", "J"),
    ("job_due", "J"),
    ("job_weight", "J"),  # 1 unless the instance has weights
)
STATE_FIELDS = (
    ("n_scheduled", "1"),
    ("n_total", "1"),
    ("makespan", "1"),  # latest end of the operations scheduled so far
    ("lower_bound", "1"),  # current makespan lower bound (drives the dense reward)
    ("decision_time", "1"),  # static shop: "now" of the last observation, the earliest start of any job
    ("job_next_op", "J"),  # index of the job's next unscheduled operation
    ("job_machine", "J"),  # its machine (NONE once the job is done, or for an empty slot)
    ("job_duration", "J"),  # its (planned) duration (0 once done)
    ("job_ready", "J"),  # end of the job's last scheduled op, or its release
    ("job_est", "J"),  # cached earliest start of the next op (completion once done)
    ("job_remaining", "J"),  # work left, next op included
    ("machine_end", "M"),  # latest end on the machine
    ("machine_head", "M"),  # first and last op in start order (ACTIVE)
    ("machine_tail", "M"),
    ("machine_remaining", "M"),  # unscheduled work on the machine
    ("machine_waiting", "M"),  # unfinished jobs whose next op is on it
    ("op_start", "J * O"),
    ("op_end", "J * O"),
    ("op_next", "J * O"),  # next / previous op on the same machine in start order (ACTIVE)
    ("op_previous", "J * O"),
    ("op_machine_used", "J * O"),  # the machine a scheduled op runs on (read only where op_start != NONE)
    ("machine_work", "M"),  # work scheduled on the machine so far
    # flexible rows only (a classic row never reads them):
    ("pair_est", "J * M"),  # earliest start of the job's next op on each eligible machine
    ("pair_allowed", "J * M"),  # the (job, machine) pairs the action set allows now
)
# The dynamic shop extends both rows. Its first J job rows are *slots*: a window of the jobs
# active now (arrived, unfinished), refilled from the *stream* of every job of the scenario
# (in arrival order) as jobs finish, so a step costs O(slots), not O(every job ever).
DYNAMIC_INSTANCE_FIELDS = INSTANCE_FIELDS + (
    ("stream_jobs", "1"),  # jobs in the stream (<= S)
    ("stream_open", "1"),  # 1: more jobs may follow the stream's last (a plan's known work): never drains
    ("op_real", "J * O"),  # real durations of the slots' operations
    ("window_first", "M + 1"),  # downtime windows of machine m: [first[m], first[m + 1])
    ("window_start", "D"),
    ("window_end", "D"),
    ("window_kind", "D"),
    ("stream_machine", "S * O"),
    ("stream_duration", "S * O"),
    ("stream_real", "S * O"),
    ("stream_n_ops", "S"),
    ("stream_release", "S"),
    ("stream_due", "S"),
    ("stream_weight", "S"),
)
DYNAMIC_STATE_FIELDS = STATE_FIELDS + (
    ("now", "1"),  # the clock
    ("wasted", "1"),  # work lost to restarts
    ("carry_time", "1"),  # integrals accrued since the last reward: time,
    ("carry_flow", "1"),  # jobs-in-system time,
    ("carry_tardiness", "1"),  # weighted tardy time
    ("total_flow", "1"),  # the same integrals since the start (never cleared)
    ("total_tardiness", "1"),
    ("n_admitted", "1"),  # stream jobs moved into a slot so far (the rest arrive or queue)
    ("n_arrived", "1"),  # stream jobs arrived by now (n_arrived - n_admitted queue)
    ("max_queued", "1"),  # the most jobs that ever waited for a free slot at once
    ("n_active", "1"),  # occupied slots
    ("job_expected", "J"),  # when the job's running op is expected to end (start + planned)
    ("job_started", "J"),  # when its latest op (or attempt) started
    ("slot_job", "J"),  # stream index of the job in the slot, NONE if free
    ("active", "J"),  # the occupied slots (the first n_active), in no particular order: loops visit only these
    ("machine_expected", "M"),  # when the machine is expected to be free
    ("machine_cursor", "M"),  # first downtime window of the machine that has not ended by now
    ("stream_start", "S * O"),  # real start and end of every stream operation (NONE: not yet)
    ("stream_end", "S * O"),
    ("stream_machine_used", "S * O"),  # the machine it ran on
    ("job_started_on", "J"),  # the machine of the job's latest op (or attempt)
)
DIMENSIONS = ("J", "M", "O", "D", "S")


@functools.lru_cache(maxsize=256)
def field_spans(fields, **sizes: int) -> dict[str, tuple[int, int]]:
    """``{name: (start, stop)}`` of every field of a table for the given sizes (Python side;
    cached: do not modify the returned dict)."""
    spans, offset = {}, 0
    for name, size in fields:
        length = int(eval(size, {}, dict(sizes)))  # noqa: S307 - the table's own expressions
        spans[name] = (offset, offset + length)
        offset += length
    spans["length"] = (offset, offset)
    return spans


def _offsets_function(name: str, fields, dimensions: tuple[str, ...]):
    """Generate ``name(*dimensions)`` returning a namedtuple of every field's offset (and
    ``length``), compiled by numba; the generated source is a sum of the sizes before each field."""
    record = namedtuple(f"{name.title().replace('_', '')}", [f for f, _ in fields] + ["length"])
    lines, total = [], "0"
    for field, size in fields:
        lines.append(f"    {field} = {total}")
        total = f"{field} + ({size})"
    source = f"def {name}({', '.join(dimensions)}):\n" + "\n".join(lines) + f"\n    length = {total}\n"
    source += f"    return record({', '.join([f for f, _ in fields] + ['length'])})\n"
    record.__module__ = __name__
    namespace = {"record": record, record.__name__: record, "__name__": __name__}
    exec(compile(source, __file__, "exec"), namespace)  # noqa: S102 - generated from the tables above
    return record, _kernel(namespace[name])


InstanceOffsets, instance_offsets = _offsets_function("instance_offsets", INSTANCE_FIELDS, ("J", "M", "O"))
StateOffsets, state_offsets = _offsets_function("state_offsets", STATE_FIELDS, ("J", "M", "O"))
DynamicInstanceOffsets, dynamic_instance_offsets = _offsets_function(
    "dynamic_instance_offsets", DYNAMIC_INSTANCE_FIELDS, DIMENSIONS
)
DynamicStateOffsets, dynamic_state_offsets = _offsets_function(
    "dynamic_state_offsets", DYNAMIC_STATE_FIELDS, ("J", "M", "O", "S")
)
#: Offsets of the scalar header fields, which do not depend on the sizes (for Python callers).
IN = instance_offsets.py_func(0, 0, 0)
ST = state_offsets.py_func(0, 0, 0)

# ---- enumerations shared with Python -------------------------------------------------
PLACEMENT_APPEND = np.int64(0)
PLACEMENT_ACTIVE = np.int64(1)
ACTIONS_ANY = np.int64(0)
ACTIONS_GT = np.int64(1)
ACTIONS_NON_DELAY = np.int64(2)
REWARD_DENSE = np.int64(0)
REWARD_SPARSE = np.int64(1)
NO_WAIT = np.int64(0)  # the width of the wait action in a shop without one

#: Columns of the static per-job features (documented in ``JobShopEnv``), by name.
FEATURE_NAMES = (
    "allowed",
    "next_duration",
    "remaining_work",
    "remaining_ops",
    "earliest_start",
    "ready_time",
    "machine_remaining_work",
    "machine_free_time",
    "machine_contention",
    "done",
)
#: Columns of the dynamic per-job features (documented in ``DynamicJobShopEnv``), by name.
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
    "next_after_duration",
    "next_machine_queue_work",
    "machine_queue_work",
    "machine_queue_length",
    "slack_per_operation",
    "atc_priority",
    "critical_ratio",
    "wspt_priority",
    "positive_slack",
)
#: The shop's context, the same in every job's row (appended to ``DYNAMIC_FEATURE_NAMES``): how
#: full the shop is, how late its jobs run, how much is down, its size, how early it is in its
#: episode (``shop_early``: its first jobs, a fill or a short shift) and whether it drains
#: (``shop_draining``: 1 once the episode's last job has arrived, so what is left is a fixed set of
#: jobs; an endless stream never drains). A priority network reads them as gates on its per-job
#: weights (``priority_score``): a loaded shop and a light one, tight due dates and loose ones, a
#: shift's first jobs, a long run's and a shift's last ones, can be dispatched by different
#: priorities. ``shop_early`` counts arrived jobs, so a plan of a running shop's known work (a
#: ``ShopState``: its active jobs) reads as a short episode; it is an open stream (more work may
#: come: ``events.OPEN_STREAM``), so it never reads as draining.
DYNAMIC_CONTEXT_NAMES = (
    "shop_jobs_per_machine",
    "shop_backlog_per_machine",
    "shop_late_share",
    "shop_critical_ratio",
    "shop_down_share",
    "shop_machines",
    "shop_early",
    "shop_draining",
)
#: Models trained before the context columns read the first ``N_DYNAMIC_JOB_FEATURES`` only,
#: models trained before ``shop_early`` the first ``N_DYNAMIC_JOB_FEATURES + 6``, and those trained
#: before ``shop_draining`` the first ``N_DYNAMIC_JOB_FEATURES + 7``.
N_DYNAMIC_JOB_FEATURES = len(DYNAMIC_FEATURE_NAMES)
N_DYNAMIC_CONTEXT = len(DYNAMIC_CONTEXT_NAMES)
DYNAMIC_FEATURE_NAMES = DYNAMIC_FEATURE_NAMES + DYNAMIC_CONTEXT_NAMES
F = index_table("FeatureColumns", FEATURE_NAMES)
DF = index_table("DynamicFeatureColumns", DYNAMIC_FEATURE_NAMES)
N_FEATURES = len(FEATURE_NAMES)
N_DYNAMIC_FEATURES = len(DYNAMIC_FEATURE_NAMES)
#: Features are clipped to [-FEATURE_LIMIT, FEATURE_LIMIT] so the observation space is bounded;
#: a normalised time reaches it only for schedules 1000x longer than the lower bound.
FEATURE_LIMIT = 1000.0
CRITICAL_RATIO_LIMIT = 10.0  # (due - now) / work left, clipped: beyond 10 a job is simply "not urgent"
EARLY_JOBS = 100  # shop_early = 1 - jobs arrived / EARLY_JOBS (at least 0): a shop in its first jobs

RULE = index_table("RuleIds", tuple(RULE_FIELDS[name] for name in RULE_NAMES))
MACHINE_RULE = index_table("MachineRuleIds", MACHINE_RULE_NAMES)
#: Columns of the per-(job, machine) features of a flexible shop (``JobShopEnv`` with pair actions).
PAIR_FEATURE_NAMES = ("duration", "machine_free_time", "earliest_end")
PF = index_table("PairFeatureColumns", PAIR_FEATURE_NAMES)
N_PAIR_FEATURES = len(PAIR_FEATURE_NAMES)
ATC_K = 2.0  # ATC look-ahead: slack is discounted over ATC_K mean operation lengths
COVERT_K = 2.0  # COVERT look-ahead: slack is discounted over COVERT_K of the operation's own length


# ---- one shop ------------------------------------------------------------------------
@_kernel
def earliest_start(state, job, placement, J, M, O):
    """Earliest feasible start of ``job``'s next operation on its (planned) machine, and the op
    it would follow on that machine's list (NONE = becomes the head). Only valid for an
    unfinished job."""
    S = state_offsets(J, M, O)
    return earliest_start_on(
        state, state[S.job_machine + job], state[S.job_ready + job], state[S.job_duration + job], placement, J, M, O
    )


@_kernel
def earliest_start_on(state, machine, ready, duration, placement, J, M, O):
    """Earliest start at or after ``ready`` of an operation of ``duration`` on ``machine``, and
    the op it would follow there (NONE = becomes the head).

    ACTIVE: walk back from the machine's last op past every op that ends after the job is
    ready (ends rise along the list), then forward through those for the first gap that
    fits. Cost: the ops ending after the ready time, usually a handful."""
    S = state_offsets(J, M, O)
    if placement == PLACEMENT_APPEND:
        return max(ready, state[S.machine_end + machine]), NONE
    previous = state[S.machine_tail + machine]
    while previous != NONE and state[S.op_end + previous] > ready:
        previous = state[S.op_previous + previous]
    q = state[S.machine_head + machine] if previous == NONE else state[S.op_next + previous]
    previous_end = ready
    while q != NONE:
        if previous_end + duration <= state[S.op_start + q]:
            return previous_end, previous
        previous_end = max(previous_end, state[S.op_end + q])
        previous = q
        q = state[S.op_next + q]
    return previous_end, previous


@_kernel
def _first_fit_after(state, p, end, ready, duration, J, M, O):
    """Earliest start at or after max(end, ready) that fits before the ops following op ``p``
    (which ends at ``end``) on its machine's list."""
    S = state_offsets(J, M, O)
    t = max(end, ready)
    q = state[S.op_next + p]
    while q != NONE:
        if t + duration <= state[S.op_start + q]:
            return t
        t = max(t, state[S.op_end + q])
        q = state[S.op_next + q]
    return t


@_kernel
def _refresh(inst, state, job, placement, J, M, O):
    """Recompute the cached earliest start of one job (its completion time once done) and
    return the job's term of the lower bound: earliest start + work left."""
    S = state_offsets(J, M, O)
    if is_flexible(inst, J, M, O):
        return refresh_pairs(inst, state, job, placement, J, M, O)
    if state[S.job_machine + job] == NONE:
        state[S.job_est + job] = state[S.job_ready + job]
    else:
        state[S.job_est + job] = earliest_start(state, job, placement, J, M, O)[0]
    return state[S.job_est + job] + state[S.job_remaining + job]


@_kernel
def clear_job(inst, state, j, J, M, O):
    """Set job row ``j`` to its instance data, nothing scheduled: ready at its release, all its
    work left (added to its machines), waiting for its first machine."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    state[S.job_next_op + j] = 0
    state[S.job_ready + j] = inst[I.job_release + j]
    work = 0
    for k in range(O):
        p = j * O + k
        state[S.op_start + p] = NONE
        state[S.op_end + p] = NONE
        state[S.op_next + p] = NONE
        state[S.op_previous + p] = NONE
        if k < inst[I.job_n_ops + j]:
            work += inst[I.op_duration + p]
            state[S.machine_remaining + inst[I.op_machine + p]] += inst[I.op_duration + p]
    state[S.job_remaining + j] = work
    state[S.job_machine + j] = NONE
    state[S.job_duration + j] = 0
    if inst[I.job_n_ops + j] > 0:
        state[S.job_machine + j] = inst[I.op_machine + j * O]
        state[S.job_duration + j] = inst[I.op_duration + j * O]
        state[S.machine_waiting + state[S.job_machine + j]] += 1


@_kernel
def reset_shop(inst, state, placement, J, M, O):
    """Empty schedule: every job ready at its release date, nothing on any machine."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    state[: S.length] = 0
    for m in range(M):
        state[S.machine_head + m] = NONE
        state[S.machine_tail + m] = NONE
    total = 0
    for j in range(J):
        clear_job(inst, state, j, J, M, O)
        total += inst[I.job_n_ops + j]
    state[S.n_total] = total
    bound = 0
    for j in range(J):
        term = _refresh(inst, state, j, placement, J, M, O)
        if inst[I.job_n_ops + j] > 0:
            bound = max(bound, term)
    state[S.lower_bound] = bound


@_kernel
def record_op(inst, state, job, start, end, J, M, O):
    """Book ``job``'s next operation as run during [start, end): the op, its machine, the job
    (next op, its machine and planned duration), the counters and the makespan. Shared by the
    static and the dynamic simulator; the machine lists and cached starts are the caller's."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    p = job * O + state[S.job_next_op + job]
    machine = state[S.job_machine + job]
    state[S.op_start + p] = start
    state[S.op_end + p] = end
    state[S.op_machine_used + p] = machine
    state[S.machine_end + machine] = max(state[S.machine_end + machine], end)
    state[S.machine_work + machine] += state[S.job_duration + job]
    # work left counts each op at its shortest alternative (a classic op: its only one)
    state[S.machine_remaining + inst[I.op_machine + p]] -= inst[I.op_duration + p]
    state[S.machine_waiting + machine] -= 1
    state[S.job_ready + job] = end
    state[S.job_remaining + job] -= inst[I.op_duration + p]
    state[S.job_next_op + job] += 1
    if state[S.job_next_op + job] < inst[I.job_n_ops + job]:
        state[S.job_machine + job] = inst[I.op_machine + p + 1]
        state[S.job_duration + job] = inst[I.op_duration + p + 1]
        state[S.machine_waiting + state[S.job_machine + job]] += 1
    else:
        state[S.job_machine + job] = NONE
        state[S.job_duration + job] = 0
    state[S.n_scheduled] += 1
    state[S.makespan] = max(state[S.makespan], end)


@_kernel
def dispatch(inst, state, job, placement, J, M, O):
    """Start ``job``'s next operation at its earliest feasible time; return that start.

    Updates the job, the machine (and its start-ordered list), the cached earliest starts of
    the jobs that wait for the same machine, the makespan and the lower bound
    max(makespan, max over jobs of earliest start of next op + work left). Every term only
    grows (a job's earliest start rises by at least what its work left falls), so the bound is
    kept incrementally from the changed jobs; it equals the makespan once every op is
    scheduled, so the dense reward (its decrease) sums to minus the final makespan + a constant."""
    S = state_offsets(J, M, O)
    start, previous = earliest_start(state, job, placement, J, M, O)
    p = job * O + state[S.job_next_op + job]
    machine = state[S.job_machine + job]
    end = start + state[S.job_duration + job]
    if placement == PLACEMENT_ACTIVE:  # link p after `previous` in the machine's list
        following = state[S.machine_head + machine] if previous == NONE else state[S.op_next + previous]
        state[S.op_previous + p] = previous
        state[S.op_next + p] = following
        if previous == NONE:
            state[S.machine_head + machine] = p
        else:
            state[S.op_next + previous] = p
        if following == NONE:
            state[S.machine_tail + machine] = p
        else:
            state[S.op_previous + following] = p
    record_op(inst, state, job, start, end, J, M, O)
    bound = max(state[S.lower_bound], state[S.makespan])
    if is_flexible(inst, J, M, O):
        state[S.lower_bound] = max(bound, refresh_after(inst, state, job, machine, placement, J, M, O))
        return start
    for j in range(J):  # only the dispatched job and those waiting for `machine` can change
        if j == job:
            bound = max(bound, _refresh(inst, state, j, placement, J, M, O))
        elif state[S.job_machine + j] == machine:
            est = state[S.job_est + j]
            if placement == PLACEMENT_APPEND:
                bound = max(bound, _refresh(inst, state, j, placement, J, M, O))
            elif end > est and est + state[S.job_duration + j] > start:
                # ACTIVE: a waiting job keeps its earliest start unless the new op p blocks it
                # (new ops only remove free time); then no start before p's end can fit, so
                # search from p onwards instead of from the machine's last op.
                state[S.job_est + j] = _first_fit_after(
                    state, p, end, state[S.job_ready + j], state[S.job_duration + j], J, M, O
                )
                bound = max(bound, state[S.job_est + j] + state[S.job_remaining + j])
    state[S.lower_bound] = bound
    return start


# ---- flexible shop: an operation has alternatives (machine, duration) -------------------
# A flexible row carries a (J*O, M) table of durations (-1: the machine cannot run the op) and
# the state caches, per unfinished job, the earliest start of its next op on every eligible
# machine (``pair_est``). A dispatch on machine m changes only the dispatched job's pairs and
# the pairs on m, so a step refreshes O(jobs + alternatives) starts. The job fields
# (``job_machine``, ``job_duration``, ``job_est``) hold the *planned* pair: the machine rule's
# choice among the job's allowed pairs (among all its eligible ones if none is allowed), so
# every job-level feature and dispatching rule reads a flexible shop as a classic one.
# Lower bound term of a job: min over its eligible machines of (start + duration) + the work
# after its next op at the shortest durations; it only grows, as in the classic shop.
@_kernel
def is_flexible(inst, J, M, O):
    return inst[instance_offsets(J, M, O).alt_table] != NONE


@_kernel
def alt_duration(inst, p, machine, J, M, O):
    """Duration of flat op ``p`` on ``machine`` in a flexible row; -1 if it cannot run there."""
    return inst[inst[instance_offsets(J, M, O).alt_table] + p * M + machine]


@_kernel
def pair_term(inst, state, job, J, M, O):
    """The lower-bound term of an unfinished job of a flexible row (see above)."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    p = job * O + state[S.job_next_op + job]
    best = FOREVER
    for m in range(M):
        d = alt_duration(inst, p, m, J, M, O)
        if d >= 0:
            best = min(best, state[S.pair_est + job * M + m] + d)
    return best + state[S.job_remaining + job] - inst[I.op_duration + p]


@_kernel
def refresh_pairs(inst, state, job, placement, J, M, O):
    """Recompute the earliest start of ``job``'s next op on each eligible machine (a finished
    job: its completion); return the job's lower-bound term."""
    S = state_offsets(J, M, O)
    ready = state[S.job_ready + job]
    if state[S.job_machine + job] == NONE:
        state[S.job_est + job] = ready
        return ready
    p = job * O + state[S.job_next_op + job]
    for m in range(M):
        d = alt_duration(inst, p, m, J, M, O)
        if d >= 0:
            state[S.pair_est + job * M + m] = earliest_start_on(state, m, ready, d, placement, J, M, O)[0]
    return pair_term(inst, state, job, J, M, O)


@_kernel
def refresh_after(inst, state, job, machine, placement, J, M, O):
    """After ``job``'s op went onto ``machine``: refresh the job's pairs and every other
    unfinished job's pair on ``machine``; return the largest changed lower-bound term."""
    S = state_offsets(J, M, O)
    bound = refresh_pairs(inst, state, job, placement, J, M, O)
    for j in range(J):
        if j == job or state[S.job_machine + j] == NONE:
            continue
        d = alt_duration(inst, j * O + state[S.job_next_op + j], machine, J, M, O)
        if d >= 0:
            ready = state[S.job_ready + j]
            state[S.pair_est + j * M + machine] = earliest_start_on(state, machine, ready, d, placement, J, M, O)[0]
            bound = max(bound, pair_term(inst, state, j, J, M, O))
    return bound


@_kernel
def choose_machine(inst, state, job, only_allowed, J, M, O):
    """The machine rule's machine for ``job``'s next op among its allowed pairs (or, with
    ``only_allowed`` False, among all its eligible machines); ties to the lowest machine."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    rule = inst[I.machine_rule]
    p = job * O + state[S.job_next_op + job]
    best, best_first, best_second = NONE, 0, 0
    for m in range(M):
        d = alt_duration(inst, p, m, J, M, O)
        if d < 0 or (only_allowed and state[S.pair_allowed + job * M + m] == 0):
            continue
        first, second = machine_key(rule, state[S.pair_est + job * M + m], d, state[S.machine_work + m])
        if best == NONE or first < best_first or (first == best_first and second < best_second):
            best, best_first, best_second = m, first, second
    return best


@_inline_kernel
def machine_key(rule, est, duration, work):
    """(key, tie key) of a machine under a machine rule, smaller first: an operation that would
    start at ``est`` there and take ``duration``, on a machine with ``work`` scheduled so far."""
    if rule == MACHINE_RULE.spt:
        return duration, est + duration
    if rule == MACHINE_RULE.ll:
        return work, est + duration
    if rule == MACHINE_RULE.est:
        return est, duration
    return est + duration, duration  # earliest end time


@_kernel
def plan_pairs(inst, state, action_set, mask, J, M, O):
    """Flexible row: write which (job, machine) pairs the action set allows now, the job mask
    (a job with an allowed pair) and each unfinished job's planned pair (see above); return
    now, the earliest start of any pair.

    ANY: every eligible pair; NON_DELAY: the pairs that start at now; Giffler-Thompson: take
    the pair that completes first (time C on machine m, ties to the lowest pair), allow the
    pairs on m that start before C."""
    S = state_offsets(J, M, O)
    now = FOREVER
    best_end, best_pair = FOREVER, NONE
    for j in range(J):
        if state[S.job_machine + j] == NONE:
            continue
        p = j * O + state[S.job_next_op + j]
        for m in range(M):
            d = alt_duration(inst, p, m, J, M, O)
            if d >= 0:
                est = state[S.pair_est + j * M + m]
                now = min(now, est)
                if est + d < best_end:
                    best_end, best_pair = est + d, j * M + m
    best_machine = best_pair % M if best_pair != NONE else NONE
    for m in range(M):
        state[S.machine_waiting + m] = 0
    rule = inst[instance_offsets(J, M, O).machine_rule]
    for j in range(J):
        row = S.pair_allowed + j * M
        if state[S.job_machine + j] == NONE:
            for m in range(M):
                state[row + m] = 0
            continue
        p = j * O + state[S.job_next_op + j]
        # the machine rule's choice among the allowed pairs (a), else among all eligible ones (e)
        best_a, first_a, second_a, best_e, first_e, second_e = NONE, 0, 0, NONE, 0, 0
        for m in range(M):
            d = alt_duration(inst, p, m, J, M, O)
            allowed = False
            if d >= 0:
                est = state[S.pair_est + j * M + m]
                if action_set == ACTIONS_ANY:
                    allowed = True
                elif action_set == ACTIONS_NON_DELAY:
                    allowed = est == now
                else:
                    allowed = m == best_machine and (est < best_end or j * M + m == best_pair)
                first, second = machine_key(rule, est, d, state[S.machine_work + m])
                if best_e == NONE or first < first_e or (first == first_e and second < second_e):
                    best_e, first_e, second_e = m, first, second
                if allowed and (best_a == NONE or first < first_a or (first == first_a and second < second_a)):
                    best_a, first_a, second_a = m, first, second
            state[row + m] = allowed
        mask[j] = best_a != NONE
        m = best_a if best_a != NONE else best_e
        state[S.job_machine + j] = m
        state[S.job_duration + j] = alt_duration(inst, p, m, J, M, O)
        state[S.job_est + j] = state[S.pair_est + j * M + m]
        state[S.machine_waiting + m] += 1
    return now


@_kernel
def job_allowed(inst, state, j, J, M, O):
    """Flexible row: has job ``j`` an allowed pair (see :func:`plan_pairs`)?"""
    S = state_offsets(J, M, O)
    for m in range(M):  # noqa: SIM110 - a generator inside any() does not compile in numba
        if state[S.pair_allowed + j * M + m] != 0:
            return True
    return False


@_kernel
def observe_pairs(inst, state, action_set, job_mask, pair_mask, features, pair_features, J, M, O):
    """:func:`observe`, then the (job, machine) mask (length J*M, pair ``j * M + m``) and the
    ``(J, M, N_PAIR_FEATURES)`` pair features: the op's duration there, when the machine is
    free, when the op would end there (times relative to now); zeros for ineligible pairs. A
    classic row has one pair per job (its next op's machine). Returns the allowed pair count."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    observe(inst, state, action_set, job_mask, features, J, M, O)
    flexible = is_flexible(inst, J, M, O)
    now = state[S.decision_time]
    per_time = np.float32(1.0) / np.float32(inst[I.time_scale])
    per_duration = np.float32(1.0) / np.float32(inst[I.duration_scale])
    count = 0
    for j in range(J):
        planned = state[S.job_machine + j]
        for m in range(M):
            d = -1
            if planned != NONE:
                if flexible:
                    d = alt_duration(inst, j * O + state[S.job_next_op + j], m, J, M, O)
                elif m == planned:
                    d = state[S.job_duration + j]
            if d < 0:
                pair_mask[j * M + m] = 0
                for c in range(N_PAIR_FEATURES):
                    pair_features[j, m, c] = 0.0
                continue
            est = state[S.pair_est + j * M + m] if flexible else state[S.job_est + j]
            allowed = state[S.pair_allowed + j * M + m] != 0 if flexible else job_mask[j] != 0
            pair_mask[j * M + m] = allowed
            count += allowed
            pair_features[j, m, PF.duration] = d * per_duration
            free = (state[S.machine_end + m] - now) * per_time
            pair_features[j, m, PF.machine_free_time] = max(min(free, FEATURE_LIMIT), -FEATURE_LIMIT)
            pair_features[j, m, PF.earliest_end] = min((est + d - now) * per_time, FEATURE_LIMIT)
    return count


@_kernel
def set_planned_machine(inst, state, job, machine, J, M, O):
    """Flexible row: make ``machine`` the planned machine of ``job``'s next op (a pair action)."""
    S = state_offsets(J, M, O)
    p = job * O + state[S.job_next_op + job]
    state[S.machine_waiting + state[S.job_machine + job]] -= 1
    state[S.machine_waiting + machine] += 1
    state[S.job_machine + job] = machine
    state[S.job_duration + job] = alt_duration(inst, p, machine, J, M, O)
    state[S.job_est + job] = state[S.pair_est + job * M + machine]


@_kernel
def step_shop_pairs(inst, state, action, placement, action_set, reward_mode, job_mask, pair_mask, features,
                    pair_features, J, M, O):  # fmt: skip
    """One (job, machine) decision, action ``job * M + machine``: validate it against
    ``pair_mask`` (outside it: the lowest allowed pair), dispatch, observe. Returns (reward,
    done, invalid) as :func:`step_shop`."""
    action, invalid = checked_action(pair_mask, action, J * M)
    if action == NONE:
        return 0.0, True, True
    job = action // M
    if is_flexible(inst, J, M, O):
        set_planned_machine(inst, state, job, action % M, J, M, O)
    reward, done = dispatch_with_reward(inst, state, job, placement, reward_mode, J, M, O)
    observe_pairs(inst, state, action_set, job_mask, pair_mask, features, pair_features, J, M, O)
    return reward, done, invalid


@_kernel
def reset_and_observe_pairs(inst, state, placement, action_set, job_mask, pair_mask, features, pair_features,
                            J, M, O):  # fmt: skip
    reset_shop(inst, state, placement, J, M, O)
    observe_pairs(inst, state, action_set, job_mask, pair_mask, features, pair_features, J, M, O)


@_kernel
def observe(inst, state, action_set, mask, features, J, M, O):
    """Write the action mask (int8, length J) and the ``(J, N_FEATURES)`` float32 features of
    one shop; return how many actions are allowed. Padded jobs stay all zero.

    Mask: every unfinished job (ANY); the jobs that can start at the earliest possible start
    (NON_DELAY); or Giffler-Thompson: take the job whose next op completes first (time C,
    machine m; ties to the lowest index), allow the jobs whose next op is on m and can start
    before C. Features: times relative to ``now`` (the earliest possible start) divided by the
    instance's time scale; see ``JobShopEnv`` for each column."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    flexible = is_flexible(inst, J, M, O)
    now = NONE
    best = NONE  # Giffler-Thompson: job whose next op completes first
    best_completion = 0
    if flexible:  # the allowed pairs decide which jobs are allowed; now is their earliest start
        now = plan_pairs(inst, state, action_set, mask, J, M, O)
        if now >= FOREVER:
            now = NONE
    else:
        for j in range(J):
            if state[S.job_machine + j] == NONE:
                continue
            est = state[S.job_est + j]
            if now == NONE or est < now:
                now = est
            if best == NONE or est + state[S.job_duration + j] < best_completion:
                best, best_completion = j, est + state[S.job_duration + j]
    if now == NONE:
        now = state[S.makespan]
    state[S.decision_time] = now
    best_machine = state[S.job_machine + best] if best != NONE else NONE
    per_time = np.float32(1.0) / np.float32(inst[I.time_scale])
    per_duration = np.float32(1.0) / np.float32(inst[I.duration_scale])
    per_op = np.float32(1.0) / np.float32(O)
    per_job = np.float32(1.0) / np.float32(max(inst[I.n_jobs], 1))
    count = 0
    for j in range(J):
        machine = state[S.job_machine + j]
        if machine == NONE:  # finished (or padding: no operations at all)
            mask[j] = 0
            for c in range(N_FEATURES):
                features[j, c] = 0.0
            features[j, F.done] = 1.0 if inst[I.job_n_ops + j] > 0 else 0.0
            continue
        est = state[S.job_est + j]
        if flexible:
            allowed = mask[j] != 0  # written by plan_pairs
        elif action_set == ACTIONS_ANY:
            allowed = True
        elif action_set == ACTIONS_NON_DELAY:
            allowed = est == now
        else:
            allowed = machine == best_machine and (est < best_completion or j == best)
        mask[j] = allowed
        count += allowed
        features[j, F.allowed] = allowed
        features[j, F.next_duration] = state[S.job_duration + j] * per_duration
        features[j, F.remaining_work] = state[S.job_remaining + j] * per_time
        features[j, F.remaining_ops] = (inst[I.job_n_ops + j] - state[S.job_next_op + j]) * per_op
        features[j, F.earliest_start] = min((est - now) * per_time, FEATURE_LIMIT)
        features[j, F.ready_time] = max(min((state[S.job_ready + j] - now) * per_time, FEATURE_LIMIT), -FEATURE_LIMIT)
        features[j, F.machine_remaining_work] = state[S.machine_remaining + machine] * per_time
        features[j, F.machine_free_time] = max(
            min((state[S.machine_end + machine] - now) * per_time, FEATURE_LIMIT), -FEATURE_LIMIT
        )
        features[j, F.machine_contention] = state[S.machine_waiting + machine] * per_job
        features[j, F.done] = 0.0
    return count


@_kernel
def checked_action(mask, action, J):
    """(action, False) if the mask allows it; else (lowest allowed job or NONE, True)."""
    if 0 <= action < J and mask[action] != 0:
        return action, False
    for j in range(J):
        if mask[j] != 0:
            return j, True
    return NONE, True


@_kernel
def step_shop(inst, state, action, placement, action_set, reward_mode, mask, features, J, M, O):
    """One decision on one shop: validate the action against ``mask``, dispatch, then write the
    new mask and features. Returns (reward, done, invalid). An action outside the mask is
    replaced by the lowest-index allowed job (deterministic; the state stays consistent)."""
    action, invalid = checked_action(mask, action, J)
    if action == NONE:  # episode already over: nothing changes
        return 0.0, True, True
    reward, done = dispatch_with_reward(inst, state, action, placement, reward_mode, J, M, O)
    observe(inst, state, action_set, mask, features, J, M, O)
    return reward, done, invalid


@_kernel
def dispatch_with_reward(inst, state, job, placement, reward_mode, J, M, O):
    """Dispatch ``job`` and return (reward, done): the dense reward is the fall of the lower
    bound, the sparse one minus the makespan at the end, both divided by the time scale."""
    S = state_offsets(J, M, O)
    bound_before = state[S.lower_bound]
    dispatch(inst, state, job, placement, J, M, O)
    done = state[S.n_scheduled] == state[S.n_total]
    scale = float(inst[instance_offsets(J, M, O).time_scale])
    if reward_mode == REWARD_DENSE:
        return (bound_before - state[S.lower_bound]) / scale, done
    return (-state[S.makespan] / scale if done else 0.0), done


@_kernel
def reset_and_observe(inst, state, placement, action_set, mask, features, J, M, O):
    reset_shop(inst, state, placement, J, M, O)
    observe(inst, state, action_set, mask, features, J, M, O)


@_kernel
def queue_of(state, j, now, J, M, O):
    """Is job ``j`` waiting in the queue of its next operation's machine at ``now`` (its previous
    operation done, the next one not started)?"""
    S = state_offsets(J, M, O)
    return state[S.job_machine + j] != NONE and state[S.job_ready + j] <= now


@_kernel
def queue_totals(state, now, queue_work, queue_count, J, M, O):
    """Planned work and number of the jobs waiting at each machine now (see :func:`queue_of`)."""
    S = state_offsets(J, M, O)
    queue_work[:] = 0
    queue_count[:] = 0
    for j in range(J):
        if queue_of(state, j, now, J, M, O):
            m = state[S.job_machine + j]
            queue_work[m] += state[S.job_duration + j]
            queue_count[m] += 1


@_kernel
def next_after(inst, state, j, J, M, O):
    """(machine, planned duration) of the operation after job ``j``'s next one; (NONE, 0) if none."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    k = state[S.job_next_op + j] + 1
    if k >= inst[I.job_n_ops + j]:
        return NONE, 0
    return inst[I.op_machine + j * O + k], inst[I.op_duration + j * O + k]


@_kernel
def atc_log_index(inst, state, j, now, mean_p, J, M, O):
    """log of ATC's index: log(w / p) - max(0, due - now - work left) / (ATC_K * mean p)."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    p = max(state[S.job_duration + j], 1)
    slack = max(0, inst[I.job_due + j] - now - state[S.job_remaining + j])
    return np.log(max(inst[I.job_weight + j], 1) / p) - slack / (ATC_K * mean_p)


@_kernel
def rule_key(inst, state, j, rule, now, mean_p, queue_work, J, M, O):
    """Priority key of job ``j`` under a rule at time ``now`` (smaller is better); ``mean_p``
    is the mean next-operation duration of the allowed jobs (ATC), ``queue_work`` the planned
    work waiting at each machine (WINQ). RANDOM and unknown ids have none (the Python side
    rejects unknown ids before any kernel runs)."""
    I = instance_offsets(J, M, O)
    S = state_offsets(J, M, O)
    p = state[S.job_duration + j]
    left = state[S.job_remaining + j]
    due = inst[I.job_due + j]
    weight = max(inst[I.job_weight + j], 1)
    if rule == RULE.spt:
        return float(p)
    if rule == RULE.lpt:
        return float(-p)
    if rule == RULE.mwkr:
        return float(-left)
    if rule == RULE.lwkr:
        return float(left)
    if rule == RULE.mopnr:
        return float(state[S.job_next_op + j] - inst[I.job_n_ops + j])
    if rule == RULE.fifo:
        return float(state[S.job_ready + j])
    if rule == RULE.edd:
        return float(due)
    if rule == RULE.atc:
        return -atc_log_index(inst, state, j, now, mean_p, J, M, O)
    if rule == RULE.wspt:
        return -weight / max(p, 1)
    if rule == RULE.covert:
        slack = max(0, due - now - left)
        return -weight / max(p, 1) * max(0.0, 1.0 - slack / (COVERT_K * max(p, 1)))
    if rule == RULE.cr:
        return (due - now) / max(left, 1)
    if rule == RULE.slack_opn:
        return (due - now - left) / max(inst[I.job_n_ops + j] - state[S.job_next_op + j], 1)
    if rule == RULE.pt_winq or rule == RULE.pt2_winq_npt:
        machine, npt = next_after(inst, state, j, J, M, O)
        winq = queue_work[machine] if machine != NONE else 0
        if rule == RULE.pt_winq:
            return float(p + winq)
        return float(2 * p + winq + npt)
    return 0.0


@_kernel
def nth_allowed(mask, uniform, J):
    """The floor(uniform * count)-th allowed job (a uniformly random one); NONE if none."""
    count = 0
    for j in range(J):
        count += mask[j] != 0
    if count == 0:
        return NONE
    target = int(uniform * count)
    for j in range(J):
        if mask[j] != 0:
            if target == 0:
                return j
            target -= 1
    return NONE


@_kernel
def improves(best, key, tie, best_key, best_tie):
    """Does a job with ``key`` (smaller is better) and ``tie`` beat the best so far? (None yet: yes.)"""
    return best == NONE or key < best_key or (key == best_key and tie < best_tie)


@_kernel
def allowed_mean_duration(state, mask, J, M, O):
    """Mean planned next-operation duration (at least 1 each) of the allowed jobs; 1 if none."""
    S = state_offsets(J, M, O)
    total = 0.0
    count = 0
    for j in range(J):
        if mask[j] != 0:
            total += max(state[S.job_duration + j], 1)
            count += 1
    return total / count if count else 1.0


@_kernel
def pick_by_rule(inst, state, mask, rule, uniform, now, ties, J, M, O):
    """The allowed job a dispatching rule picks at ``now``: the smallest key, ties to the
    smallest ``state[ties + j]`` (a dynamic shop's stream index: first arrived) or, with
    ``ties == NONE``, to the lowest job index; NONE if no job is allowed. ``uniform`` in
    [0, 1) drives RULE.random and is drawn by the caller."""
    if rule == RULE.random:
        return nth_allowed(mask, uniform, J)
    mean_p = allowed_mean_duration(state, mask, J, M, O) if rule == RULE.atc else 1.0
    queue_work = np.zeros(M, dtype=np.int64)
    if rule == RULE.pt_winq or rule == RULE.pt2_winq_npt:
        queue_totals(state, now, queue_work, np.zeros(M, dtype=np.int64), J, M, O)
    best = NONE
    best_key = 0.0
    best_tie = NONE  # unread while best is NONE
    for j in range(J):
        if mask[j] == 0:
            continue
        key = rule_key(inst, state, j, rule, now, mean_p, queue_work, J, M, O)
        tie = j if ties == NONE else state[ties + j]
        if improves(best, key, tie, best_key, best_tie):
            best, best_key, best_tie = j, key, tie
    return best


@_kernel
def choose_by_rule(inst, state, mask, rule, uniform, J, M, O):
    """The allowed job a dispatching rule picks in a static shop (ties to the lowest job
    index); "now" is the earliest start of the allowed jobs."""
    S = state_offsets(J, M, O)
    now = FOREVER
    for j in range(J):
        if mask[j] != 0:
            now = min(now, state[S.job_est + j])
    return pick_by_rule(inst, state, mask, rule, uniform, now, NONE, J, M, O)


@_batch_kernel
def rollout_rules(insts, states, rules, uniforms, placement, action_set, masks, features, J, M, O):
    """Run whole episodes in N shops at once, shop i dispatching by ``rules[i]`` (random draws
    from ``uniforms[i]``, one per decision). The schedules stay in ``states``."""
    n_scheduled, n_total = ST.n_scheduled, ST.n_total  # ints: a namedtuple cannot enter a prange body
    for i in prange(states.shape[0]):
        reset_and_observe(insts[i], states[i], placement, action_set, masks[i], features[i], J, M, O)
        step = 0
        while states[i, n_scheduled] < states[i, n_total]:
            job = choose_by_rule(insts[i], states[i], masks[i], rules[i], uniforms[i, step], J, M, O)
            if job == NONE:
                break
            step_shop(insts[i], states[i], job, placement, action_set, REWARD_SPARSE, masks[i], features[i], J, M, O)
            step += 1


# ---- dynamic shop --------------------------------------------------------------------
# The dynamic simulator runs in time: decisions happen at ``now``, only jobs that can start
# at ``now`` are allowed (in a slot, previous op done, machine idle and up), and when none can,
# time jumps to the next event (an op ends, a job arrives, a machine fails or is repaired).
# Jobs arrive at their release dates from the stream and take a free slot (job n: slot n mod J
# or the next free one), in arrival order; while every slot is taken they queue (invisible to the mask and features,
# but their flow and tardiness accrue). A slot is freed when its job completes. Ops take their
# *real* durations (the features show planned ones); downtimes interrupt running ops (resume:
# continue after the repair; restart: the work is lost and the op starts over later).
# With the wait action enabled (``W = 1``), the mask has one more entry, index J: "keep the
# machines as they are until the next event".
INTERRUPT_RESUME = np.int64(0)
INTERRUPT_RESTART = np.int64(1)
OBJECTIVE_MAKESPAN = np.int64(0)
OBJECTIVE_TARDINESS = np.int64(1)  # total weighted tardiness
OBJECTIVE_FLOW = np.int64(2)  # mean flow time


@_kernel
def window_at(inst, state, machine, J, M, O, D, S):
    """The downtime window of ``machine`` that contains now, or NONE (the machine's cursor is
    its first window that has not ended by now)."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    w = state[T.machine_cursor + machine]
    if w < inst[I.window_first + machine + 1] and inst[I.window_start + w] <= state[T.now]:
        return w
    return NONE


@_kernel
def execution_end(inst, state, machine, work, interruption, J, M, O, D, S):
    """When an op needing ``work`` time units, started now on an up machine, ends; and
    whether a downtime aborted it (restart: the end is then the abort time)."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    t = state[T.now]
    remaining = work
    for w in range(state[T.machine_cursor + machine], inst[I.window_first + machine + 1]):
        a, b = inst[I.window_start + w], inst[I.window_end + w]
        if b <= t:
            continue
        if a >= t + remaining:
            break
        if interruption == INTERRUPT_RESTART:
            return a, True
        remaining -= a - t
        t = b
    return t + remaining, False


# A flexible dynamic row carries four (·, M) tables after its fields: the slots' planned and real
# durations per machine (J*O rows each; the planned one is where ``alt_table`` points, so the
# static shop's helpers read it), then the stream's planned and real ones (S*O rows each),
# copied into the slot tables when a job takes a slot.
@_kernel
def dynamic_real_duration(inst, j, k, machine, J, M, O):
    """Real duration of slot ``j``'s op ``k`` on ``machine`` in a flexible row."""
    return inst[inst[instance_offsets(J, M, O).alt_table] + J * O * M + (j * O + k) * M + machine]


@_kernel
def machine_idle_and_up(inst, state, machine, J, M, O, D, S):
    T = dynamic_state_offsets(J, M, O, S)
    return state[T.machine_end + machine] <= state[T.now] and window_at(inst, state, machine, J, M, O, D, S) == NONE


@_kernel
def dynamic_plan_pairs(inst, state, J, M, O, D, S):
    """Flexible row, at the clock's time: which (slot, machine) pairs can start now (the job's
    previous op done, the machine eligible, idle and up) into ``pair_allowed``, and each active
    job's planned pair: the machine rule's choice among its startable pairs, else the eligible
    machine expected to end the op first. Returns how many jobs can start now."""
    T = dynamic_state_offsets(J, M, O, S)
    now = state[T.now]
    for q in range(J * M):
        state[T.pair_allowed + q] = 0
    count = 0
    for a in range(state[T.n_active]):
        j = state[T.active + a]
        if state[T.job_machine + j] == NONE:
            continue
        p = j * O + state[T.job_next_op + j]
        ready = state[T.job_ready + j] <= now
        startable = False
        for m in range(M):
            d = alt_duration(inst, p, m, J, M, O)
            if d < 0:
                continue
            allowed = ready and machine_idle_and_up(inst, state, m, J, M, O, D, S)
            state[T.pair_allowed + j * M + m] = allowed
            startable |= allowed
            free = max(now, state[T.job_expected + j], state[T.machine_expected + m])
            w = window_at(inst, state, m, J, M, O, D, S)
            if w != NONE:
                free = max(free, inst[dynamic_instance_offsets(J, M, O, D, S).window_end + w])
            state[T.pair_est + j * M + m] = now if allowed else free
        m = choose_machine(inst, state, j, startable, J, M, O)
        state[T.job_machine + j] = m
        state[T.job_duration + j] = alt_duration(inst, p, m, J, M, O)
        count += startable
    return count


@_kernel
def dynamic_startable(inst, state, job, J, M, O, D, S):
    """Can slot ``job``'s next op start now: a job is there, its previous op is done, and its
    machine is idle and up?"""
    T = dynamic_state_offsets(J, M, O, S)
    machine = state[T.job_machine + job]
    now = state[T.now]
    if machine == NONE or state[T.job_ready + job] > now:
        return False
    return state[T.machine_end + machine] <= now and window_at(inst, state, machine, J, M, O, D, S) == NONE


@_kernel
def _accrue_job(t0, t1, release, completion, due, weight):
    """(flow, weighted tardiness) of one job over [t0, t1)."""
    lo = max(t0, release)
    hi = min(t1, completion)
    if hi <= lo:
        return 0, 0
    late_from = max(lo, due)
    return hi - lo, weight * (hi - late_from) if hi > late_from else 0


@_kernel
def dynamic_accrue(inst, state, t1, J, M, O, D, S):
    """Advance the clock to ``t1``, adding [now, t1) to the time, flow and tardiness integrals
    (of the jobs in slots and of those queueing), and move the machines' window cursors."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    t0 = state[T.now]
    if t1 <= t0:
        return
    flow = 0
    tardiness = 0
    for a in range(state[T.n_active]):
        j = state[T.active + a]
        completion = state[T.job_ready + j] if state[T.job_machine + j] == NONE else FOREVER
        f, w = _accrue_job(t0, t1, inst[I.job_release + j], completion, inst[I.job_due + j], inst[I.job_weight + j])
        flow += f
        tardiness += w
    n = state[T.n_admitted]
    while n < inst[I.stream_jobs] and inst[I.stream_release + n] < t1:  # queueing (or arriving) jobs
        f, w = _accrue_job(
            t0, t1, inst[I.stream_release + n], FOREVER, inst[I.stream_due + n], inst[I.stream_weight + n]
        )
        flow += f
        tardiness += w
        n += 1
    state[T.carry_time] += t1 - t0
    state[T.carry_flow] += flow
    state[T.carry_tardiness] += tardiness
    state[T.total_flow] += flow
    state[T.total_tardiness] += tardiness
    state[T.now] = t1
    for m in range(M):
        w = state[T.machine_cursor + m]
        while w < inst[I.window_first + m + 1] and inst[I.window_end + w] <= t1:
            w += 1
        state[T.machine_cursor + m] = w


@_kernel
def dynamic_next_event(inst, state, J, M, O, D, S):
    """The first time after now when something can change: a job's op ending, an arrival, a
    machine's op ending, a downtime beginning or ending."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    now = state[T.now]
    t = FOREVER
    for a in range(state[T.n_active]):
        j = state[T.active + a]
        if state[T.job_ready + j] > now:
            t = min(t, state[T.job_ready + j])
    n = state[T.n_arrived]  # counted by dynamic_admit at this same time
    if n < inst[I.stream_jobs]:
        t = min(t, inst[I.stream_release + n])
    for m in range(M):
        if state[T.machine_end + m] > now:
            t = min(t, state[T.machine_end + m])
        w = state[T.machine_cursor + m]
        if w < inst[I.window_first + m + 1]:
            t = min(t, inst[I.window_end + w] if inst[I.window_start + w] <= now else inst[I.window_start + w])
    return t


@_kernel
def dynamic_admit(inst, state, J, M, O, D, S):
    """Free the slots of jobs that have completed by now, then move the jobs that have arrived
    (in arrival order) into free slots: stream job n into slot n mod J if free, else the next
    free slot after it (cyclically)."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    now = state[T.now]
    a = 0
    while a < state[T.n_active]:
        j = state[T.active + a]
        if state[T.job_machine + j] == NONE and state[T.job_ready + j] <= now:
            state[T.slot_job + j] = NONE
            state[T.n_active] -= 1
            state[T.active + a] = state[T.active + state[T.n_active]]
        else:
            a += 1
    arrived = state[T.n_arrived]
    while arrived < inst[I.stream_jobs] and inst[I.stream_release + arrived] <= now:
        arrived += 1
    state[T.n_arrived] = arrived
    n = state[T.n_admitted]
    free = J - state[T.n_active]
    while free > 0 and n < arrived:
        j = n % J  # job n takes slot n mod J, or the next free one after it (so a window that
        while state[T.slot_job + j] != NONE:  # holds every job keeps job n in slot n)
            j = (j + 1) % J
        free -= 1
        for k in range(O):
            inst[I.op_machine + j * O + k] = inst[I.stream_machine + n * O + k]
            inst[I.op_duration + j * O + k] = inst[I.stream_duration + n * O + k]
            inst[I.op_real + j * O + k] = inst[I.stream_real + n * O + k]
        if inst[I.alt_table] != NONE:  # flexible: the slot's tables of planned and real durations
            slot, stream, width = inst[I.alt_table] + j * O * M, inst[I.alt_table] + 2 * J * O * M + n * O * M, O * M
            for x in range(width):
                inst[slot + x] = inst[stream + x]
                inst[slot + J * O * M + x] = inst[stream + S * O * M + x]
        inst[I.job_n_ops + j] = inst[I.stream_n_ops + n]
        inst[I.job_release + j] = inst[I.stream_release + n]
        inst[I.job_due + j] = inst[I.stream_due + n]
        inst[I.job_weight + j] = inst[I.stream_weight + n]
        clear_job(inst, state, j, J, M, O)
        state[T.job_est + j] = inst[I.job_release + j]
        state[T.job_expected + j] = inst[I.job_release + j]
        state[T.job_started + j] = NONE
        state[T.slot_job + j] = n
        state[T.active + state[T.n_active]] = j
        state[T.n_active] += 1
        n += 1
    state[T.n_admitted] = n
    state[T.max_queued] = max(state[T.max_queued], arrived - n)


@_kernel
def dynamic_settle(inst, state, mask, W, J, M, O, D, S):
    """Move the clock forward until some job can start now (return how many), or until every
    op has run (then to the last completion; return 0). Return -1 if nothing can ever start.
    With ``W``, ``mask[J]`` says whether waiting is possible (some event is still to come)."""
    T = dynamic_state_offsets(J, M, O, S)
    while True:
        dynamic_admit(inst, state, J, M, O, D, S)
        if state[T.n_scheduled] == state[T.n_total]:
            dynamic_accrue(inst, state, max(state[T.now], state[T.makespan]), J, M, O, D, S)
            dynamic_admit(inst, state, J, M, O, D, S)
            mask[:] = 0
            return 0
        count = 0
        mask[:J] = 0
        flexible = inst[dynamic_instance_offsets(J, M, O, D, S).alt_table] != NONE
        if flexible:
            count = dynamic_plan_pairs(inst, state, J, M, O, D, S)
        for a in range(state[T.n_active]):
            j = state[T.active + a]
            allowed = (
                job_allowed(inst, state, j, J, M, O) if flexible else dynamic_startable(inst, state, j, J, M, O, D, S)
            )
            mask[j] = allowed
            count += 0 if flexible else allowed
        if count > 0:
            if W:
                mask[J] = dynamic_next_event(inst, state, J, M, O, D, S) < FOREVER
            return count
        t = dynamic_next_event(inst, state, J, M, O, D, S)
        if t >= FOREVER:
            return -1
        dynamic_accrue(inst, state, t, J, M, O, D, S)


@_kernel
def dynamic_wait(inst, state, until, mask, W, J, M, O, D, S):
    """Keep every idle machine idle until the next event, or until ``until`` if that comes
    first (and is after now); then settle as after a decision. Returns as settle does."""
    T = dynamic_state_offsets(J, M, O, S)
    t = dynamic_next_event(inst, state, J, M, O, D, S)
    if until > state[T.now]:
        t = min(t, until)
    if t >= FOREVER:
        return -1
    dynamic_accrue(inst, state, t, J, M, O, D, S)
    return dynamic_settle(inst, state, mask, W, J, M, O, D, S)


@_kernel
def dynamic_start(inst, state, job, interruption, J, M, O, D, S):
    """Start slot ``job``'s next op now on its (planned) machine; it runs for its real duration
    there, around (resume) or cut short by (restart) the machine's downtimes."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    now = state[T.now]
    machine = state[T.job_machine + job]
    k = state[T.job_next_op + job]
    expected = now + state[T.job_duration + job]
    state[T.job_started + job] = now
    state[T.job_started_on + job] = machine
    if inst[I.alt_table] != NONE:
        real = dynamic_real_duration(inst, job, k, machine, J, M, O)
    else:
        real = inst[I.op_real + job * O + k]
    end, aborted = execution_end(inst, state, machine, real, interruption, J, M, O, D, S)
    if aborted:  # restart: the op stays next; the job and machine are tied up until the failure
        state[T.machine_end + machine] = max(state[T.machine_end + machine], end)
        state[T.job_ready + job] = end
        state[T.wasted] += end - now
    else:
        q = state[T.slot_job + job] * O + k
        state[T.stream_start + q] = now
        state[T.stream_end + q] = end
        state[T.stream_machine_used + q] = machine
        record_op(inst, state, job, now, end, J, M, O)
    state[T.job_expected + job] = expected
    state[T.machine_expected + machine] = expected


@_kernel
def dynamic_reward(inst, state, objective, J, M, O, S):
    """The reward for the integrals accrued since the last one (then cleared): minus elapsed
    time (makespan), minus jobs-in-system time / n_jobs (mean flow time) or minus weighted
    tardy time / n_jobs (total weighted tardiness), all divided by the time scale."""
    I = instance_offsets(J, M, O)
    T = dynamic_state_offsets(J, M, O, S)
    scale = float(inst[I.time_scale])
    n_jobs = float(max(inst[I.n_jobs], 1))
    if objective == OBJECTIVE_MAKESPAN:
        reward = -state[T.carry_time] / scale
    elif objective == OBJECTIVE_FLOW:
        reward = -state[T.carry_flow] / (scale * n_jobs)
    else:
        reward = -state[T.carry_tardiness] / (scale * n_jobs)
    state[T.carry_time] = 0
    state[T.carry_flow] = 0
    state[T.carry_tardiness] = 0
    return reward


@_kernel
def dynamic_job_features(inst, state, j, allowed, mean_p, max_weight, load, queue_work, queue_count, context,
                         features, row, J, M, O, D, S):  # fmt: skip
    """Write slot ``j``'s features into ``features[row]`` (see :func:`dynamic_observe`); ``allowed``
    is its mask entry, ``load``, ``queue_work``, ``queue_count`` the machines' planned load and queues
    now, ``context`` the shop's context columns."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    now = state[T.now]
    per_time = 1.0 / inst[I.time_scale]
    per_duration = 1.0 / inst[I.duration_scale]
    machine = state[T.job_machine + j]
    window = window_at(inst, state, machine, J, M, O, D, S)
    left = state[T.job_remaining + j]
    ops_left = inst[I.job_n_ops + j] - state[T.job_next_op + j]
    slack = inst[I.job_due + j] - now - left
    next_machine, npt = next_after(inst, state, j, J, M, O)
    features[row, DF.allowed] = allowed
    features[row, DF.next_planned_duration] = state[T.job_duration + j] * per_duration
    features[row, DF.planned_remaining_work] = left * per_time
    features[row, DF.remaining_ops] = ops_left / inst[I.n_machines]  # not the padded O: the same in any batch
    features[row, DF.job_busy_for] = max(0, state[T.job_expected + j] - now) * per_time
    features[row, DF.machine_busy_for] = max(0, state[T.machine_expected + machine] - now) * per_time
    features[row, DF.machine_down] = 1.0 if window != NONE else 0.0
    features[row, DF.machine_down_for] = (inst[I.window_end + window] - now) * per_time if window != NONE else 0.0
    features[row, DF.machine_planned_load] = load[machine] * per_time
    features[row, DF.due_date_slack] = max(min(slack * per_time, FEATURE_LIMIT), -FEATURE_LIMIT)
    features[row, DF.weight] = inst[I.job_weight + j] / max_weight
    features[row, DF.time_in_system] = min((now - inst[I.job_release + j]) * per_time, FEATURE_LIMIT)
    features[row, DF.next_after_duration] = npt * per_duration
    features[row, DF.next_machine_queue_work] = queue_work[next_machine] * per_time if next_machine != NONE else 0.0
    features[row, DF.machine_queue_work] = queue_work[machine] * per_time
    features[row, DF.machine_queue_length] = queue_count[machine] / inst[I.n_machines]
    per_op = slack / max(ops_left, 1) * per_duration
    features[row, DF.slack_per_operation] = max(min(per_op, FEATURE_LIMIT), -FEATURE_LIMIT)
    atc = atc_log_index(inst, state, j, now, mean_p, J, M, O) + np.log(mean_p)
    features[row, DF.atc_priority] = max(min(atc, FEATURE_LIMIT), -FEATURE_LIMIT)
    ratio = (inst[I.job_due + j] - now) / max(left, 1)
    features[row, DF.critical_ratio] = max(min(ratio, CRITICAL_RATIO_LIMIT), -CRITICAL_RATIO_LIMIT)
    features[row, DF.wspt_priority] = np.log(
        max(inst[I.job_weight + j], 1) * mean_p / max(state[T.job_duration + j], 1)
    )
    features[row, DF.positive_slack] = min(max(0, slack) / mean_p, FEATURE_LIMIT)  # ATC_k = wspt - this / k
    for c in range(N_DYNAMIC_CONTEXT):
        features[row, N_DYNAMIC_JOB_FEATURES + c] = context[c]


@_kernel
def dynamic_shop_totals(inst, state, mask, load, queue_work, queue_count, context, J, M, O, D, S):
    """The machines' planned load (work left of the jobs in slots) and queues now, and the shop's
    context (``DYNAMIC_CONTEXT_NAMES``) into ``context``; returns (mean next duration of the
    allowed jobs, largest weight in the slots)."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    load[:] = 0
    queue_work[:] = 0
    queue_count[:] = 0
    max_weight = 1
    now = state[T.now]
    jobs, late, ratios, work = 0, 0, 0.0, 0
    for a in range(state[T.n_active]):
        j = state[T.active + a]
        machine = state[T.job_machine + j]
        if machine != NONE:
            max_weight = max(max_weight, inst[I.job_weight + j])
            for k in range(state[T.job_next_op + j], inst[I.job_n_ops + j]):
                load[inst[I.op_machine + j * O + k]] += inst[I.op_duration + j * O + k]
            if queue_of(state, j, now, J, M, O):
                queue_work[machine] += state[T.job_duration + j]
                queue_count[machine] += 1
            left = state[T.job_remaining + j]
            jobs += 1
            work += left
            late += inst[I.job_due + j] - now - left < 0
            ratio = (inst[I.job_due + j] - now) / max(left, 1)
            ratios += max(min(ratio, CRITICAL_RATIO_LIMIT), -CRITICAL_RATIO_LIMIT)
    machines = inst[I.n_machines]
    down = 0
    for m in range(machines):
        down += window_at(inst, state, m, J, M, O, D, S) != NONE
    context[0] = min(jobs / machines, FEATURE_LIMIT)
    context[1] = min(work / machines / inst[I.time_scale], FEATURE_LIMIT)
    context[2] = late / max(jobs, 1)
    context[3] = ratios / max(jobs, 1)
    context[4] = down / machines
    context[5] = machines / 10.0
    context[6] = max(0.0, 1.0 - state[T.n_arrived] / EARLY_JOBS)
    context[7] = 1.0 if state[T.n_arrived] >= inst[I.stream_jobs] and inst[I.stream_open] == 0 else 0.0
    return allowed_mean_duration(state, mask, J, M, O), max_weight


@_kernel
def dynamic_observe(inst, state, mask, features, J, M, O, D, S):
    """Write the ``(J, N_DYNAMIC_FEATURES)`` features of the slots from what a planner knows
    now: planned (not real) durations, machines down now and until when (a breakdown is
    revealed when it starts), expected free times, the machines' queues. Free slots and
    finished jobs stay zero."""
    T = dynamic_state_offsets(J, M, O, S)
    load = np.empty(M, dtype=np.int64)
    queue_work = np.empty(M, dtype=np.int64)
    queue_count = np.empty(M, dtype=np.int64)
    context = np.empty(N_DYNAMIC_CONTEXT)
    mean_p, max_weight = dynamic_shop_totals(inst, state, mask, load, queue_work, queue_count, context,
                                             J, M, O, D, S)  # fmt: skip
    for j in range(J):
        if state[T.job_machine + j] == NONE:
            for c in range(N_DYNAMIC_FEATURES):
                features[j, c] = 0.0
        else:
            dynamic_job_features(inst, state, j, mask[j], mean_p, max_weight, load, queue_work, queue_count, context,
                                 features, j, J, M, O, D, S)  # fmt: skip


@_kernel
def dynamic_reset(inst, state, mask, W, J, M, O, D, S):
    """Empty shop at time 0 (free slots, nothing run), then run the clock to the first
    decision. Returns as settle does."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    state[: T.length] = 0
    for m in range(M):
        state[T.machine_head + m] = NONE
        state[T.machine_tail + m] = NONE
        state[T.machine_cursor + m] = inst[I.window_first + m]
    for j in range(J):
        inst[I.job_n_ops + j] = 0
        state[T.job_machine + j] = NONE
        state[T.job_started + j] = NONE
        state[T.slot_job + j] = NONE
    total = 0
    for n in range(inst[I.stream_jobs]):
        total += inst[I.stream_n_ops + n]
    for q in range(S * O):
        state[T.stream_start + q] = NONE
        state[T.stream_end + q] = NONE
    state[T.n_total] = total
    return dynamic_settle(inst, state, mask, W, J, M, O, D, S)


@_kernel
def dynamic_reset_and_observe(inst, state, mask, features, W, J, M, O, D, S):
    """:func:`dynamic_reset`, then observe."""
    count = dynamic_reset(inst, state, mask, W, J, M, O, D, S)
    dynamic_observe(inst, state, mask, features, J, M, O, D, S)
    return count


@_kernel
def dynamic_step_shop(inst, state, action, interruption, objective, mask, features, W, J, M, O, D, S):
    """One decision in a dynamic shop: start ``action``'s next op now (an action outside the
    mask becomes the lowest allowed job), or with ``W`` and ``action == J`` wait for the next
    event; then run the clock to the next decision. Returns (reward, done, invalid, stuck)."""
    if W and action == J and mask[J] != 0:
        count = dynamic_wait(inst, state, NONE, mask, W, J, M, O, D, S)
        invalid = False
    else:
        action, invalid = checked_action(mask, action, J)
        if action == NONE:
            return 0.0, True, True, False
        dynamic_start(inst, state, action, interruption, J, M, O, D, S)
        count = dynamic_settle(inst, state, mask, W, J, M, O, D, S)
    reward = dynamic_reward(inst, state, objective, J, M, O, S)
    dynamic_observe(inst, state, mask, features, J, M, O, D, S)
    return reward, count == 0, invalid, count < 0


@_kernel
def dynamic_observe_pairs(inst, state, job_mask, pair_mask, features, pair_features, W, J, M, O, D, S):
    """:func:`dynamic_observe`, then the (slot, machine) mask (pair ``j * M + m``; with ``W`` the
    wait action last, at ``J * M``) and the pair features (planned duration there, time until the
    machine is expected free, expected end there; relative to now). A classic row's pairs are
    its jobs on their one machine."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    dynamic_observe(inst, state, job_mask, features, J, M, O, D, S)
    flexible = inst[I.alt_table] != NONE
    now = state[T.now]
    per_time = 1.0 / inst[I.time_scale]
    per_duration = 1.0 / inst[I.duration_scale]
    for j in range(J):
        planned = state[T.job_machine + j] if state[T.slot_job + j] != NONE else NONE
        for m in range(M):
            d = -1
            if planned != NONE:
                d = alt_duration(inst, j * O + state[T.job_next_op + j], m, J, M, O) if flexible else (
                    state[T.job_duration + j] if m == planned else -1)  # fmt: skip
            if d < 0:
                pair_mask[j * M + m] = 0
                for c in range(N_PAIR_FEATURES):
                    pair_features[j, m, c] = 0.0
                continue
            if flexible:
                allowed, est = state[T.pair_allowed + j * M + m] != 0, state[T.pair_est + j * M + m]
            else:
                allowed = job_mask[j] != 0
                est = now if allowed else max(now, state[T.job_expected + j], state[T.machine_expected + m])
            pair_mask[j * M + m] = allowed
            pair_features[j, m, PF.duration] = d * per_duration
            pair_features[j, m, PF.machine_free_time] = min(
                max(0, state[T.machine_expected + m] - now) * per_time, FEATURE_LIMIT
            )
            pair_features[j, m, PF.earliest_end] = min((est + d - now) * per_time, FEATURE_LIMIT)
    if W:
        pair_mask[J * M] = job_mask[J]


@_kernel
def dynamic_reset_and_observe_pairs(inst, state, job_mask, pair_mask, features, pair_features, W, J, M, O, D, S):
    """:func:`dynamic_reset`, then observe with pairs."""
    count = dynamic_reset(inst, state, job_mask, W, J, M, O, D, S)
    dynamic_observe_pairs(inst, state, job_mask, pair_mask, features, pair_features, W, J, M, O, D, S)
    return count


@_kernel
def dynamic_step_shop_pairs(inst, state, action, interruption, objective, job_mask, pair_mask, features,
                            pair_features, W, J, M, O, D, S):  # fmt: skip
    """One (slot, machine) decision, action ``j * M + m`` (with ``W``, ``J * M`` waits): start
    that op now there (outside the mask: the lowest allowed pair), run the clock to the next
    decision, observe. Returns (reward, done, invalid, stuck) as :func:`dynamic_step_shop`."""
    T = dynamic_state_offsets(J, M, O, S)
    if W and action == J * M and pair_mask[J * M] != 0:
        count = dynamic_wait(inst, state, NONE, job_mask, W, J, M, O, D, S)
        invalid = False
    else:
        action, invalid = checked_action(pair_mask, action, J * M)
        if action == NONE:
            return 0.0, True, True, False
        job, machine = action // M, action % M
        if inst[dynamic_instance_offsets(J, M, O, D, S).alt_table] != NONE:
            state[T.job_machine + job] = machine
            state[T.job_duration + job] = alt_duration(inst, job * O + state[T.job_next_op + job], machine, J, M, O)
        dynamic_start(inst, state, job, interruption, J, M, O, D, S)
        count = dynamic_settle(inst, state, job_mask, W, J, M, O, D, S)
    reward = dynamic_reward(inst, state, objective, J, M, O, S)
    dynamic_observe_pairs(inst, state, job_mask, pair_mask, features, pair_features, W, J, M, O, D, S)
    return reward, count == 0, invalid, count < 0


@_kernel
def dynamic_wait_shop(inst, state, until, objective, mask, features, W, J, M, O, D, S):
    """Wait (see :func:`dynamic_wait`) and observe. Returns (reward, done, stuck)."""
    count = dynamic_wait(inst, state, until, mask, W, J, M, O, D, S)
    reward = dynamic_reward(inst, state, objective, J, M, O, S)
    dynamic_observe(inst, state, mask, features, J, M, O, D, S)
    return reward, count == 0, count < 0


@_kernel
def dynamic_choose(inst, state, mask, rule, uniform, J, M, O, D, S):
    """The allowed job a rule picks in a dynamic shop, on planned data at the clock's time;
    ties to the first-arrived job."""
    T = dynamic_state_offsets(J, M, O, S)
    return pick_by_rule(inst, state, mask, rule, uniform, state[T.now], T.slot_job, J, M, O)


@_batch_kernel
def rollout_dynamic_rules(insts, states, rules, uniforms, interruptions, objective, masks, J, M, O, D, S):
    """Whole dynamic episodes in N shops at once, shop i dispatching by ``rules[i]`` (random
    draws from ``uniforms[i]``); no features are computed. Returns each shop's summed reward;
    schedules stay in ``states``."""
    returns = np.zeros(states.shape[0])
    for i in prange(states.shape[0]):
        count = dynamic_reset(insts[i], states[i], masks[i], NO_WAIT, J, M, O, D, S)
        total = dynamic_reward(insts[i], states[i], objective, J, M, O, S)
        step = 0
        while count > 0:
            job = dynamic_choose(
                insts[i], states[i], masks[i], rules[i], uniforms[i, step % uniforms.shape[1]], J, M, O, D, S
            )
            dynamic_start(insts[i], states[i], job, interruptions[i], J, M, O, D, S)
            count = dynamic_settle(insts[i], states[i], masks[i], NO_WAIT, J, M, O, D, S)
            total += dynamic_reward(insts[i], states[i], objective, J, M, O, S)
            step += 1
        returns[i] = total
    return returns


# ---- learned priority: a small network scores every allowed job from its features -------
# Parameters, flat: W1 (F x H) row-major, b1 (H), w2 (H), the linear skip (F), b (1); a network with
# context adds the gates G (FJ x C) row-major, FJ the per-job columns, C the context ones; a network
# that also picks machines adds u (P), weights on the pair features of each startable (job, machine):
# score(x) = (w_skip + G ctx) . x_job + w_skip_ctx . ctx + w2 . tanh(softsign(x) W1 + b1) + b,
# score(job, machine) = score(x_job) + u . pair_features(job, machine),
# softsign(x) = x / (1 + |x|), ctx = the context columns: each per-job weight moves with the shop's
# context, so one network can weigh slack one way in a light shop and another in a loaded one.
@_kernel
def priority_parameters(hidden):
    """How many parameters a priority network with ``hidden`` units and no context gates has."""
    F = N_DYNAMIC_FEATURES
    return F * hidden + 2 * hidden + F + 1


@_kernel
def priority_gates(params, hidden):
    """Where a network's gates start in ``params``, or -1 when it has none."""
    base = priority_parameters(hidden)
    gated = base + N_DYNAMIC_JOB_FEATURES * N_DYNAMIC_CONTEXT
    if params.shape[0] == gated or params.shape[0] == gated + N_PAIR_FEATURES:
        return base
    return -1


@_kernel
def priority_pair_weights(params, hidden):
    """Where a network's pair-feature weights start in ``params``, or -1 when it picks jobs only."""
    gated = priority_parameters(hidden) + N_DYNAMIC_JOB_FEATURES * N_DYNAMIC_CONTEXT
    if params.shape[0] == gated + N_PAIR_FEATURES:
        return gated
    return -1


@_kernel
def priority_score(params, hidden, x, row):
    """The network's score of the feature row ``x[row]`` (see the layout above)."""
    F = N_DYNAMIC_FEATURES
    H = hidden
    b1, w2, skip = F * H, F * H + H, F * H + 2 * H
    gates = priority_gates(params, hidden)
    score = params[skip + F]
    for c in range(F):
        score += params[skip + c] * x[row, c]
    if gates >= 0:
        for c in range(N_DYNAMIC_JOB_FEATURES):
            gate = 0.0
            for k in range(N_DYNAMIC_CONTEXT):
                gate += params[gates + c * N_DYNAMIC_CONTEXT + k] * x[row, N_DYNAMIC_JOB_FEATURES + k]
            score += gate * x[row, c]
    for h in range(H):
        z = params[b1 + h]
        for c in range(F):
            v = x[row, c]
            z += params[c * H + h] * (v / (1.0 + abs(v)))
        score += params[w2 + h] * np.tanh(z)
    return score


@_kernel
def startable_pair_score(inst, state, params, u, j, m, J, M, O, D, S):
    """``u . pair features`` of slot ``j``'s next op starting now on machine ``m`` (as
    :func:`dynamic_observe_pairs` writes them for an allowed pair), or -inf if it cannot start there."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    if inst[I.alt_table] != NONE:
        if state[T.pair_allowed + j * M + m] == 0:
            return -np.inf
        d = alt_duration(inst, j * O + state[T.job_next_op + j], m, J, M, O)
    else:
        if m != state[T.job_machine + j]:
            return -np.inf
        d = state[T.job_duration + j]
    now = state[T.now]
    per_time = 1.0 / inst[I.time_scale]
    free = min(max(0, state[T.machine_expected + m] - now) * per_time, FEATURE_LIMIT)
    end = min(d * per_time, FEATURE_LIMIT)
    return (params[u + PF.duration] * (d / inst[I.duration_scale]) + params[u + PF.machine_free_time] * free
            + params[u + PF.earliest_end] * end)  # fmt: skip


@_kernel
def dynamic_choose_scored(inst, state, mask, params, hidden, scratch, J, M, O, D, S):
    """The allowed job with the highest network score (ties to the first-arrived job); the
    features are computed for the allowed jobs only, into ``scratch`` (J, F). A network with pair
    weights picks the best startable (job, machine) instead and plans the job on that machine
    (ties: the first-arrived job, then the lowest machine)."""
    I = dynamic_instance_offsets(J, M, O, D, S)
    T = dynamic_state_offsets(J, M, O, S)
    load = np.empty(M, dtype=np.int64)
    queue_work = np.empty(M, dtype=np.int64)
    queue_count = np.empty(M, dtype=np.int64)
    context = np.empty(N_DYNAMIC_CONTEXT)
    mean_p, max_weight = dynamic_shop_totals(inst, state, mask, load, queue_work, queue_count, context,
                                             J, M, O, D, S)  # fmt: skip
    u = priority_pair_weights(params, hidden)
    best = NONE
    best_machine = NONE
    best_key = 0.0
    best_tie = NONE  # unread while best is NONE
    for j in range(J):
        if mask[j] == 0:
            continue
        dynamic_job_features(inst, state, j, 1.0, mean_p, max_weight, load, queue_work, queue_count, context, scratch,
                             j, J, M, O, D, S)  # fmt: skip
        score = priority_score(params, hidden, scratch, j)
        tie = state[T.slot_job + j]
        if u < 0:
            if improves(best, -score, tie, best_key, best_tie):  # the highest score first
                best, best_key, best_tie = j, -score, tie
            continue
        for m in range(M):
            bonus = startable_pair_score(inst, state, params, u, j, m, J, M, O, D, S)
            if bonus != -np.inf and improves(best, -(score + bonus), tie, best_key, best_tie):
                best, best_machine, best_key, best_tie = j, m, -(score + bonus), tie
    if best_machine != NONE and inst[I.alt_table] != NONE:
        state[T.job_machine + best] = best_machine
        state[T.job_duration + best] = alt_duration(inst, best * O + state[T.job_next_op + best], best_machine,
                                                    J, M, O)  # fmt: skip
    return best


@_batch_kernel
def rollout_dynamic_scored(insts, states, params, hidden, interruptions, objective, masks, J, M, O, D, S):
    """Whole dynamic episodes in N shops at once, shop i dispatching by the priority network
    ``params[i]`` (one parameter vector per shop: a population in one call). Returns each
    shop's summed reward; schedules stay in ``states``."""
    returns = np.zeros(states.shape[0])
    for i in prange(states.shape[0]):
        scratch = np.zeros((J, N_DYNAMIC_FEATURES))
        count = dynamic_reset(insts[i], states[i], masks[i], NO_WAIT, J, M, O, D, S)
        total = dynamic_reward(insts[i], states[i], objective, J, M, O, S)
        while count > 0:
            job = dynamic_choose_scored(insts[i], states[i], masks[i], params[i], hidden, scratch, J, M, O, D, S)
            dynamic_start(insts[i], states[i], job, interruptions[i], J, M, O, D, S)
            count = dynamic_settle(insts[i], states[i], masks[i], NO_WAIT, J, M, O, D, S)
            total += dynamic_reward(insts[i], states[i], objective, J, M, O, S)
        returns[i] = total
    return returns


# ---- batches -------------------------------------------------------------------------
@_kernel
def _keep_final(i, masks, features, states, final_masks, final_features, final_states):
    """Keep shop ``i``'s last mask, features and state before it restarts (autoreset)."""
    final_masks[i, :] = masks[i]
    final_features[i, :, :] = features[i]
    final_states[i, :] = states[i]


@_batch_kernel
def reset_batch(insts, states, indices, placement, action_set, masks, features, J, M, O):
    """Reset the shops listed in ``indices`` (rows of the batch) and observe them."""
    for n in prange(indices.shape[0]):
        i = indices[n]
        reset_and_observe(insts[i], states[i], placement, action_set, masks[i], features[i], J, M, O)


@_batch_kernel
def step_batch(
    insts, states, actions, placement, action_set, reward_mode, autoreset,
    masks, features, rewards, dones, invalids, final_masks, final_features, final_states, J, M, O,
):  # fmt: skip
    """One decision in each of N shops (in parallel). With ``autoreset``, a shop that finishes
    keeps its last mask, features and state in ``final_*`` and restarts on the same instance row."""
    for i in prange(states.shape[0]):
        reward, done, invalid = step_shop(
            insts[i], states[i], actions[i], placement, action_set, reward_mode, masks[i], features[i], J, M, O
        )
        rewards[i] = reward
        dones[i] = done
        invalids[i] = invalid
        if done and autoreset:
            _keep_final(i, masks, features, states, final_masks, final_features, final_states)
            reset_and_observe(insts[i], states[i], placement, action_set, masks[i], features[i], J, M, O)


@_batch_kernel
def reset_batch_pairs(
    insts, states, indices, placement, action_set, job_masks, masks, features, pair_features, J, M, O
):
    """:func:`reset_batch` for pair actions (``masks`` over (job, machine) pairs)."""
    for n in prange(indices.shape[0]):
        i = indices[n]
        reset_and_observe_pairs(insts[i], states[i], placement, action_set, job_masks[i], masks[i], features[i],
                                pair_features[i], J, M, O)  # fmt: skip


@_batch_kernel
def step_batch_pairs(
    insts, states, actions, placement, action_set, reward_mode, autoreset, job_masks, masks, features, pair_features,
    rewards, dones, invalids, final_masks, final_features, final_pair_features, final_states, J, M, O,
):  # fmt: skip
    """:func:`step_batch` for pair actions: one (job, machine) decision in each of N shops."""
    for i in prange(states.shape[0]):
        reward, done, invalid = step_shop_pairs(
            insts[i], states[i], actions[i], placement, action_set, reward_mode, job_masks[i], masks[i], features[i],
            pair_features[i], J, M, O,
        )  # fmt: skip
        rewards[i] = reward
        dones[i] = done
        invalids[i] = invalid
        if done and autoreset:
            _keep_final(i, masks, features, states, final_masks, final_features, final_states)
            final_pair_features[i, :, :, :] = pair_features[i]
            reset_and_observe_pairs(insts[i], states[i], placement, action_set, job_masks[i], masks[i], features[i],
                                    pair_features[i], J, M, O)  # fmt: skip


@_batch_kernel
def dynamic_reset_batch(insts, states, indices, masks, features, counts, W, J, M, O, D, S):
    """Reset the dynamic shops listed in ``indices``; ``counts`` gets their allowed-job counts."""
    for n in prange(indices.shape[0]):
        i = indices[n]
        counts[i] = dynamic_reset_and_observe(insts[i], states[i], masks[i], features[i], W, J, M, O, D, S)


@_batch_kernel
def dynamic_step_batch(
    insts, states, actions, interruptions, objective, autoreset, masks, features, rewards, dones, invalids,
    stuck, final_masks, final_features, final_states, W, J, M, O, D, S,
):  # fmt: skip
    """One decision in each of N dynamic shops; finished shops keep their last observation and
    state in ``final_*`` and restart on the same scenario row (with ``autoreset``)."""
    for i in prange(states.shape[0]):
        reward, done, invalid, blocked = dynamic_step_shop(
            insts[i], states[i], actions[i], interruptions[i], objective, masks[i], features[i], W, J, M, O, D, S
        )
        rewards[i] = reward
        dones[i] = done
        invalids[i] = invalid
        stuck[i] = blocked
        if done and autoreset:
            _keep_final(i, masks, features, states, final_masks, final_features, final_states)
            dynamic_reset_and_observe(insts[i], states[i], masks[i], features[i], W, J, M, O, D, S)


@_batch_kernel
def dynamic_reset_batch_pairs(insts, states, indices, job_masks, masks, features, pair_features, counts, W,
                              J, M, O, D, S):  # fmt: skip
    """:func:`dynamic_reset_batch` with (slot, machine) actions."""
    for n in prange(indices.shape[0]):
        i = indices[n]
        counts[i] = dynamic_reset_and_observe_pairs(insts[i], states[i], job_masks[i], masks[i], features[i],
                                                    pair_features[i], W, J, M, O, D, S)  # fmt: skip


@_batch_kernel
def dynamic_step_batch_pairs(
    insts, states, actions, interruptions, objective, autoreset, job_masks, masks, features, pair_features, rewards,
    dones, invalids, stuck, final_masks, final_features, final_pair_features, final_states, W, J, M, O, D, S,
):  # fmt: skip
    """:func:`dynamic_step_batch` with (slot, machine) actions."""
    for i in prange(states.shape[0]):
        reward, done, invalid, blocked = dynamic_step_shop_pairs(
            insts[i], states[i], actions[i], interruptions[i], objective, job_masks[i], masks[i], features[i],
            pair_features[i], W, J, M, O, D, S,
        )  # fmt: skip
        rewards[i] = reward
        dones[i] = done
        invalids[i] = invalid
        stuck[i] = blocked
        if done and autoreset:
            _keep_final(i, masks, features, states, final_masks, final_features, final_states)
            final_pair_features[i, :, :, :] = pair_features[i]
            dynamic_reset_and_observe_pairs(insts[i], states[i], job_masks[i], masks[i], features[i], pair_features[i],
                                            W, J, M, O, D, S)  # fmt: skip


@_kernel
def sample_valid_actions(masks, uniforms, actions):
    """Uniformly random allowed action per shop from caller-drawn uniforms in [0, 1); -1 if none."""
    for i in range(masks.shape[0]):
        actions[i] = nth_allowed(masks[i], uniforms[i], masks.shape[1])


def _tiny_static_shop():
    """Rows of a 2-job, 2-machine shop, for compiling the static kernels."""
    J, M, O = 2, 2, 2
    I = instance_offsets.py_func(J, M, O)
    insts = np.zeros((1, I.length), dtype=np.int64)
    inst = insts[0]
    inst[I.n_jobs], inst[I.n_machines], inst[I.time_scale], inst[I.duration_scale] = 2, 2, 2, 1
    inst[I.alt_table] = NONE
    inst[I.op_machine : I.op_machine + 4] = [0, 1, 1, 0]
    inst[I.op_duration : I.op_duration + 4] = 1
    inst[I.job_n_ops : I.job_n_ops + 2] = 2
    states = np.zeros((1, state_offsets.py_func(J, M, O).length), dtype=np.int64)
    return insts, states, J, M, O


def warm_static() -> None:
    """Compile (or load from the on-disk cache) the static shop's kernels: env, batch, rules."""
    insts, states, J, M, O = _tiny_static_shop()
    inst = insts[0]
    masks = np.zeros((1, J), dtype=np.int8)
    features = np.zeros((1, J, N_FEATURES), dtype=np.float32)
    rewards = np.zeros(1)
    flags = np.zeros(1, dtype=np.bool_)
    actions = np.zeros(1, dtype=np.int64)
    for placement in (PLACEMENT_APPEND, PLACEMENT_ACTIVE):
        reset_batch(insts, states, np.zeros(1, dtype=np.int64), placement, ACTIONS_ANY, masks, features, J, M, O)
        step_batch(
            insts, states, actions, placement, ACTIONS_GT, REWARD_DENSE, True,
            masks, features, rewards, flags, flags.copy(), masks.copy(), features.copy(), states.copy(), J, M, O,
        )  # fmt: skip
        reset_and_observe(inst, states[0], placement, ACTIONS_NON_DELAY, masks[0], features[0], J, M, O)
        step_shop(inst, states[0], 0, placement, ACTIONS_ANY, REWARD_SPARSE, masks[0], features[0], J, M, O)
    sample_valid_actions(masks, np.zeros(1), actions)
    rollout_rules(insts, states, np.zeros(1, dtype=np.int64), np.zeros((1, 4)), 1, 1, masks, features, J, M, O)
    choose_by_rule(inst, states[0], masks[0], RULE.mwkr, 0.0, J, M, O)


def _tiny_dynamic_shop():
    """Rows of the same two jobs as a stream with one downtime on machine 0."""
    J, M, O, D, S = 2, 2, 2, 1, 2
    I = dynamic_instance_offsets.py_func(J, M, O, D, S)
    row = np.zeros(I.length, dtype=np.int64)
    row[I.n_jobs], row[I.n_machines], row[I.time_scale], row[I.duration_scale] = 2, 2, 2, 1
    row[I.alt_table] = NONE
    row[I.stream_jobs] = S
    row[I.stream_machine : I.stream_machine + 4] = [0, 1, 1, 0]
    row[I.stream_duration : I.stream_duration + 4] = 1
    row[I.stream_real : I.stream_real + 4] = 1
    row[I.stream_n_ops : I.stream_n_ops + 2] = 2
    row[I.stream_weight : I.stream_weight + 2] = 1
    row[I.window_first : I.window_first + 3] = [0, 1, 1]
    row[I.window_start], row[I.window_end] = 1, 2
    state = np.zeros(dynamic_state_offsets.py_func(J, M, O, S).length, dtype=np.int64)
    return row, state, (J, M, O, D, S)


def warm_dynamic() -> None:
    """Compile (or load from the on-disk cache) the dynamic shop's kernels: env, wait, batch, rules."""
    row, state, dims = _tiny_dynamic_shop()
    J = dims[0]
    features = np.zeros((J, N_DYNAMIC_FEATURES), dtype=np.float32)
    rewards, actions = np.zeros(1), np.zeros(1, dtype=np.int64)
    flags = np.zeros(1, dtype=np.bool_)
    for W in (0, 1):
        mask = np.zeros(J + W, dtype=np.int8)
        for interruption in (INTERRUPT_RESUME, INTERRUPT_RESTART):
            dynamic_reset_and_observe(row, state, mask, features, W, *dims)
            dynamic_step_shop(row, state, 0, interruption, OBJECTIVE_TARDINESS, mask, features, W, *dims)
            dynamic_wait_shop(row, state, NONE, OBJECTIVE_TARDINESS, mask, features, W, *dims)
        rows, states = row[None, :].copy(), state[None, :].copy()
        masks, batch_features = mask[None, :].copy(), features[None, :, :].copy()
        dynamic_reset_batch(rows, states, np.zeros(1, dtype=np.int64), masks, batch_features, np.zeros(1, dtype=np.int64),
                            W, *dims)  # fmt: skip
        dynamic_step_batch(
            rows, states, actions, np.zeros(1, dtype=np.int64), OBJECTIVE_TARDINESS, True, masks, batch_features,
            rewards, flags, flags.copy(), flags.copy(), masks.copy(), batch_features.copy(), states.copy(), W, *dims,
        )  # fmt: skip
    no_interruptions = np.zeros(1, dtype=np.int64)
    rollout_dynamic_rules(
        rows, states, np.full(1, RULE.atc), np.zeros((1, 8)), no_interruptions, OBJECTIVE_TARDINESS,
        np.zeros((1, J), dtype=np.int8), *dims,
    )  # fmt: skip
    rollout_dynamic_scored(
        rows, states, np.zeros((1, priority_parameters(2))), 2, no_interruptions, OBJECTIVE_TARDINESS,
        np.zeros((1, J), dtype=np.int8), *dims,
    )  # fmt: skip
