"""Every compiled (numba) function of sched-env: one simulator for env, batch, rules and service.

A shop is two flat int64 rows: an *instance row* (what the problem is) and a *state row* (what
has been decided). A batch of N shops is two 2-D arrays whose rows are shops, so one kernel
call advances all of them. Fixed padded sizes ``J`` (jobs), ``M`` (machines), ``O``
(operations per job) give every row the same length; operation ``k`` of job ``j`` is the
flat index ``p = j * O + k``. ``instance_offsets`` and ``state_offsets`` say where each field
starts (after the ``IN_*``/``ST_*`` header scalars below); ``sched_env.shop.ShopLayout`` gives
the same fields as named numpy views on the Python side.
Kernels index the rows through integer offsets (``state[EST + j]``) rather than array views:
building views costs about 0.3 us per call, more than a whole decision.

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

import numpy as np
from numba import njit, prange

# Decorator flags, set in one place. cache=True writes compiled code to __pycache__ so later
# processes skip compilation; nogil lets threads (e.g. a web server) overlap with kernels.
_FLAGS = {"cache": True, "nogil": True, "boundscheck": False}
_kernel = njit(**_FLAGS)
_parallel_kernel = njit(parallel=True, **_FLAGS)

# ---- enumerations shared with Python -------------------------------------------------
PLACEMENT_APPEND = 0
PLACEMENT_ACTIVE = 1
ACTIONS_ANY = 0
ACTIONS_GT = 1
ACTIONS_NON_DELAY = 2
REWARD_DENSE = 0
REWARD_SPARSE = 1
# dispatching rules (baselines/rules.py): priority of an allowed job, smallest key wins
RULE_SPT = 0  # shortest next operation
RULE_LPT = 1  # longest next operation
RULE_MWKR = 2  # most work remaining
RULE_LWKR = 3  # least work remaining
RULE_MOPNR = 4  # most operations remaining
RULE_FIFO = 5  # ready earliest (waited longest)
RULE_EDD = 6  # earliest due date
RULE_RANDOM = 7  # uniformly random allowed job
RULE_ATC = 8  # apparent tardiness cost (dynamic shop: weights, due dates, the clock)
ATC_K = 2.0  # ATC look-ahead: slack is discounted over ATC_K mean operation lengths
NONE = -1  # "no operation" in the linked lists

# ---- instance row layout -------------------------------------------------------------
IN_N_JOBS = 0
IN_N_MACHINES = 1
IN_TIME_SCALE = 2  # normalises times in features/rewards: max(1, simple lower bound)
IN_DUR_SCALE = 3  # normalises durations: max(1, longest operation)
IN_HEADER = 4

# ---- state row layout ----------------------------------------------------------------
ST_N_SCHEDULED = 0
ST_N_TOTAL = 1
ST_MAKESPAN = 2  # latest end of the operations scheduled so far
ST_LOWER_BOUND = 3  # current makespan lower bound (drives the dense reward)
ST_HEADER = 4

#: Features per job in the observation (documented in ``JobShopEnv``).
N_FEATURES = 10
#: Features are clipped to [-FEATURE_LIMIT, FEATURE_LIMIT] so the observation space is bounded;
#: a normalised time reaches it only for schedules 1000x longer than the lower bound.
FEATURE_LIMIT = 1000.0


@_kernel
def instance_row_length(J: int, M: int, O: int) -> int:  # noqa: E741 - O is the ops dimension
    return IN_HEADER + 2 * J * O + 3 * J


@_kernel
def state_row_length(J: int, M: int, O: int) -> int:
    return ST_HEADER + 6 * J + 5 * M + 4 * J * O


@_kernel
def instance_offsets(J, O):
    """Where each instance field starts in an instance row (index with ``field + j*O + k`` or
    ``field + j``): op machine, op duration, ops per job, release date, due date."""
    op_machine = IN_HEADER
    op_duration = op_machine + J * O
    job_n_ops = op_duration + J * O
    job_release = job_n_ops + J
    job_due = job_release + J
    return op_machine, op_duration, job_n_ops, job_release, job_due


@_kernel
def state_offsets(J, M, O):
    """Where each state field starts in a state row.

    Per job: next op index; its machine and duration (NONE and 0 once the job is done, so
    the hot loops need no lookup into the instance); ready time (end of its last scheduled
    op, or release); cached earliest start of the next op (completion once done); work left,
    next op included. Per machine: latest end, first and last op in start order, unscheduled
    work, unfinished jobs whose next op is on it. Per op: start, end, and the next and
    previous op on the same machine in start order (a doubly linked list; ACTIVE only)."""
    job_next_op = ST_HEADER
    job_machine = job_next_op + J
    job_duration = job_machine + J
    job_ready = job_duration + J
    job_est = job_ready + J
    job_remaining = job_est + J
    machine_end = job_remaining + J
    machine_head = machine_end + M
    machine_tail = machine_head + M
    machine_remaining = machine_tail + M
    machine_waiting = machine_remaining + M
    op_start = machine_waiting + M
    op_end = op_start + J * O
    op_next = op_end + J * O
    op_previous = op_next + J * O
    return (
        job_next_op, job_machine, job_duration, job_ready, job_est, job_remaining, machine_end,
        machine_head, machine_tail, machine_remaining, machine_waiting, op_start, op_end, op_next, op_previous,
    )  # fmt: skip


# ---- one shop ------------------------------------------------------------------------
@_kernel
def earliest_start(state, job, placement, J, M, O):
    """Earliest feasible start of ``job``'s next operation, and the op it would follow on its
    machine's list (NONE = becomes the head). Only valid for an unfinished job.

    ACTIVE: walk back from the machine's last op past every op that ends after the job is
    ready (ends rise along the list), then forward through those for the first gap that
    fits. Cost: the ops ending after the ready time, usually a handful."""
    (_NEXT, MACHINE, DURATION, READY, _EST, _REM, MACHINE_END, MACHINE_HEAD, MACHINE_TAIL, _MREM, _MWAIT,
     OP_START, OP_END, OP_NEXT, OP_PREVIOUS) = state_offsets(J, M, O)  # fmt: skip
    machine = state[MACHINE + job]
    ready = state[READY + job]
    if placement == PLACEMENT_APPEND:
        return max(ready, state[MACHINE_END + machine]), NONE
    duration = state[DURATION + job]
    previous = state[MACHINE_TAIL + machine]
    while previous != NONE and state[OP_END + previous] > ready:
        previous = state[OP_PREVIOUS + previous]
    q = state[MACHINE_HEAD + machine] if previous == NONE else state[OP_NEXT + previous]
    previous_end = ready
    while q != NONE:
        if previous_end + duration <= state[OP_START + q]:
            return previous_end, previous
        previous_end = max(previous_end, state[OP_END + q])
        previous = q
        q = state[OP_NEXT + q]
    return previous_end, previous


@_kernel
def _first_fit_after(state, p, end, ready, duration, J, M, O):
    """Earliest start at or after max(end, ready) that fits before the ops following op ``p``
    (which ends at ``end``) on its machine's list."""
    OP_START, OP_END, OP_NEXT = state_offsets(J, M, O)[11:14]
    t = max(end, ready)
    q = state[OP_NEXT + p]
    while q != NONE:
        if t + duration <= state[OP_START + q]:
            return t
        t = max(t, state[OP_END + q])
        q = state[OP_NEXT + q]
    return t


@_kernel
def _refresh(state, job, placement, J, M, O):
    """Recompute the cached earliest start of one job (its completion time once done) and
    return the job's term of the lower bound: earliest start + work left."""
    _NEXT, MACHINE, _DUR, READY, EST, REMAINING = state_offsets(J, M, O)[:6]
    if state[MACHINE + job] == NONE:
        state[EST + job] = state[READY + job]
    else:
        state[EST + job] = earliest_start(state, job, placement, J, M, O)[0]
    return state[EST + job] + state[REMAINING + job]


@_kernel
def reset_shop(inst, state, placement, J, M, O):
    """Empty schedule: every job ready at its release date, nothing on any machine."""
    OP_MACHINE, OP_DURATION, N_OPS, RELEASE, _DUE = instance_offsets(J, O)
    (NEXT_OP, MACHINE, DURATION, READY, EST, REMAINING, MACHINE_END, MACHINE_HEAD, MACHINE_TAIL,
     MACHINE_REMAINING, MACHINE_WAITING, OP_START, OP_END, OP_NEXT, OP_PREVIOUS) = state_offsets(J, M, O)  # fmt: skip
    state[:] = 0
    state[MACHINE_HEAD : MACHINE_TAIL + M] = NONE  # machine heads and tails
    state[OP_START : OP_PREVIOUS + J * O] = NONE  # op start, end, next and previous
    total = 0
    for j in range(J):
        state[READY + j] = inst[RELEASE + j]
        work = 0
        for k in range(inst[N_OPS + j]):
            p = j * O + k
            work += inst[OP_DURATION + p]
            state[MACHINE_REMAINING + inst[OP_MACHINE + p]] += inst[OP_DURATION + p]
        state[REMAINING + j] = work
        total += inst[N_OPS + j]
        state[MACHINE + j] = NONE
        if inst[N_OPS + j] > 0:
            state[MACHINE + j] = inst[OP_MACHINE + j * O]
            state[DURATION + j] = inst[OP_DURATION + j * O]
            state[MACHINE_WAITING + state[MACHINE + j]] += 1
    state[ST_N_TOTAL] = total
    bound = 0
    for j in range(J):
        term = _refresh(state, j, placement, J, M, O)
        if inst[N_OPS + j] > 0:
            bound = max(bound, term)
    state[ST_LOWER_BOUND] = bound


@_kernel
def record_op(inst, state, job, start, end, J, M, O):
    """Book ``job``'s next operation as run during [start, end): the op, its machine, the job
    (next op, its machine and planned duration), the counters and the makespan. Shared by the
    static and the dynamic simulator; the machine lists and cached starts are the caller's."""
    OP_MACHINE, OP_DURATION, N_OPS, _RELEASE, _DUE = instance_offsets(J, O)
    (NEXT_OP, MACHINE, DURATION, READY, _EST, REMAINING, MACHINE_END, _HEAD, _TAIL,
     MACHINE_REMAINING, MACHINE_WAITING, OP_START, OP_END) = state_offsets(J, M, O)[:13]  # fmt: skip
    p = job * O + state[NEXT_OP + job]
    machine = state[MACHINE + job]
    duration = state[DURATION + job]
    state[OP_START + p] = start
    state[OP_END + p] = end
    state[MACHINE_END + machine] = max(state[MACHINE_END + machine], end)
    state[MACHINE_REMAINING + machine] -= duration
    state[MACHINE_WAITING + machine] -= 1
    state[READY + job] = end
    state[REMAINING + job] -= duration
    state[NEXT_OP + job] += 1
    if state[NEXT_OP + job] < inst[N_OPS + job]:
        state[MACHINE + job] = inst[OP_MACHINE + p + 1]
        state[DURATION + job] = inst[OP_DURATION + p + 1]
        state[MACHINE_WAITING + state[MACHINE + job]] += 1
    else:
        state[MACHINE + job] = NONE
        state[DURATION + job] = 0
    state[ST_N_SCHEDULED] += 1
    state[ST_MAKESPAN] = max(state[ST_MAKESPAN], end)


@_kernel
def dispatch(inst, state, job, placement, J, M, O):
    """Start ``job``'s next operation at its earliest feasible time; return that start.

    Updates the job, the machine (and its start-ordered list), the cached earliest starts of
    the jobs that wait for the same machine, the makespan and the lower bound
    max(makespan, max over jobs of earliest start of next op + work left). Every term only
    grows (a job's earliest start rises by at least what its work left falls), so the bound is
    kept incrementally from the changed jobs; it equals the makespan once every op is
    scheduled, so the dense reward (its decrease) sums to minus the final makespan + a constant."""
    (NEXT_OP, MACHINE, DURATION, READY, EST, REMAINING, _MEND, MACHINE_HEAD, MACHINE_TAIL, _MREM, _MWAIT,
     _START, _END, OP_NEXT, OP_PREVIOUS) = state_offsets(J, M, O)  # fmt: skip
    start, previous = earliest_start(state, job, placement, J, M, O)
    p = job * O + state[NEXT_OP + job]
    machine = state[MACHINE + job]
    end = start + state[DURATION + job]
    if placement == PLACEMENT_ACTIVE:  # link p after `previous` in the machine's list
        following = state[MACHINE_HEAD + machine] if previous == NONE else state[OP_NEXT + previous]
        state[OP_PREVIOUS + p] = previous
        state[OP_NEXT + p] = following
        if previous == NONE:
            state[MACHINE_HEAD + machine] = p
        else:
            state[OP_NEXT + previous] = p
        if following == NONE:
            state[MACHINE_TAIL + machine] = p
        else:
            state[OP_PREVIOUS + following] = p
    record_op(inst, state, job, start, end, J, M, O)
    bound = max(state[ST_LOWER_BOUND], state[ST_MAKESPAN])
    for j in range(J):  # only the dispatched job and those waiting for `machine` can change
        if j == job:
            bound = max(bound, _refresh(state, j, placement, J, M, O))
        elif state[MACHINE + j] == machine:
            est = state[EST + j]
            if placement == PLACEMENT_APPEND:
                bound = max(bound, _refresh(state, j, placement, J, M, O))
            elif end > est and est + state[DURATION + j] > start:
                # ACTIVE: a waiting job keeps its earliest start unless the new op p blocks it
                # (new ops only remove free time); then no start before p's end can fit, so
                # search from p onwards instead of from the machine's last op.
                state[EST + j] = _first_fit_after(state, p, end, state[READY + j], state[DURATION + j], J, M, O)
                bound = max(bound, state[EST + j] + state[REMAINING + j])
    state[ST_LOWER_BOUND] = bound
    return start


@_kernel
def observe(inst, state, action_set, mask, features, J, M, O):
    """Write the action mask (int8, length J) and the ``(J, N_FEATURES)`` float32 features of
    one shop; return how many actions are allowed. Padded jobs stay all zero.

    Mask: every unfinished job (ANY); the jobs that can start at the earliest possible start
    (NON_DELAY); or Giffler-Thompson: take the job whose next op completes first (time C,
    machine m; ties to the lowest index), allow the jobs whose next op is on m and can start
    before C. Features: times relative to ``now`` (the earliest possible start) divided by the
    instance's time scale; see ``JobShopEnv`` for each column."""
    N_OPS = instance_offsets(J, O)[2]
    (NEXT_OP, MACHINE, DURATION, READY, EST, REMAINING, MACHINE_END, _HEAD, _TAIL, MACHINE_REMAINING,
     MACHINE_WAITING) = state_offsets(J, M, O)[:11]  # fmt: skip
    now = NONE
    best = NONE  # Giffler-Thompson: job whose next op completes first
    best_completion = 0
    for j in range(J):
        if state[MACHINE + j] == NONE:
            continue
        est = state[EST + j]
        if now == NONE or est < now:
            now = est
        if best == NONE or est + state[DURATION + j] < best_completion:
            best, best_completion = j, est + state[DURATION + j]
    if now == NONE:
        now = state[ST_MAKESPAN]
    best_machine = state[MACHINE + best] if best != NONE else NONE
    per_time = np.float32(1.0) / np.float32(inst[IN_TIME_SCALE])
    per_duration = np.float32(1.0) / np.float32(inst[IN_DUR_SCALE])
    per_op = np.float32(1.0) / np.float32(O)
    per_job = np.float32(1.0) / np.float32(max(inst[IN_N_JOBS], 1))
    count = 0
    for j in range(J):
        machine = state[MACHINE + j]
        if machine == NONE:  # finished (or padding: no operations at all)
            mask[j] = 0
            for c in range(N_FEATURES - 1):
                features[j, c] = 0.0
            features[j, 9] = 1.0 if inst[N_OPS + j] > 0 else 0.0
            continue
        est = state[EST + j]
        if action_set == ACTIONS_ANY:
            allowed = True
        elif action_set == ACTIONS_NON_DELAY:
            allowed = est == now
        else:
            allowed = machine == best_machine and (est < best_completion or j == best)
        mask[j] = allowed
        count += allowed
        features[j, 0] = allowed
        features[j, 1] = state[DURATION + j] * per_duration
        features[j, 2] = state[REMAINING + j] * per_time
        features[j, 3] = (inst[N_OPS + j] - state[NEXT_OP + j]) * per_op
        features[j, 4] = min((est - now) * per_time, FEATURE_LIMIT)
        features[j, 5] = max(min((state[READY + j] - now) * per_time, FEATURE_LIMIT), -FEATURE_LIMIT)
        features[j, 6] = state[MACHINE_REMAINING + machine] * per_time
        features[j, 7] = max(min((state[MACHINE_END + machine] - now) * per_time, FEATURE_LIMIT), -FEATURE_LIMIT)
        features[j, 8] = state[MACHINE_WAITING + machine] * per_job
        features[j, 9] = 0.0
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
    bound_before = state[ST_LOWER_BOUND]
    dispatch(inst, state, action, placement, J, M, O)
    done = state[ST_N_SCHEDULED] == state[ST_N_TOTAL]
    scale = float(inst[IN_TIME_SCALE])
    if reward_mode == REWARD_DENSE:
        reward = (bound_before - state[ST_LOWER_BOUND]) / scale
    else:
        reward = -state[ST_MAKESPAN] / scale if done else 0.0
    observe(inst, state, action_set, mask, features, J, M, O)
    return reward, done, invalid


@_kernel
def reset_and_observe(inst, state, placement, action_set, mask, features, J, M, O):
    reset_shop(inst, state, placement, J, M, O)
    observe(inst, state, action_set, mask, features, J, M, O)


@_kernel
def choose_by_rule(inst, state, mask, rule, uniform, J, M, O):
    """The allowed job a dispatching rule picks (ties to the lowest job index); NONE if no job
    is allowed. ``uniform`` in [0, 1) drives RULE_RANDOM and is drawn by the caller."""
    N_OPS, _RELEASE, DUE = instance_offsets(J, O)[2:5]
    NEXT_OP, _MACHINE, DURATION, READY, _EST, REMAINING = state_offsets(J, M, O)[:6]
    best = NONE
    best_key = 0
    count = 0
    for j in range(J):
        if mask[j] == 0:
            continue
        count += 1
        if rule == RULE_SPT:
            key = state[DURATION + j]
        elif rule == RULE_LPT:
            key = -state[DURATION + j]
        elif rule == RULE_MWKR:
            key = -state[REMAINING + j]
        elif rule == RULE_LWKR:
            key = state[REMAINING + j]
        elif rule == RULE_MOPNR:
            key = state[NEXT_OP + j] - inst[N_OPS + j]
        elif rule == RULE_FIFO:
            key = state[READY + j]
        elif rule == RULE_EDD:
            key = inst[DUE + j]
        else:
            key = 0
        if best == NONE or key < best_key:
            best, best_key = j, key
    if rule == RULE_RANDOM and count > 0:
        target = int(uniform * count)
        for j in range(J):
            if mask[j] != 0:
                if target == 0:
                    return j
                target -= 1
    return best


@_parallel_kernel
def rollout_rules(insts, states, rules, uniforms, placement, action_set, masks, features, J, M, O):
    """Run whole episodes in N shops at once, shop i dispatching by ``rules[i]`` (random draws
    from ``uniforms[i]``, one per decision). The schedules stay in ``states``."""
    for i in prange(states.shape[0]):
        reset_and_observe(insts[i], states[i], placement, action_set, masks[i], features[i], J, M, O)
        step = 0
        while states[i, ST_N_SCHEDULED] < states[i, ST_N_TOTAL]:
            job = choose_by_rule(insts[i], states[i], masks[i], rules[i], uniforms[i, step], J, M, O)
            step_shop(insts[i], states[i], job, placement, action_set, REWARD_SPARSE, masks[i], features[i], J, M, O)
            step += 1


# ---- dynamic shop --------------------------------------------------------------------
# The dynamic simulator runs in time: decisions happen at ``now``, only jobs that can start
# at ``now`` are allowed (arrived, previous op done, machine idle and up), and when none can,
# time jumps to the next event (an op ends, a job arrives, a machine is repaired). Jobs arrive
# at their release dates; ops take their *real* durations (the features show planned ones);
# downtimes interrupt running ops (resume: continue after the repair; restart: the work is
# lost and the op starts over later). Rows extend the static ones: the instance row gains
# real durations, weights and per-machine downtime windows; the state row gains the clock.
INTERRUPT_RESUME = 0
INTERRUPT_RESTART = 1
OBJECTIVE_MAKESPAN = 0
OBJECTIVE_TARDINESS = 1  # total weighted tardiness
OBJECTIVE_FLOW = 2  # mean flow time
N_DYNAMIC_FEATURES = 12
FOREVER = 2**62


@_kernel
def dynamic_instance_row_length(J: int, M: int, O: int, D: int) -> int:  # noqa: E741
    return instance_row_length(J, M, O) + J * O + J + (M + 1) + 3 * D


@_kernel
def dynamic_state_row_length(J: int, M: int, O: int) -> int:  # noqa: E741
    return state_row_length(J, M, O) + 5 + 2 * J + M


@_kernel
def dynamic_instance_offsets(J, M, O, D):
    """After the static fields: real op durations, job weights, the first window of each
    machine (M+1 prefix offsets), then window starts, ends and kinds (D rows, per machine by start)."""
    op_real = IN_HEADER + 2 * J * O + 3 * J
    job_weight = op_real + J * O
    window_first = job_weight + J
    window_start = window_first + M + 1
    window_end = window_start + D
    window_kind = window_end + D
    return op_real, job_weight, window_first, window_start, window_end, window_kind


@_kernel
def dynamic_state_offsets(J, M, O):
    """After the static fields: the clock, work lost to restarts, the integrals accrued since
    the last reward (time, jobs-in-system time, weighted tardy time), and what a planner
    expects: when each job and machine will be free (start + planned duration), and when each
    job's latest operation started (so a snapshot can show it as running)."""
    now = state_row_length(J, M, O)
    wasted = now + 1
    carry_time = now + 2
    carry_flow = now + 3
    carry_tardiness = now + 4
    job_expected_free = now + 5
    machine_expected_free = job_expected_free + J
    job_started = machine_expected_free + M
    return now, wasted, carry_time, carry_flow, carry_tardiness, job_expected_free, machine_expected_free, job_started


@_kernel
def window_at(inst, machine, t, J, M, O, D):
    """The downtime window of ``machine`` that contains time ``t``, or NONE."""
    _REAL, _W, FIRST, START, END, _KIND = dynamic_instance_offsets(J, M, O, D)
    for w in range(inst[FIRST + machine], inst[FIRST + machine + 1]):
        if inst[START + w] > t:
            break
        if t < inst[END + w]:
            return w
    return NONE


@_kernel
def execution_end(inst, machine, start, work, interruption, J, M, O, D):
    """When an op needing ``work`` time units, started at ``start`` on an up machine, ends;
    and whether a downtime aborted it (restart: the end is then the abort time)."""
    _REAL, _W, FIRST, START, END, _KIND = dynamic_instance_offsets(J, M, O, D)
    t = start
    remaining = work
    for w in range(inst[FIRST + machine], inst[FIRST + machine + 1]):
        a, b = inst[START + w], inst[END + w]
        if b <= t:
            continue
        if a >= t + remaining:
            break
        if interruption == INTERRUPT_RESTART:
            return a, True
        remaining -= a - t
        t = b
    return t + remaining, False


@_kernel
def dynamic_startable(inst, state, job, J, M, O, D):
    """Can ``job``'s next op start now: arrived, previous op done, machine idle and up?"""
    RELEASE = instance_offsets(J, O)[3]
    _NEXT, MACHINE, _DUR, READY, _EST, _REM, MACHINE_END = state_offsets(J, M, O)[:7]
    NOW = dynamic_state_offsets(J, M, O)[0]
    machine = state[MACHINE + job]
    now = state[NOW]
    if machine == NONE or inst[RELEASE + job] > now or state[READY + job] > now:
        return False
    return state[MACHINE_END + machine] <= now and window_at(inst, machine, now, J, M, O, D) == NONE


@_kernel
def dynamic_accrue(inst, state, t1, J, M, O, D):
    """Advance the clock to ``t1``, adding [now, t1) to the time, flow and tardiness integrals."""
    N_OPS, RELEASE, DUE = instance_offsets(J, O)[2:5]
    WEIGHT = dynamic_instance_offsets(J, M, O, D)[1]
    MACHINE, _DUR, READY = state_offsets(J, M, O)[1:4]
    NOW, _WASTED, CARRY_TIME, CARRY_FLOW, CARRY_TARDINESS = dynamic_state_offsets(J, M, O)[:5]
    t0 = state[NOW]
    if t1 <= t0:
        return
    flow = 0
    tardiness = 0
    for j in range(J):
        if inst[N_OPS + j] == 0:
            continue
        completion = state[READY + j] if state[MACHINE + j] == NONE else FOREVER
        lo = max(t0, inst[RELEASE + j])
        hi = min(t1, completion)
        if hi > lo:
            flow += hi - lo
            late_from = max(lo, inst[DUE + j])
            if hi > late_from:
                tardiness += inst[WEIGHT + j] * (hi - late_from)
    state[CARRY_TIME] += t1 - t0
    state[CARRY_FLOW] += flow
    state[CARRY_TARDINESS] += tardiness
    state[NOW] = t1


@_kernel
def dynamic_next_event(inst, state, J, M, O, D):
    """The first time after now when something can change: an arrival, a job's op ending,
    a machine's op ending, or a repair."""
    RELEASE = instance_offsets(J, O)[3]
    _NEXT, MACHINE, _DUR, READY, _EST, _REM, MACHINE_END = state_offsets(J, M, O)[:7]
    END = dynamic_instance_offsets(J, M, O, D)[4]
    NOW = dynamic_state_offsets(J, M, O)[0]
    now = state[NOW]
    t = FOREVER
    for j in range(J):
        if state[MACHINE + j] != NONE:
            if inst[RELEASE + j] > now:
                t = min(t, inst[RELEASE + j])
            elif state[READY + j] > now:
                t = min(t, state[READY + j])
    for m in range(M):
        if state[MACHINE_END + m] > now:
            t = min(t, state[MACHINE_END + m])
        w = window_at(inst, m, now, J, M, O, D)
        if w != NONE:
            t = min(t, inst[END + w])
    return t


@_kernel
def dynamic_settle(inst, state, mask, J, M, O, D):
    """Move the clock forward until some job can start now (return how many), or until every
    op has run (then to the last completion; return 0). Return -1 if nothing can ever start."""
    NOW = dynamic_state_offsets(J, M, O)[0]
    while True:
        if state[ST_N_SCHEDULED] == state[ST_N_TOTAL]:
            dynamic_accrue(inst, state, max(state[NOW], state[ST_MAKESPAN]), J, M, O, D)
            mask[:] = 0
            return 0
        count = 0
        for j in range(J):
            allowed = dynamic_startable(inst, state, j, J, M, O, D)
            mask[j] = allowed
            count += allowed
        if count > 0:
            return count
        t = dynamic_next_event(inst, state, J, M, O, D)
        if t >= FOREVER:
            return -1
        dynamic_accrue(inst, state, t, J, M, O, D)


@_kernel
def dynamic_start(inst, state, job, interruption, J, M, O, D):
    """Start ``job``'s next op now on its machine; it runs for its real duration, around (resume)
    or cut short by (restart) the machine's downtimes."""
    NEXT_OP, MACHINE, DURATION, READY, _EST, _REM, MACHINE_END = state_offsets(J, M, O)[:7]
    REAL = dynamic_instance_offsets(J, M, O, D)[0]
    NOW, WASTED, _CT, _CF, _CTARD, JOB_EXPECTED, MACHINE_EXPECTED, JOB_STARTED = dynamic_state_offsets(J, M, O)
    now = state[NOW]
    machine = state[MACHINE + job]
    expected = now + state[DURATION + job]
    state[JOB_STARTED + job] = now
    end, aborted = execution_end(
        inst, machine, now, inst[REAL + job * O + state[NEXT_OP + job]], interruption, J, M, O, D
    )
    if aborted:  # restart: the op stays next; the job and machine are tied up until the failure
        state[MACHINE_END + machine] = max(state[MACHINE_END + machine], end)
        state[READY + job] = end
        state[WASTED] += end - now
    else:
        record_op(inst, state, job, now, end, J, M, O)
    state[JOB_EXPECTED + job] = expected
    state[MACHINE_EXPECTED + machine] = expected


@_kernel
def dynamic_reward(inst, state, objective, J, M, O):
    """The reward for the integrals accrued since the last one (then cleared): minus elapsed
    time (makespan), minus jobs-in-system time / n_jobs (mean flow time) or minus weighted
    tardy time / n_jobs (total weighted tardiness), all divided by the time scale."""
    _NOW, _W, CARRY_TIME, CARRY_FLOW, CARRY_TARDINESS = dynamic_state_offsets(J, M, O)[:5]
    scale = float(inst[IN_TIME_SCALE])
    n_jobs = float(max(inst[IN_N_JOBS], 1))
    if objective == OBJECTIVE_MAKESPAN:
        reward = -state[CARRY_TIME] / scale
    elif objective == OBJECTIVE_FLOW:
        reward = -state[CARRY_FLOW] / (scale * n_jobs)
    else:
        reward = -state[CARRY_TARDINESS] / (scale * n_jobs)
    state[CARRY_TIME] = 0
    state[CARRY_FLOW] = 0
    state[CARRY_TARDINESS] = 0
    return reward


@_kernel
def dynamic_observe(inst, state, mask, features, J, M, O, D):
    """Write the ``(J, N_DYNAMIC_FEATURES)`` features from what a planner knows now: jobs that
    have arrived, planned (not real) durations, machines down now and until when (a breakdown
    is revealed when it starts), expected free times. Other rows stay zero."""
    OP_MACHINE, OP_DURATION, N_OPS, RELEASE, DUE = instance_offsets(J, O)
    _REAL, WEIGHT, _FIRST, _START, END, _KIND = dynamic_instance_offsets(J, M, O, D)
    NEXT_OP, MACHINE, DURATION, _READY, _EST, REMAINING = state_offsets(J, M, O)[:6]
    NOW, _W, _CT, _CF, _CTARD, JOB_EXPECTED, MACHINE_EXPECTED = dynamic_state_offsets(J, M, O)[:7]
    now = state[NOW]
    per_time = 1.0 / inst[IN_TIME_SCALE]
    max_weight = 1
    load = np.zeros(M, dtype=np.int64)  # planned work left on each machine, jobs arrived so far
    for j in range(J):
        if state[MACHINE + j] != NONE and inst[RELEASE + j] <= now:
            max_weight = max(max_weight, inst[WEIGHT + j])
            for k in range(state[NEXT_OP + j], inst[N_OPS + j]):
                load[inst[OP_MACHINE + j * O + k]] += inst[OP_DURATION + j * O + k]
    for j in range(J):
        machine = state[MACHINE + j]
        for c in range(N_DYNAMIC_FEATURES):
            features[j, c] = 0.0
        if machine == NONE or inst[RELEASE + j] > now:
            continue
        window = window_at(inst, machine, now, J, M, O, D)
        features[j, 0] = mask[j]
        features[j, 1] = state[DURATION + j] / inst[IN_DUR_SCALE]
        features[j, 2] = state[REMAINING + j] * per_time
        features[j, 3] = (inst[N_OPS + j] - state[NEXT_OP + j]) / O
        features[j, 4] = max(0, state[JOB_EXPECTED + j] - now) * per_time
        features[j, 5] = max(0, state[MACHINE_EXPECTED + machine] - now) * per_time
        features[j, 6] = 1.0 if window != NONE else 0.0
        features[j, 7] = (inst[END + window] - now) * per_time if window != NONE else 0.0
        features[j, 8] = load[machine] * per_time
        slack = (inst[DUE + j] - now - state[REMAINING + j]) * per_time
        features[j, 9] = max(min(slack, FEATURE_LIMIT), -FEATURE_LIMIT)
        features[j, 10] = inst[WEIGHT + j] / max_weight
        features[j, 11] = min((now - inst[RELEASE + j]) * per_time, FEATURE_LIMIT)


@_kernel
def dynamic_reset_and_observe(inst, state, mask, features, J, M, O, D):
    """Empty shop at time 0, then run the clock to the first decision. Returns as settle does."""
    reset_shop(inst, state, PLACEMENT_APPEND, J, M, O)
    base = state_row_length(J, M, O)
    state[base:] = 0
    RELEASE = instance_offsets(J, O)[3]
    JOB_EXPECTED = dynamic_state_offsets(J, M, O)[5]
    JOB_STARTED = dynamic_state_offsets(J, M, O)[7]
    for j in range(J):
        state[JOB_EXPECTED + j] = inst[RELEASE + j]
        state[JOB_STARTED + j] = NONE
    count = dynamic_settle(inst, state, mask, J, M, O, D)
    dynamic_observe(inst, state, mask, features, J, M, O, D)
    return count


@_kernel
def dynamic_step_shop(inst, state, action, interruption, objective, mask, features, J, M, O, D):
    """One decision in a dynamic shop: start ``action``'s next op now (an action outside the
    mask becomes the lowest allowed job), then run the clock to the next decision.
    Returns (reward, done, invalid, stuck)."""
    action, invalid = checked_action(mask, action, J)
    if action == NONE:
        return 0.0, True, True, False
    dynamic_start(inst, state, action, interruption, J, M, O, D)
    count = dynamic_settle(inst, state, mask, J, M, O, D)
    reward = dynamic_reward(inst, state, objective, J, M, O)
    dynamic_observe(inst, state, mask, features, J, M, O, D)
    return reward, count == 0, invalid, count < 0


@_kernel
def dynamic_choose(inst, state, mask, rule, uniform, J, M, O, D):
    """The allowed job a rule picks in a dynamic shop: the static rules on planned data, or
    ATC: the largest (w / p) * exp(-max(0, due - now - work left) / (ATC_K * mean p)), with p
    the next operation's planned duration (ties to the lowest job index)."""
    if rule != RULE_ATC:
        return choose_by_rule(inst, state, mask, rule, uniform, J, M, O)
    DUE = instance_offsets(J, O)[4]
    WEIGHT = dynamic_instance_offsets(J, M, O, D)[1]
    _NEXT, _MACHINE, DURATION, _READY, _EST, REMAINING = state_offsets(J, M, O)[:6]
    now = state[dynamic_state_offsets(J, M, O)[0]]
    total = 0.0
    count = 0
    for j in range(J):
        if mask[j] != 0:
            total += max(state[DURATION + j], 1)
            count += 1
    if count == 0:
        return NONE
    mean = total / count
    best = NONE
    best_index = 0.0
    for j in range(J):
        if mask[j] == 0:
            continue
        p = max(state[DURATION + j], 1)
        slack = max(0, inst[DUE + j] - now - state[REMAINING + j])
        index = inst[WEIGHT + j] / p * np.exp(-slack / (ATC_K * mean))
        if best == NONE or index > best_index:
            best, best_index = j, index
    return best


@_parallel_kernel
def rollout_dynamic_rules(insts, states, rules, uniforms, interruptions, objective, masks, features, J, M, O, D):
    """Whole dynamic episodes in N shops at once, shop i dispatching by ``rules[i]`` (random
    draws from ``uniforms[i]``). Returns each shop's summed reward; schedules stay in ``states``."""
    returns = np.zeros(states.shape[0])
    for i in prange(states.shape[0]):
        count = dynamic_reset_and_observe(insts[i], states[i], masks[i], features[i], J, M, O, D)
        total = dynamic_reward(insts[i], states[i], objective, J, M, O)
        step = 0
        while count > 0:
            job = dynamic_choose(
                insts[i], states[i], masks[i], rules[i], uniforms[i, step % uniforms.shape[1]], J, M, O, D
            )
            reward, done, _invalid, stuck = dynamic_step_shop(
                insts[i], states[i], job, interruptions[i], objective, masks[i], features[i], J, M, O, D
            )
            total += reward
            step += 1
            count = 0 if done or stuck else 1
        returns[i] = total
    return returns


# ---- batches -------------------------------------------------------------------------
@_parallel_kernel
def reset_batch(insts, states, indices, placement, action_set, masks, features, J, M, O):
    """Reset the shops listed in ``indices`` (rows of the batch) and observe them."""
    for n in prange(indices.shape[0]):
        i = indices[n]
        reset_and_observe(insts[i], states[i], placement, action_set, masks[i], features[i], J, M, O)


@_parallel_kernel
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
            final_masks[i, :] = masks[i]
            final_features[i, :, :] = features[i]
            final_states[i, :] = states[i]
            reset_and_observe(insts[i], states[i], placement, action_set, masks[i], features[i], J, M, O)


@_parallel_kernel
def dynamic_reset_batch(insts, states, indices, masks, features, counts, J, M, O, D):
    """Reset the dynamic shops listed in ``indices``; ``counts`` gets their allowed-job counts."""
    for n in prange(indices.shape[0]):
        i = indices[n]
        counts[i] = dynamic_reset_and_observe(insts[i], states[i], masks[i], features[i], J, M, O, D)


@_parallel_kernel
def dynamic_step_batch(
    insts, states, actions, interruptions, objective, autoreset,
    masks, features, rewards, dones, invalids, stuck, final_masks, final_features, final_states, J, M, O, D,
):  # fmt: skip
    """One decision in each of N dynamic shops; finished shops keep their last observation and
    state in ``final_*`` and restart on the same scenario row (with ``autoreset``)."""
    for i in prange(states.shape[0]):
        reward, done, invalid, blocked = dynamic_step_shop(
            insts[i], states[i], actions[i], interruptions[i], objective, masks[i], features[i], J, M, O, D
        )
        rewards[i] = reward
        dones[i] = done
        invalids[i] = invalid
        stuck[i] = blocked
        if done and autoreset:
            final_masks[i, :] = masks[i]
            final_features[i, :, :] = features[i]
            final_states[i, :] = states[i]
            dynamic_reset_and_observe(insts[i], states[i], masks[i], features[i], J, M, O, D)


@_kernel
def sample_valid_actions(masks, uniforms, actions):
    """Uniformly random allowed job per shop from caller-drawn uniforms in [0, 1); -1 if none."""
    for i in range(masks.shape[0]):
        count = 0
        for j in range(masks.shape[1]):
            count += masks[i, j] != 0
        actions[i] = NONE
        if count == 0:
            continue
        target = int(uniforms[i] * count)
        for j in range(masks.shape[1]):
            if masks[i, j] != 0:
                if target == 0:
                    actions[i] = j
                    break
                target -= 1


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel on a tiny shop.

    Latency-critical users (the latency harness, the service) call this at start-up so the
    first real decision does not pay the compilation."""
    J, M, O = 2, 2, 2
    insts = np.zeros((1, instance_row_length(J, M, O)), dtype=np.int64)
    inst = insts[0]
    inst[IN_N_JOBS], inst[IN_N_MACHINES], inst[IN_TIME_SCALE], inst[IN_DUR_SCALE] = 2, 2, 2, 1
    OP_MACHINE, OP_DURATION, N_OPS, _RELEASE, _DUE = instance_offsets(J, O)
    inst[OP_MACHINE : OP_MACHINE + 4] = [0, 1, 1, 0]
    inst[OP_DURATION : OP_DURATION + 4] = 1
    inst[N_OPS : N_OPS + 2] = 2
    states = np.zeros((1, state_row_length(J, M, O)), dtype=np.int64)
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
    choose_by_rule(inst, states[0], masks[0], RULE_MWKR, 0.0, J, M, O)
    # the dynamic shop: same tiny jobs, one downtime on machine 0
    D = 1
    row = np.zeros(dynamic_instance_row_length(J, M, O, D), dtype=np.int64)
    row[: inst.shape[0]] = inst
    REAL, _WEIGHT, FIRST, START, END, _KIND = dynamic_instance_offsets(J, M, O, D)
    row[REAL : REAL + 4] = 1
    row[FIRST : FIRST + 3] = [0, 1, 1]
    row[START], row[END] = 1, 2
    state = np.zeros(dynamic_state_row_length(J, M, O), dtype=np.int64)
    dynamic_features = np.zeros((J, N_DYNAMIC_FEATURES), dtype=np.float32)
    for interruption in (INTERRUPT_RESUME, INTERRUPT_RESTART):
        dynamic_reset_and_observe(row, state, masks[0], dynamic_features, J, M, O, D)
        dynamic_step_shop(row, state, 0, interruption, OBJECTIVE_TARDINESS, masks[0], dynamic_features, J, M, O, D)
    rows, states = row[None, :].copy(), state[None, :].copy()
    counts = np.zeros(1, dtype=np.int64)
    dyn_features = dynamic_features[None, :, :].copy()
    dynamic_reset_batch(rows, states, np.zeros(1, dtype=np.int64), masks, dyn_features, counts, J, M, O, D)
    dynamic_step_batch(
        rows, states, actions, np.zeros(1, dtype=np.int64), OBJECTIVE_TARDINESS, True, masks, dyn_features,
        rewards, flags, flags.copy(), flags.copy(), masks.copy(), dyn_features.copy(), states.copy(), J, M, O, D,
    )  # fmt: skip
    rollout_dynamic_rules(
        rows, states, np.full(1, RULE_ATC), np.zeros((1, 8)), np.zeros(1, dtype=np.int64), OBJECTIVE_TARDINESS,
        masks, dyn_features, J, M, O, D,
    )  # fmt: skip
