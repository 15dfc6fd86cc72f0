"""Compiled kernels of the tabu search (:mod:`baselines.tabu`); their plain-Python twins are in
``tests/reference_tabu.py``.

A solution is one processing order per machine (``seq[m, :count[m]]``, ``pos[o]`` the place of
operation ``o`` in its machine's order); operations are numbered job by job. Decoding places each
operation at its earliest time given its job predecessor, its machine predecessor, its release and
the machine's blocked intervals (nothing may touch them: a running shop's downtimes and running
work); heads and tails give the O(1) N5 move estimates of Nowicki and Smutnicki for the makespan.

**Flexible shops.** Which machine runs an operation is part of the solution: the machine an
operation sits on (its row of ``seq``) sets ``machine[o]``, ``duration[o]`` (from the problem's
``alt_duration[o, m]``, -1 where ``m`` cannot run it) and each machine's ``count``. Besides the
swaps, a *reassignment* moves a critical operation to another eligible machine at its best place
there (Mastrolilli and Gambardella's neighbourhood): the places whose neighbours can neither follow
its job successor nor precede its job predecessor (no cycle), judged by the longest path through
the operation from the current heads and tails. A classic shop is the flexible one with one
alternative per operation, and searches exactly as before.
Every kernel is ``nogil``, so two searches run on two cores from two threads.

**State by name.** A search is four groups of arrays, each a namedtuple whose fields say what
they hold: :class:`Problem` (what the shop is), :class:`Solution` (where the search is),
:class:`Workspace` (scratch arrays) and the ``params`` row; the scalar slots of the ``counters``
and ``params`` rows are named by the index tables :data:`C` and :data:`P` (``counters[C.best]``).
Nothing refers to a field by position.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from baselines._timing import earliest_clear
from sched_env.jit import index_table, kernel

MAKESPAN, WEIGHTED_TARDINESS, FLOW = 0, 1, 2
#: What fixed an operation's start in the decoder: nothing (its release, a blocked interval or
#: time 0), its job predecessor, or its machine predecessor.
NO_BIND, JOB_BIND, MACHINE_BIND = 0, 1, 2
INF = np.int64(2**62)
#: ``moves[i, 2]`` of a swap of two adjacent operations; a reassignment holds its new machine there.
SWAP = -1
RING = 128  # solution fingerprints kept for cycle detection
ASSIGNED = 1 << 40  # the fingerprint of "operation o is on machine m" is pair_hash(o, ASSIGNED + m)

#: The shop as the kernels see it (operations numbered job by job; per machine its blocked
#: intervals, sorted and disjoint: ``blocked_start[m, :n_blocked[m]]``).
Problem = namedtuple(
    "Problem",
    "job_pred job_succ release job_of job_last due weight job_release blocked_start blocked_end n_blocked"
    " alt_duration alt_machine n_alt",
)
#: Where a search is: the machine orders (rows padded with -1) and places, each operation's machine
#: and duration and each machine's operation count, its counters and random state, the tabu list
#: (rows ``(a, b, until)``), the best and this run's best orders, the elite set and the ring of
#: recent solution fingerprints.
Solution = namedtuple(
    "Solution",
    "seq pos machine duration count counters rng tabu best_seq run_best_seq elite_seq elite_value elite_hash ring",
)
#: Scratch: decoded times and binding, topological order and its stack, tails, the critical path,
#: candidate moves (rows ``(u, v, SWAP, 0)``: swap u and v; ``(o, -1, machine, place)``: reassign o)
#: and their values, visit marks, and a second decode for exact move evaluation.
Workspace = namedtuple(
    "Workspace",
    "start end bind order stack tail path moves values mark trial_start trial_end trial_bind trial_order",
)
#: Counter slots of a search (``counters[C.best]``).
COUNTER_FIELDS = (
    "moves",  # moves made
    "stall",  # moves since this run's best improved
    "restarts",
    "improvements",  # times the best so far improved
    "current",  # the current solution's objective
    "best",  # the best objective so far
    "run_best",  # this run's best (since the last restart)
    "ring_n",  # fingerprints recorded in the ring
    "elite_n",  # elite solutions kept
    "cycles",  # cycles detected
    "done",  # 1 once the current plan is proven optimal
    "evaluations",  # moves evaluated exactly (by decoding)
    "hash",  # the current solution's fingerprint
    "run_hash",  # the fingerprint of this run's best
    "stamp",  # visit stamp for ``Workspace.mark``
    "run_cycles",  # cycles detected in this run
    "tabu_at",  # tabu list entries written (the next one overwrites the oldest)
)
C = index_table("Counter", COUNTER_FIELDS)
#: Parameter slots of a search (``params[P.kind]``).
PARAM_FIELDS = (
    "kind",  # MAKESPAN, WEIGHTED_TARDINESS or FLOW
    "exact",  # 1: evaluate moves by decoding (running shops); 0: N5 with estimates
    "tenure_min",  # a reversed arc is tabu for tenure_min + [0, tenure_span] moves
    "tenure_span",
    "stall_limit",  # moves without a better run best before a restart
    "perturb_min",  # a restart kicks perturb_min + [0, perturb_span] random swaps
    "perturb_span",
    "cap",  # moves evaluated exactly per step
    "cycle_limit",  # cycles in a run before a restart
    "flexible",  # 1: operations have alternative machines (reassignment moves join the swaps)
    "lower_bound",  # a static makespan search stops at this proven bound (0: none known)
)
P = index_table("Param", PARAM_FIELDS)


# ---------------------------------------------------------------------- random numbers
@kernel
def next_random(rng: np.ndarray) -> np.uint64:
    """xorshift64*: the search's own generator, its state in ``rng[0]`` (repeatable across chunks)."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return x * np.uint64(2685821657736338717)


@kernel
def random_below(rng: np.ndarray, n: int) -> int:
    """A number in [0, n) (n >= 1)."""
    return np.int64(next_random(rng) >> np.uint64(33)) % n


@kernel
def pair_hash(a: int, b: int) -> np.int64:
    """A fingerprint of the machine arc a -> b (solution hashes XOR their arcs')."""
    x = np.uint64(a) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(b) * np.uint64(0xC2B2AE3D27D4EB4F)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return np.int64(x >> np.uint64(1))


# ---------------------------------------------------------------------- decoding
@kernel
def earliest_free(ready: int, duration: int, m: int, bstart: np.ndarray, bend: np.ndarray, nb: np.ndarray) -> int:
    """First t >= ready where the operation fits among machine m's blocked intervals: the one rule
    of :func:`baselines._timing.earliest_clear`."""
    return earliest_clear(ready, duration, bstart, bend, m, nb[m])


@kernel
def decode(dur, mach, jpred, jsucc, rel, seq, count, pos, bstart, bend, nb, start, end, bind, order, stack) -> int:
    """Earliest start of every operation for these machine orders (Kahn's topological order);
    ``bind[o]`` says which predecessor fixed it, ``order`` receives the topological order.
    Returns how many operations were placed: fewer than all means the orders hold a cycle."""
    n = len(dur)
    indeg = stack[n:]
    top = 0
    for o in range(n):
        indeg[o] = (jpred[o] >= 0) + (pos[o] > 0)
        if indeg[o] == 0:
            stack[top] = o
            top += 1
    placed = 0
    while top > 0:
        top -= 1
        o = stack[top]
        order[placed] = o
        placed += 1
        m, p, jp = mach[o], pos[o], jpred[o]
        job_ready = end[jp] if jp >= 0 else -1
        machine_ready = end[seq[m, p - 1]] if p > 0 else -1
        s = earliest_free(max(rel[o], job_ready, machine_ready), dur[o], m, bstart, bend, nb)
        start[o], end[o] = s, s + dur[o]
        bind[o] = MACHINE_BIND if s == machine_ready else (JOB_BIND if s == job_ready else NO_BIND)
        js = jsucc[o]
        if js >= 0:
            indeg[js] -= 1
            if indeg[js] == 0:
                stack[top] = js
                top += 1
        if p + 1 < count[m]:
            ms = seq[m, p + 1]
            indeg[ms] -= 1
            if indeg[ms] == 0:
                stack[top] = ms
                top += 1
    return placed


@kernel
def tails(dur, mach, jsucc, seq, count, pos, order, tail) -> None:
    """Longest path from the end of each operation to the end of the schedule (its tail)."""
    for i in range(len(order) - 1, -1, -1):
        o = order[i]
        t = 0
        js = jsucc[o]
        if js >= 0:
            t = tail[js] + dur[js]
        m, p = mach[o], pos[o]
        if p + 1 < count[m]:
            ms = seq[m, p + 1]
            t = max(t, tail[ms] + dur[ms])
        tail[o] = t


@kernel
def objective_of(kind: int, end, job_last, due, weight, job_rel) -> int:
    """The makespan, total weighted tardiness or total flow time of decoded end times."""
    total = 0
    for j in range(len(job_last)):
        c = end[job_last[j]]
        if kind == MAKESPAN:
            total = max(total, c)
        elif kind == WEIGHTED_TARDINESS:
            total += weight[j] * max(0, c - due[j])
        else:
            total += c - job_rel[j]
    return total


# ---------------------------------------------------------------------- neighbourhoods
@kernel
def latest_job(end, job_last) -> int:
    """The first job whose last operation ends latest (where the critical path ends)."""
    latest = 0
    for j in range(1, len(job_last)):
        if end[job_last[j]] > end[job_last[latest]]:
            latest = j
    return latest


@kernel
def critical_path(end, bind, jpred, mach, seq, pos, last: int, path) -> int:
    """The longest path ending at operation ``last``, first operation first; returns its length."""
    length = 0
    o = last
    while o >= 0:
        path[length] = o
        length += 1
        if bind[o] == MACHINE_BIND:
            o = seq[mach[o], pos[o] - 1]
        elif bind[o] == JOB_BIND:
            o = jpred[o]
        else:
            o = -1
    for i in range(length // 2):  # first operation first
        path[i], path[length - 1 - i] = path[length - 1 - i], path[i]
    return length


@kernel
def n5_moves(path, length: int, bind, job_of, moves) -> int:
    """N5 moves on a critical path (pairs of adjacent operations to swap, as ``moves[i] = (u, v)``):
    in every block the first two and the last two, except the first two of the first block and
    the last two of the last block. Returns the move count; -1 when N5 is empty, which proves
    the schedule optimal (its makespan is one machine's or one job's work)."""
    n_blocks = 0
    for i in range(length):
        if i == 0 or bind[path[i]] != MACHINE_BIND:
            n_blocks += 1
    found, empty, block, i = 0, True, 0, 0
    while i < length:
        j = i
        while j + 1 < length and bind[path[j + 1]] == MACHINE_BIND:
            j += 1
        if j > i:
            first_ok, last_ok = block > 0, block < n_blocks - 1
            for side in range(2):  # the first two, then the last two (a block of two has one pair)
                if side == 0 and not (first_ok or j == i + 1 and last_ok) or side == 1 and not (last_ok and j > i + 1):
                    continue
                u_at = i if side == 0 else j - 1
                empty = False
                u, v = path[u_at], path[u_at + 1]
                if job_of[u] != job_of[v]:
                    moves[found, 0], moves[found, 1], moves[found, 2] = u, v, SWAP
                    found += 1
        block += 1
        i = j + 1
    return -1 if empty else found


@kernel
def swap_estimate(u: int, v: int, start, dur, tail, jpred, jsucc, rel, mach, seq, count, pos) -> int:
    """Makespan estimate after swapping u and v (u right before v on one machine): exact for
    the longest paths through u and v (Nowicki and Smutnicki's heads and tails)."""
    m = mach[u]
    pu, pv = jpred[u], jpred[v]
    su, sv = jsucc[u], jsucc[v]
    head_v = max(rel[v], start[pv] + dur[pv] if pv >= 0 else 0)
    if pos[u] > 0:
        a = seq[m, pos[u] - 1]
        head_v = max(head_v, start[a] + dur[a])
    head_u = max(rel[u], start[pu] + dur[pu] if pu >= 0 else 0, head_v + dur[v])
    tail_u = tail[su] + dur[su] if su >= 0 else 0
    if pos[v] + 1 < count[m]:
        b = seq[m, pos[v] + 1]
        tail_u = max(tail_u, tail[b] + dur[b])
    tail_v = max(tail[sv] + dur[sv] if sv >= 0 else 0, tail_u + dur[u])
    return max(head_v + dur[v] + tail_v, head_u + dur[u] + tail_u)


@kernel
def chain_moves(kind, end, bind, jpred, job_of, mach, seq, pos, job_last, due, mark, stamp, moves, rng, cap) -> int:
    """Adjacent machine pairs on the longest paths to the jobs that cost something (the latest job
    for the makespan, tardy jobs for tardiness, every job for flow time): the N1 moves that can
    lower the objective. At most ``cap`` of them, a random subset when there are more."""
    found = 0
    latest = latest_job(end, job_last)
    for j in range(len(job_last)):
        o = job_last[j]
        if kind == MAKESPAN and j != latest or kind == WEIGHTED_TARDINESS and end[o] <= due[j]:
            continue
        while o >= 0 and mark[o] != stamp:
            mark[o] = stamp
            if bind[o] == MACHINE_BIND:
                u = seq[mach[o], pos[o] - 1]
                if job_of[u] != job_of[o]:
                    if found < cap:
                        moves[found, 0], moves[found, 1], moves[found, 2] = u, o, SWAP
                    else:  # reservoir sampling keeps a uniform subset
                        r = random_below(rng, found + 1)
                        if r < cap:
                            moves[r, 0], moves[r, 1], moves[r, 2] = u, o, SWAP
                    found += 1
                o = u
            elif bind[o] == JOB_BIND:
                o = jpred[o]
            else:
                o = -1
    return min(found, cap)


@kernel
def swap(u: int, v: int, mach, seq, pos) -> None:
    """Swap u and v, adjacent on their machine (either order)."""
    m = mach[u]
    pu, pv = pos[u], pos[v]
    seq[m, pu], seq[m, pv] = v, u
    pos[u], pos[v] = pv, pu


# ---------------------------------------------------------------------- solution bookkeeping
@kernel
def copy_orders(target, source) -> None:
    """``target[:] = source`` for machine orders (a plain loop: compiles in a fraction of the time)."""
    for m in range(source.shape[0]):
        for p in range(source.shape[1]):
            target[m, p] = source[m, p]


@kernel
def local_hash(m: int, p: int, seq, count) -> np.int64:
    """XOR of the arcs into, between and out of the operations at places p, p + 1 of machine m."""
    h = pair_hash(seq[m, p], seq[m, p + 1])
    if p > 0:
        h ^= pair_hash(seq[m, p - 1], seq[m, p])
    if p + 2 < count[m]:
        h ^= pair_hash(seq[m, p + 1], seq[m, p + 2])
    return h


@kernel
def solution_hash(seq, count) -> np.int64:
    """The fingerprint of machine orders: their arcs and which machine holds each operation."""
    h = np.int64(0)
    for m in range(len(count)):
        for p in range(count[m]):
            h ^= pair_hash(seq[m, p], ASSIGNED + m)
            if p + 1 < count[m]:
                h ^= pair_hash(seq[m, p], seq[m, p + 1])
    return h


@kernel
def set_assignment(seq, pos, mach, dur, count, alt_duration) -> None:
    """Read each operation's place, machine and duration and each machine's count off the orders
    (rows of ``seq`` end at the first -1)."""
    for m in range(seq.shape[0]):
        p = 0
        while p < seq.shape[1] and seq[m, p] >= 0:
            o = seq[m, p]
            pos[o], mach[o], dur[o] = p, m, alt_duration[o, m]
            p += 1
        count[m] = p


@kernel
def relocate(o: int, k: int, q: int, seq, pos, mach, dur, count, alt_duration) -> None:
    """Take operation o out of its machine's order and put it at place q of machine k's (k is not
    its machine; q counts the places of k's order as it is)."""
    m, p = mach[o], pos[o]
    for i in range(p, count[m] - 1):
        seq[m, i] = seq[m, i + 1]
        pos[seq[m, i]] = i
    seq[m, count[m] - 1] = -1
    count[m] -= 1
    for i in range(count[k], q, -1):
        seq[k, i] = seq[k, i - 1]
        pos[seq[k, i]] = i
    seq[k, q], pos[o], mach[o], dur[o] = o, q, k, alt_duration[o, k]
    count[k] += 1


@kernel
def swap_hashed(u: int, v: int, mach, seq, count, pos, counters) -> None:
    """Swap u and v (u right before v) and update the solution's fingerprint."""
    m, p = mach[u], pos[u]
    counters[C.hash] ^= local_hash(m, p, seq, count)
    swap(u, v, mach, seq, pos)
    counters[C.hash] ^= local_hash(m, p, seq, count)


@kernel
def remember_elite(seq, value: int, h: int, elite_seq, elite_value, elite_hash, counters) -> None:
    """Keep the best distinct solutions seen (the restart points)."""
    n = counters[C.elite_n]
    for e in range(n):
        if elite_hash[e] == h:
            return
    if n < len(elite_value):
        at = n
        counters[C.elite_n] = n + 1
    else:
        at = 0
        for e in range(1, n):
            if elite_value[e] > elite_value[at]:
                at = e
        if elite_value[at] <= value:
            return
    copy_orders(elite_seq[at], seq)
    elite_value[at], elite_hash[at] = value, h


@kernel
def seen_recently(h: int, ring, counters) -> bool:
    """Whether this solution was visited within the last RING moves (a cycle); records it."""
    n = min(counters[C.ring_n], RING)
    for i in range(n):
        if ring[i] == h:
            return True
    ring[counters[C.ring_n] % RING] = h
    counters[C.ring_n] += 1
    return False


# ---------------------------------------------------------------------- reassignments
@kernel
def first_ending_after(seq, k: int, n_k: int, end, t: int) -> int:
    """The first place of machine k's order whose operation ends after t (ends never decrease
    along an order)."""
    lo, hi = 0, n_k
    while lo < hi:
        mid = (lo + hi) // 2
        if end[seq[k, mid]] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def best_insertion(o: int, k: int, seq, count, start, end, dur, tail, jpred, jsucc, rel, alt_duration):
    """The best place for operation o in machine k's order (k is not its machine) and the length
    of the longest path through o there, from the current heads and tails; place -1 when none.
    Only places whose neighbours a, b satisfy ``start[a] < end[job successor]`` and
    ``end[b] > start[job predecessor]`` are tried: there the job successor cannot reach a nor b the
    job predecessor, so the move makes no cycle."""
    jp, js = jpred[o], jsucc[o]
    head_job, q = rel[o], 0
    if jp >= 0:
        head_job = max(head_job, end[jp])
        q = first_ending_after(seq, k, count[k], end, start[jp])
    tail_job = tail[js] + dur[js] if js >= 0 else 0
    limit = end[js] if js >= 0 else INF
    work, n_k = alt_duration[o, k], count[k]
    best_q, best = -1, INF
    while q <= n_k:
        head = head_job
        if q > 0:
            a = seq[k, q - 1]
            if start[a] >= limit:
                break
            head = max(head, end[a])
        after = tail_job
        if q < n_k:
            b = seq[k, q]
            after = max(after, tail[b] + dur[b])
        if head + work + after < best:
            best, best_q = head + work + after, q
        q += 1
    return best_q, best


@kernel
def add_reassignments(o: int, prob, sol, work, base: int, seen: int, cap: int) -> int:
    """Add the reassignments of o (its best place on each other machine that can run it) to the
    move rows from ``base``; ``seen`` candidates so far, at most ``cap`` kept (a uniform subset
    when there are more). Returns the candidates seen."""
    for i in range(prob.n_alt[o]):
        k = prob.alt_machine[o, i]
        if k == sol.machine[o]:
            continue
        q, value = best_insertion(o, k, sol.seq, sol.count, work.start, work.end, sol.duration, work.tail,
                                  prob.job_pred, prob.job_succ, prob.release, prob.alt_duration)  # fmt: skip
        if q < 0:
            continue
        at = seen if seen < cap else random_below(sol.rng, seen + 1)
        seen += 1
        if at < cap:
            r = base + at
            work.moves[r, 0], work.moves[r, 1], work.moves[r, 2], work.moves[r, 3] = o, -1, k, q
            work.values[r] = value
    return seen


@kernel
def play(prob, sol, u: int, v: int, k: int, q: int):
    """Make move (u, v, k, q) and update the fingerprint; returns u's machine and place before it
    (what :func:`unplay` needs)."""
    m, p = sol.machine[u], sol.pos[u]
    if k == SWAP:
        swap_hashed(u, v, sol.machine, sol.seq, sol.count, sol.pos, sol.counters)
    else:
        relocate(u, k, q, sol.seq, sol.pos, sol.machine, sol.duration, sol.count, prob.alt_duration)
        sol.counters[C.hash] = solution_hash(sol.seq, sol.count)
    return m, p


@kernel
def unplay(prob, sol, u: int, v: int, k: int, m: int, p: int) -> None:
    """Undo move (u, v, k, .) made from machine m, place p."""
    if k == SWAP:
        swap_hashed(v, u, sol.machine, sol.seq, sol.count, sol.pos, sol.counters)
    else:
        relocate(u, m, p, sol.seq, sol.pos, sol.machine, sol.duration, sol.count, prob.alt_duration)
        sol.counters[C.hash] = solution_hash(sol.seq, sol.count)


# ---------------------------------------------------------------------- the search
@kernel
def evaluate(prob, sol, work, params) -> int:
    """Decode the current orders (and their tails when estimates are used: N5, or the places of
    reassignments); the objective, or -1 when the orders hold a cycle."""
    n = len(prob.job_pred)
    placed = decode(sol.duration, sol.machine, prob.job_pred, prob.job_succ, prob.release, sol.seq, sol.count,
                    sol.pos, prob.blocked_start, prob.blocked_end, prob.n_blocked, work.start, work.end, work.bind,
                    work.order, work.stack)  # fmt: skip
    if placed < n:
        return -1
    if params[P.exact] == 0 or params[P.flexible]:
        tails(sol.duration, sol.machine, prob.job_succ, sol.seq, sol.count, sol.pos, work.order, work.tail)
    sol.counters[C.current] = objective_of(params[P.kind], work.end, prob.job_last, prob.due, prob.weight,
                                           prob.job_release)  # fmt: skip
    return sol.counters[C.current]


@kernel
def estimated_moves(prob, sol, work, params) -> int:
    """N5 moves on the critical path with their makespan estimates, and on a flexible shop the
    reassignments of its operations (-1: N5 empty on a classic shop, which proves it optimal)."""
    # fields into locals before the loop: numba does not hoist a namedtuple's field out of one (5 % of the search)
    dur, mach, jpred, jsucc, rel, job_of, job_last, count = (
        sol.duration,
        sol.machine,
        prob.job_pred,
        prob.job_succ,
        prob.release,
        prob.job_of,
        prob.job_last,
        sol.count,
    )
    seq, pos = sol.seq, sol.pos
    start, end, bind, tail, path, moves, values = (
        work.start,
        work.end,
        work.bind,
        work.tail,
        work.path,
        work.moves,
        work.values,
    )
    length = critical_path(end, bind, jpred, mach, seq, pos, job_last[latest_job(end, job_last)], path)
    found = n5_moves(path, length, bind, job_of, moves)
    for i in range(found):
        values[i] = swap_estimate(moves[i, 0], moves[i, 1], start, dur, tail, jpred, jsucc, rel, mach, seq, count, pos)
    if params[P.flexible]:  # an empty N5 proves nothing when machines can change
        found, seen = max(found, 0), 0
        for i in range(length):
            seen = add_reassignments(path[i], prob, sol, work, found, seen, len(values) - found)
        found += seen
    return found


@kernel
def costly_moves(prob, sol, work, params, cap: int) -> int:
    """The adjacent swaps on the longest paths to the jobs that cost something (``chain_moves`` on
    the current decode), at most ``cap``, and on a flexible shop at most ``cap`` reassignments of
    the operations on those paths; a new visit stamp each call."""
    sol.counters[C.stamp] += 1
    stamp = sol.counters[C.stamp]
    found = chain_moves(
        params[P.kind], work.end, work.bind, prob.job_pred, prob.job_of, sol.machine, sol.seq, sol.pos,
        prob.job_last, prob.due, work.mark, stamp, work.moves, sol.rng, cap,
    )  # fmt: skip
    if params[P.flexible]:
        seen = 0
        for o in range(len(prob.job_pred)):
            if work.mark[o] == stamp:
                seen = add_reassignments(o, prob, sol, work, found, seen, cap)
        found += min(seen, cap)
    return found


@kernel
def evaluated_moves(prob, sol, work, params, cap: int) -> int:
    """Moves on the longest paths to the costly jobs (``costly_moves``), each evaluated exactly by
    decoding (releases, blocked intervals and tardiness break the estimates)."""
    jpred, jsucc, rel = prob.job_pred, prob.job_succ, prob.release  # locals before the loop (see estimated_moves)
    bstart, bend, nb, job_last, due, weight, job_rel = (
        prob.blocked_start,
        prob.blocked_end,
        prob.n_blocked,
        prob.job_last,
        prob.due,
        prob.weight,
        prob.job_release,
    )
    seq, pos, dur, mach, count = sol.seq, sol.pos, sol.duration, sol.machine, sol.count
    moves, values, kind = work.moves, work.values, params[P.kind]
    trial_start, trial_end, trial_bind, trial_order, stack = (
        work.trial_start,
        work.trial_end,
        work.trial_bind,
        work.trial_order,
        work.stack,
    )
    found = costly_moves(prob, sol, work, params, cap)
    for i in range(found):
        u, v, k = moves[i, 0], moves[i, 1], moves[i, 2]
        if k == SWAP:
            swap(u, v, mach, seq, pos)
        else:
            m, p = mach[u], pos[u]
            relocate(u, k, moves[i, 3], seq, pos, mach, dur, count, prob.alt_duration)
        placed = decode(dur, mach, jpred, jsucc, rel, seq, count, pos, bstart, bend, nb, trial_start, trial_end,
                        trial_bind, trial_order, stack)  # fmt: skip
        values[i] = objective_of(kind, trial_end, job_last, due, weight, job_rel) if placed == len(dur) else INF
        if k == SWAP:
            swap(u, v, mach, seq, pos)
        else:
            relocate(u, m, p, seq, pos, mach, dur, count, prob.alt_duration)
    sol.counters[C.evaluations] += found
    return found


@kernel
def tabu_until(tabu, a: int, b: int) -> int:
    """Until which move putting a right before b is tabu (0: it is not); ``b = -1 - m``: putting a
    on machine m. ``tabu`` is the list of recent reversed arcs and left machines, rows
    (a, b, until), as long as the longest tenure."""
    until = 0
    for i in range(len(tabu)):
        if tabu[i, 0] == a and tabu[i, 1] == b and tabu[i, 2] > until:
            until = tabu[i, 2]
    return until


@kernel
def make_tabu(tabu, a: int, b: int, until: int, counters) -> None:
    """Forbid putting a right before b (b = -1 - m: on machine m) again until move ``until`` (the
    oldest entry makes room)."""
    i = counters[C.tabu_at] % len(tabu)
    tabu[i, 0], tabu[i, 1], tabu[i, 2] = a, b, until
    counters[C.tabu_at] += 1


@kernel
def pick(moves, values, found: int, tabu, it: int, best: int, rng) -> int:
    """The best admissible move (not tabu, or better than the best so far: aspiration), ties
    broken at random; when every move is tabu, the one whose tabu status is oldest."""
    chosen, chosen_value, ties = -1, INF, 0
    oldest, oldest_until = -1, INF
    for i in range(found):
        u, v, k = moves[i, 0], moves[i, 1], moves[i, 2]
        value = values[i]
        if value >= INF:
            continue
        # a swap would put v before u again; a reassignment, u back on machine k
        until = tabu_until(tabu, v, u) if k == SWAP else tabu_until(tabu, u, -1 - k)
        if until > it and value >= best:
            if until < oldest_until:
                oldest, oldest_until = i, until
            continue
        if value < chosen_value:
            chosen, chosen_value, ties = i, value, 1
        elif value == chosen_value:
            ties += 1
            if random_below(rng, ties) == 0:
                chosen = i
    return chosen if chosen >= 0 else oldest


@kernel
def perturb(prob, sol, work, params) -> None:
    """A few random moves on the longest paths to the costly jobs (a restart's kick)."""
    kicks = params[P.perturb_min] + random_below(sol.rng, params[P.perturb_span] + 1)
    moves = work.moves
    for _ in range(kicks):
        if evaluate(prob, sol, work, params) < 0:
            break
        found = costly_moves(prob, sol, work, params, len(moves) // 2)
        if found == 0:
            break
        i = random_below(sol.rng, found)
        u, v, k = moves[i, 0], moves[i, 1], moves[i, 2]
        m, p = play(prob, sol, u, v, k, moves[i, 3])
        if evaluate(prob, sol, work, params) < 0:
            unplay(prob, sol, u, v, k, m, p)


@kernel
def restart(prob, sol, work, params) -> None:
    """Keep this run's best among the elite, jump to a random elite solution, kick it, start afresh."""
    ctr = sol.counters
    remember_elite(sol.run_best_seq, ctr[C.run_best], ctr[C.run_hash], sol.elite_seq, sol.elite_value,
                   sol.elite_hash, ctr)  # fmt: skip
    e = random_below(sol.rng, ctr[C.elite_n])
    copy_orders(sol.seq, sol.elite_seq[e])
    set_assignment(sol.seq, sol.pos, sol.machine, sol.duration, sol.count, prob.alt_duration)
    ctr[C.hash] = sol.elite_hash[e]
    sol.tabu[:] = 0
    perturb(prob, sol, work, params)
    value = evaluate(prob, sol, work, params)
    ctr[C.run_best], ctr[C.run_hash], ctr[C.stall], ctr[C.ring_n], ctr[C.run_cycles] = value, ctr[C.hash], 0, 0, 0
    copy_orders(sol.run_best_seq, sol.seq)
    ctr[C.restarts] += 1
    if value < ctr[C.best]:
        ctr[C.best] = value
        copy_orders(sol.best_seq, sol.seq)


@kernel
def accept(prob, sol, work, params, value: int) -> None:
    """Book the new current solution: run best, best so far, stall count, cycles, restarts."""
    ctr = sol.counters
    if value < ctr[C.run_best]:
        ctr[C.run_best], ctr[C.run_hash], ctr[C.stall] = value, ctr[C.hash], 0
        copy_orders(sol.run_best_seq, sol.seq)
    else:
        ctr[C.stall] += 1
    if value < ctr[C.best]:
        ctr[C.best] = value
        copy_orders(sol.best_seq, sol.seq)
        ctr[C.improvements] += 1
    cycling = seen_recently(ctr[C.hash], sol.ring, ctr)
    ctr[C.cycles] += cycling
    ctr[C.run_cycles] += cycling
    if ctr[C.stall] > params[P.stall_limit] or ctr[C.run_cycles] >= params[P.cycle_limit]:
        restart(prob, sol, work, params)


@kernel
def step(prob, sol, work, params) -> bool:
    """One tabu move; False when the search is over (the best plan is proven optimal)."""
    ctr = sol.counters
    if ctr[C.best] <= params[P.lower_bound]:
        ctr[C.done] = 1
        return False
    if params[P.exact]:
        found = evaluated_moves(prob, sol, work, params, params[P.cap])
    else:
        found = estimated_moves(prob, sol, work, params)
    if found < 0 or found == 0 and params[P.kind] == WEIGHTED_TARDINESS and ctr[C.current] == 0:
        ctr[C.done] = 1
        return False
    it = ctr[C.moves]
    ctr[C.moves] = it + 1
    i = pick(work.moves, work.values, found, sol.tabu, it, ctr[C.best], sol.rng) if found > 0 else -1
    if i < 0:  # nowhere to go from here
        restart(prob, sol, work, params)
        return True
    u, v, k = work.moves[i, 0], work.moves[i, 1], work.moves[i, 2]
    m, p = play(prob, sol, u, v, k, work.moves[i, 3])
    tenure = params[P.tenure_min] + random_below(sol.rng, params[P.tenure_span] + 1)
    make_tabu(sol.tabu, u, v if k == SWAP else -1 - m, it + 1 + tenure, ctr)
    value = evaluate(prob, sol, work, params)
    if value < 0:  # a cycle through zero-length operations: undo, the move stays tabu
        unplay(prob, sol, u, v, k, m, p)
        evaluate(prob, sol, work, params)
        return True
    accept(prob, sol, work, params, value)
    return True


@kernel
def begin(prob, sol, work, params) -> int:
    """Set a search up from the orders in ``sol.seq`` (an acyclic start plan); its objective."""
    ctr = sol.counters
    set_assignment(sol.seq, sol.pos, sol.machine, sol.duration, sol.count, prob.alt_duration)
    value = evaluate(prob, sol, work, params)
    if value < 0:
        return -1
    ctr[C.hash] = solution_hash(sol.seq, sol.count)
    ctr[C.best], ctr[C.run_best], ctr[C.run_hash] = value, value, ctr[C.hash]
    copy_orders(sol.best_seq, sol.seq)
    copy_orders(sol.run_best_seq, sol.seq)
    remember_elite(sol.seq, value, ctr[C.hash], sol.elite_seq, sol.elite_value, sol.elite_hash, ctr)
    return value


@kernel
def search(prob, sol, work, params, iterations: int) -> int:
    """Run up to ``iterations`` moves (a chunk: the state lives in the arrays, so chunks of any
    size give the same search); returns the moves made."""
    counters, made = sol.counters, 0
    while made < iterations and counters[C.done] == 0:
        step(prob, sol, work, params)
        made += 1
    return made


@kernel
def decode_orders(prob, seq, mach, start, end) -> int:
    """Machine, start and end of every operation in the plan these machine orders give (for
    reading a result back)."""
    n = len(prob.job_pred)
    pos, dur, count = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(seq.shape[0], np.int64)
    set_assignment(seq, pos, mach, dur, count, prob.alt_duration)
    bind, order, stack = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(2 * n, np.int64)
    return decode(dur, mach, prob.job_pred, prob.job_succ, prob.release, seq, count, pos,
                  prob.blocked_start, prob.blocked_end, prob.n_blocked, start, end, bind, order, stack)  # fmt: skip
