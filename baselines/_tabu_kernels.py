"""Compiled kernels of the tabu search (:mod:`baselines.tabu`); their plain-Python twins are in
``tests/reference_tabu.py``.

A solution is one processing order per machine (``seq[m, :count[m]]``, ``pos[o]`` the place of
operation ``o`` in its machine's order); operations are numbered job by job. Decoding places each
operation at its earliest time given its job predecessor, its machine predecessor, its release and
the machine's blocked intervals (nothing may touch them: a running shop's downtimes and running
work); heads and tails give the O(1) N5 move estimates of Nowicki and Smutnicki for the makespan.
Every kernel is ``nogil``, so two searches run on two cores from two threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAKESPAN, WEIGHTED_TARDINESS, FLOW = 0, 1, 2
#: What fixed an operation's start in the decoder: nothing (its release, a blocked interval or
#: time 0), its job predecessor, or its machine predecessor.
NO_BIND, JOB_BIND, MACHINE_BIND = 0, 1, 2
INF = np.int64(2**62)
#: Counter slots of a search (``ctr``).
(IT, STALL, RESTARTS, IMPROVES, CUR, BEST, RUN_BEST, RING_N, ELITE_N, CYCLES, DONE, EVALS, HASH, RUN_HASH, STAMP,
 RUN_CYCLES, TABU_AT) = range(17)  # fmt: skip
N_COUNTERS = 17
#: Parameter slots of a search (``params``).
KIND, EXACT, TENURE_MIN, TENURE_SPAN, STALL_LIMIT, PERTURB_MIN, PERTURB_SPAN, CAP, CYCLE_LIMIT = range(9)
N_PARAMS = 9
RING = 128  # solution fingerprints kept for cycle detection


# ---------------------------------------------------------------------- random numbers
@njit(cache=True, nogil=True)
def next_random(rng: np.ndarray) -> np.uint64:
    """xorshift64*: the search's own generator, its state in ``rng[0]`` (repeatable across chunks)."""
    x = rng[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[0] = x
    return x * np.uint64(2685821657736338717)


@njit(cache=True, nogil=True)
def random_below(rng: np.ndarray, n: int) -> int:
    """A number in [0, n) (n >= 1)."""
    return np.int64(next_random(rng) >> np.uint64(33)) % n


@njit(cache=True, nogil=True)
def pair_hash(a: int, b: int) -> np.int64:
    """A fingerprint of the machine arc a -> b (solution hashes XOR their arcs')."""
    x = np.uint64(a) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(b) * np.uint64(0xC2B2AE3D27D4EB4F)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return np.int64(x >> np.uint64(1))


# ---------------------------------------------------------------------- decoding
@njit(cache=True, nogil=True)
def earliest_free(ready: int, duration: int, m: int, bstart: np.ndarray, bend: np.ndarray, nb: np.ndarray) -> int:
    """First t >= ready where [t, t + duration) touches no blocked interval of machine m
    (sorted, disjoint); a zero-length operation may not sit inside one either."""
    t = ready
    for i in range(nb[m]):
        a, b = bstart[m, i], bend[m, i]
        if (t < b and a < t + duration) or (duration == 0 and a <= t < b):
            t = max(t, b)
    return t


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
@njit(cache=True, nogil=True)
def latest_job(end, job_last) -> int:
    """The first job whose last operation ends latest (where the critical path ends)."""
    latest = 0
    for j in range(1, len(job_last)):
        if end[job_last[j]] > end[job_last[latest]]:
            latest = j
    return latest


@njit(cache=True, nogil=True)
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
    path[:length] = path[:length][::-1].copy()
    return length


@njit(cache=True, nogil=True)
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
                    moves[found, 0], moves[found, 1] = u, v
                    found += 1
        block += 1
        i = j + 1
    return -1 if empty else found


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
                        moves[found, 0], moves[found, 1] = u, o
                    else:  # reservoir sampling keeps a uniform subset
                        r = random_below(rng, found + 1)
                        if r < cap:
                            moves[r, 0], moves[r, 1] = u, o
                    found += 1
                o = u
            elif bind[o] == JOB_BIND:
                o = jpred[o]
            else:
                o = -1
    return min(found, cap)


@njit(cache=True, nogil=True)
def swap(u: int, v: int, mach, seq, pos) -> None:
    """Swap u and v, adjacent on their machine (either order)."""
    m = mach[u]
    pu, pv = pos[u], pos[v]
    seq[m, pu], seq[m, pv] = v, u
    pos[u], pos[v] = pv, pu


# ---------------------------------------------------------------------- solution bookkeeping
@njit(cache=True, nogil=True)
def local_hash(m: int, p: int, seq, count) -> np.int64:
    """XOR of the arcs into, between and out of the operations at places p, p + 1 of machine m."""
    h = pair_hash(seq[m, p], seq[m, p + 1])
    if p > 0:
        h ^= pair_hash(seq[m, p - 1], seq[m, p])
    if p + 2 < count[m]:
        h ^= pair_hash(seq[m, p + 1], seq[m, p + 2])
    return h


@njit(cache=True, nogil=True)
def solution_hash(seq, count) -> np.int64:
    h = np.int64(0)
    for m in range(len(count)):
        for p in range(count[m] - 1):
            h ^= pair_hash(seq[m, p], seq[m, p + 1])
    return h


@njit(cache=True, nogil=True)
def set_positions(seq, count, pos) -> None:
    for m in range(len(count)):
        for p in range(count[m]):
            pos[seq[m, p]] = p


@njit(cache=True, nogil=True)
def swap_hashed(u: int, v: int, mach, seq, count, pos, ctr) -> None:
    """Swap u and v (u right before v) and update the solution's fingerprint."""
    m, p = mach[u], pos[u]
    ctr[HASH] ^= local_hash(m, p, seq, count)
    swap(u, v, mach, seq, pos)
    ctr[HASH] ^= local_hash(m, p, seq, count)


@njit(cache=True, nogil=True)
def remember_elite(seq, value: int, h: int, elite_seq, elite_value, elite_hash, ctr) -> None:
    """Keep the best distinct solutions seen (the restart points)."""
    n = ctr[ELITE_N]
    for e in range(n):
        if elite_hash[e] == h:
            return
    if n < len(elite_value):
        at = n
        ctr[ELITE_N] = n + 1
    else:
        at = 0
        for e in range(1, n):
            if elite_value[e] > elite_value[at]:
                at = e
        if elite_value[at] <= value:
            return
    elite_seq[at] = seq
    elite_value[at], elite_hash[at] = value, h


@njit(cache=True, nogil=True)
def seen_recently(h: int, ring, ctr) -> bool:
    """Whether this solution was visited within the last RING moves (a cycle); records it."""
    n = min(ctr[RING_N], RING)
    for i in range(n):
        if ring[i] == h:
            return True
    ring[ctr[RING_N] % RING] = h
    ctr[RING_N] += 1
    return False


# ---------------------------------------------------------------------- the search
# prob: (dur, mach, jpred, jsucc, rel, job_of, job_last, due, weight, job_rel, count, bstart, bend, nb)
# sol:  (seq, pos, ctr, rng, tabu, best_seq, run_best_seq, elite_seq, elite_value, elite_hash, ring)
# work: (start, end, bind, order, stack, tail, path, moves, values, mark, trial_start, trial_end, trial_bind, trial_order)
@njit(cache=True, nogil=True)
def evaluate(prob, sol, work, params) -> int:
    """Decode the current orders (and their tails when the estimates are used); the objective,
    or -1 when the orders hold a cycle."""
    dur, mach, jpred, jsucc, rel, job_of, job_last, due, weight, job_rel, count, bstart, bend, nb = prob
    seq, pos, ctr = sol[0], sol[1], sol[2]
    start, end, bind, order, stack, tail = work[0], work[1], work[2], work[3], work[4], work[5]
    if decode(dur, mach, jpred, jsucc, rel, seq, count, pos, bstart, bend, nb, start, end, bind, order, stack) < len(dur):
        return -1
    if params[EXACT] == 0:
        tails(dur, mach, jsucc, seq, count, pos, order, tail)
    ctr[CUR] = objective_of(params[KIND], end, job_last, due, weight, job_rel)
    return ctr[CUR]


@njit(cache=True, nogil=True)
def estimated_moves(prob, sol, work) -> int:
    """N5 moves on the critical path with their makespan estimates (-1: N5 empty, optimal)."""
    dur, mach, jpred, jsucc, rel, job_of, job_last, due, weight, job_rel, count, bstart, bend, nb = prob
    seq, pos = sol[0], sol[1]
    start, end, bind, tail, path, moves, values = work[0], work[1], work[2], work[5], work[6], work[7], work[8]
    length = critical_path(end, bind, jpred, mach, seq, pos, job_last[latest_job(end, job_last)], path)
    found = n5_moves(path, length, bind, job_of, moves)
    for i in range(found):
        values[i] = swap_estimate(moves[i, 0], moves[i, 1], start, dur, tail, jpred, jsucc, rel, mach, seq, count, pos)
    return found


@njit(cache=True, nogil=True)
def evaluated_moves(prob, sol, work, params, cap: int) -> int:
    """Swaps on the longest paths to the costly jobs, each evaluated exactly by decoding
    (releases, blocked intervals and tardiness break the estimates)."""
    dur, mach, jpred, jsucc, rel, job_of, job_last, due, weight, job_rel, count, bstart, bend, nb = prob
    seq, pos, ctr, rng = sol[0], sol[1], sol[2], sol[3]
    end, bind, stack, moves, values, mark = work[1], work[2], work[4], work[7], work[8], work[9]
    ctr[STAMP] += 1
    kind = params[KIND]
    found = chain_moves(kind, end, bind, jpred, job_of, mach, seq, pos, job_last, due, mark, ctr[STAMP], moves, rng, cap)
    for i in range(found):
        u, v = moves[i, 0], moves[i, 1]
        swap(u, v, mach, seq, pos)
        placed = decode(dur, mach, jpred, jsucc, rel, seq, count, pos, bstart, bend, nb, work[10], work[11], work[12],
                        work[13], stack)  # fmt: skip
        values[i] = objective_of(kind, work[11], job_last, due, weight, job_rel) if placed == len(dur) else INF
        swap(u, v, mach, seq, pos)
    ctr[EVALS] += found
    return found


@njit(cache=True, nogil=True)
def tabu_until(tabu, a: int, b: int) -> int:
    """Until which move putting a right before b is tabu (0: it is not). ``tabu`` is the list
    of recently reversed arcs, rows (a, b, until), as long as the longest tenure."""
    until = 0
    for i in range(len(tabu)):
        if tabu[i, 0] == a and tabu[i, 1] == b and tabu[i, 2] > until:
            until = tabu[i, 2]
    return until


@njit(cache=True, nogil=True)
def make_tabu(tabu, a: int, b: int, until: int, ctr) -> None:
    """Forbid putting a right before b again until move ``until`` (the oldest entry makes room)."""
    i = ctr[TABU_AT] % len(tabu)
    tabu[i, 0], tabu[i, 1], tabu[i, 2] = a, b, until
    ctr[TABU_AT] += 1


@njit(cache=True, nogil=True)
def pick(moves, values, found: int, tabu, it: int, best: int, rng) -> int:
    """The best admissible move (not tabu, or better than the best so far: aspiration), ties
    broken at random; when every move is tabu, the one whose tabu status is oldest."""
    chosen, chosen_value, ties = -1, INF, 0
    oldest, oldest_until = -1, INF
    for i in range(found):
        u, v = moves[i, 0], moves[i, 1]
        value = values[i]
        if value >= INF:
            continue
        until = tabu_until(tabu, v, u)  # the swap would put v before u again
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


@njit(cache=True, nogil=True)
def perturb(prob, sol, work, params) -> None:
    """A few random swaps on the longest paths to the costly jobs (a restart's kick)."""
    mach = prob[1]
    seq, pos, ctr, rng = sol[0], sol[1], sol[2], sol[3]
    moves = work[7]
    kicks = params[PERTURB_MIN] + random_below(rng, params[PERTURB_SPAN] + 1)
    for _ in range(kicks):
        if evaluate(prob, sol, work, params) < 0:
            break
        ctr[STAMP] += 1
        found = chain_moves(params[KIND], work[1], work[2], prob[2], prob[5], mach, seq, pos, prob[6], prob[7], work[9],
                            ctr[STAMP], moves, rng, len(moves))  # fmt: skip
        if found == 0:
            break
        i = random_below(rng, found)
        u, v = moves[i, 0], moves[i, 1]
        swap_hashed(u, v, mach, seq, prob[10], pos, ctr)
        if evaluate(prob, sol, work, params) < 0:
            swap_hashed(v, u, mach, seq, prob[10], pos, ctr)


@njit(cache=True, nogil=True)
def restart(prob, sol, work, params) -> None:
    """Keep this run's best among the elite, jump to a random elite solution, kick it, start afresh."""
    seq, pos, ctr, rng, tabu, best_seq, run_best_seq, elite_seq, elite_value, elite_hash = sol[:10]
    remember_elite(run_best_seq, ctr[RUN_BEST], ctr[RUN_HASH], elite_seq, elite_value, elite_hash, ctr)
    e = random_below(rng, ctr[ELITE_N])
    seq[:] = elite_seq[e]
    set_positions(seq, prob[10], pos)
    ctr[HASH] = elite_hash[e]
    tabu[:] = 0
    perturb(prob, sol, work, params)
    value = evaluate(prob, sol, work, params)
    ctr[RUN_BEST], ctr[RUN_HASH], ctr[STALL], ctr[RING_N], ctr[RUN_CYCLES] = value, ctr[HASH], 0, 0, 0
    run_best_seq[:] = seq
    ctr[RESTARTS] += 1
    if value < ctr[BEST]:
        ctr[BEST] = value
        best_seq[:] = seq


@njit(cache=True, nogil=True)
def accept(prob, sol, work, params, value: int) -> None:
    """Book the new current solution: run best, best so far, stall count, cycles, restarts."""
    seq, ctr, best_seq, run_best_seq, ring = sol[0], sol[2], sol[5], sol[6], sol[10]
    if value < ctr[RUN_BEST]:
        ctr[RUN_BEST], ctr[RUN_HASH], ctr[STALL] = value, ctr[HASH], 0
        run_best_seq[:] = seq
    else:
        ctr[STALL] += 1
    if value < ctr[BEST]:
        ctr[BEST] = value
        best_seq[:] = seq
        ctr[IMPROVES] += 1
    cycling = seen_recently(ctr[HASH], ring, ctr)
    ctr[CYCLES] += cycling
    ctr[RUN_CYCLES] += cycling
    if ctr[STALL] > params[STALL_LIMIT] or ctr[RUN_CYCLES] >= params[CYCLE_LIMIT]:
        restart(prob, sol, work, params)


@njit(cache=True, nogil=True)
def step(prob, sol, work, params) -> bool:
    """One tabu move; False when the search is over (the current plan is proven optimal)."""
    mach = prob[1]
    seq, pos, ctr, rng, tabu = sol[0], sol[1], sol[2], sol[3], sol[4]
    moves, values = work[7], work[8]
    if params[EXACT]:
        found = evaluated_moves(prob, sol, work, params, params[CAP])
    else:
        found = estimated_moves(prob, sol, work)
    if found < 0 or found == 0 and params[KIND] == WEIGHTED_TARDINESS and ctr[CUR] == 0:
        ctr[DONE] = 1
        return False
    it = ctr[IT]
    ctr[IT] = it + 1
    i = pick(moves, values, found, tabu, it, ctr[BEST], rng) if found > 0 else -1
    if i < 0:  # nowhere to go from here
        restart(prob, sol, work, params)
        return True
    u, v = moves[i, 0], moves[i, 1]
    swap_hashed(u, v, mach, seq, prob[10], pos, ctr)
    make_tabu(tabu, u, v, it + 1 + params[TENURE_MIN] + random_below(rng, params[TENURE_SPAN] + 1), ctr)
    value = evaluate(prob, sol, work, params)
    if value < 0:  # a cycle through zero-length operations: undo, the move stays tabu
        swap_hashed(v, u, mach, seq, prob[10], pos, ctr)
        evaluate(prob, sol, work, params)
        return True
    accept(prob, sol, work, params, value)
    return True


@njit(cache=True, nogil=True)
def begin(prob, sol, work, params) -> int:
    """Set a search up from the orders in ``sol`` (an acyclic start plan); its objective."""
    seq, pos, ctr, best_seq, run_best_seq, elite_seq, elite_value, elite_hash = (
        sol[0], sol[1], sol[2], sol[5], sol[6], sol[7], sol[8], sol[9]
    )  # fmt: skip
    set_positions(seq, prob[10], pos)
    value = evaluate(prob, sol, work, params)
    if value < 0:
        return -1
    ctr[HASH] = solution_hash(seq, prob[10])
    ctr[BEST], ctr[RUN_BEST], ctr[RUN_HASH] = value, value, ctr[HASH]
    best_seq[:] = seq
    run_best_seq[:] = seq
    remember_elite(seq, value, ctr[HASH], elite_seq, elite_value, elite_hash, ctr)
    return value


@njit(cache=True, nogil=True)
def search(prob, sol, work, params, iterations: int) -> int:
    """Run up to ``iterations`` moves (a chunk: the state lives in the arrays, so chunks of any
    size give the same search); returns the moves made."""
    ctr = sol[2]
    made = 0
    while made < iterations and ctr[DONE] == 0:
        step(prob, sol, work, params)
        made += 1
    return made


@njit(cache=True, nogil=True)
def decode_orders(prob, seq, start, end) -> int:
    """Start and end times of the plan these machine orders give (for reading a result back)."""
    dur, mach, jpred, jsucc, rel = prob[0], prob[1], prob[2], prob[3], prob[4]
    count, bstart, bend, nb = prob[10], prob[11], prob[12], prob[13]
    n = len(dur)
    pos = np.zeros(n, dtype=np.int64)
    set_positions(seq, count, pos)
    bind, order, stack = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(2 * n, np.int64)
    return decode(dur, mach, jpred, jsucc, rel, seq, count, pos, bstart, bend, nb, start, end, bind, order, stack)
