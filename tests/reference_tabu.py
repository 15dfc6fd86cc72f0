"""Plain-Python twins of the tabu search's kernels (``baselines/_tabu_kernels.py``): slow and
obviously correct. Operations are (job, op) pairs, machine orders lists of them (on a flexible
shop the order that holds an operation says its machine); nothing is shared with the kernels but
the problem they read.
"""

from __future__ import annotations

from functools import cache

from instances import JobShopInstance

Op = tuple[int, int]


class ReferenceTabu:
    """An instance, blocked intervals per machine and machine orders (lists of (job, op))."""

    def __init__(self, instance: JobShopInstance, orders: dict[int, list[Op]], blocked: dict | None = None):
        self.instance, self.orders, self.blocked = instance, orders, blocked or {}
        self.release = [int(r) for r in instance.release_dates] if instance.release_dates is not None else None
        self.table = instance.processing_table()

    def machine(self, o: Op) -> int:
        return next(m for m, order in self.orders.items() if o in order)

    def duration(self, o: Op) -> int:
        return int(self.table[o[0], o[1], self.machine(o)])

    def relocate(self, o: Op, k: int, q: int) -> None:
        """Move o to place q of machine k's order."""
        self.orders[self.machine(o)].remove(o)
        self.orders.setdefault(k, []).insert(q, o)

    def best_insertion(self, times, tails, o: Op, k: int) -> tuple[int, int]:
        """(place, longest path through o there) of o's best place on machine k (not its machine),
        among the places whose neighbours a, b have start(a) < end(job successor) and
        end(b) > start(job predecessor); (-1, None) when there is none. The first place wins a tie."""
        jp, js = self.job_pred(o), self.job_succ(o)
        release = self.release[o[0]] if self.release and o[1] == 0 else 0
        order = self.orders.get(k, [])
        best = (-1, None)
        for q in range(len(order) + 1):
            a, b = (order[q - 1] if q > 0 else None), (order[q] if q < len(order) else None)
            if a is not None and js is not None and times[a][0] >= times[js][1]:
                continue
            if b is not None and jp is not None and times[b][1] <= times[jp][0]:
                continue
            head = max([release] + [times[x][1] for x in (jp, a) if x is not None])
            after = max([0] + [tails[x] + self.duration(x) for x in (js, b) if x is not None])
            value = head + int(self.table[o[0], o[1], k]) + after
            if best[1] is None or value < best[1]:
                best = (q, value)
        return best

    def job_pred(self, o: Op) -> Op | None:
        return (o[0], o[1] - 1) if o[1] > 0 else None

    def job_succ(self, o: Op) -> Op | None:
        return (o[0], o[1] + 1) if o[1] + 1 < self.instance.n_ops[o[0]] else None

    def machine_pred(self, o: Op) -> Op | None:
        order = self.orders[self.machine(o)]
        i = order.index(o)
        return order[i - 1] if i > 0 else None

    def machine_succ(self, o: Op) -> Op | None:
        order = self.orders[self.machine(o)]
        i = order.index(o)
        return order[i + 1] if i + 1 < len(order) else None

    def clear(self, m: int, t: int, p: int) -> bool:
        return all(not (t < b and a < t + p) and not (p == 0 and a <= t < b) for a, b in self.blocked.get(m, []))

    def decode(self) -> dict[Op, tuple[int, int]] | None:
        """(start, end) of every operation, by repeated sweeps; None when the orders hold a cycle."""
        times: dict[Op, tuple[int, int]] = {}
        ops = [(j, k) for j in range(self.instance.n_jobs) for k in range(int(self.instance.n_ops[j]))]
        while len(times) < len(ops):
            progress = False
            for o in ops:
                preds = [p for p in (self.job_pred(o), self.machine_pred(o)) if p is not None]
                if o in times or any(p not in times for p in preds):
                    continue
                ready = max([times[p][1] for p in preds] + [self.release[o[0]] if self.release and o[1] == 0 else 0])
                candidates = sorted({ready} | {b for a, b in self.blocked.get(self.machine(o), []) if b > ready})
                t = next(c for c in candidates if self.clear(self.machine(o), c, self.duration(o)))
                times[o] = (t, t + self.duration(o))
                progress = True
            if not progress:
                return None
        return times

    def binding(self, times, o: Op) -> str:
        """What fixed the start of o: 'machine' (its machine predecessor first), 'job' or 'none'."""
        start = times[o][0]
        mp, jp = self.machine_pred(o), self.job_pred(o)
        if mp is not None and times[mp][1] == start:
            return "machine"
        if jp is not None and times[jp][1] == start:
            return "job"
        return "none"

    def tails(self) -> dict[Op, int]:
        @cache
        def tail(o: Op) -> int:
            nexts = [s for s in (self.job_succ(o), self.machine_succ(o)) if s is not None]
            return max([tail(s) + self.duration(s) for s in nexts], default=0)

        return {o: tail(o) for o in self.all_ops()}

    def all_ops(self) -> list[Op]:
        return [(j, k) for j in range(self.instance.n_jobs) for k in range(int(self.instance.n_ops[j]))]

    def critical_path(self, times) -> list[Op]:
        """Back from the last operation of the first job with the latest end."""
        lasts = [(j, int(self.instance.n_ops[j]) - 1) for j in range(self.instance.n_jobs)]
        o = max(lasts, key=lambda x: (times[x][1], -x[0]))
        path = [o]
        while True:
            how = self.binding(times, o)
            if how == "none":
                return path[::-1]
            o = self.machine_pred(o) if how == "machine" else self.job_pred(o)
            path.append(o)

    def n5(self, times) -> list[tuple[Op, Op]] | None:
        """N5 pairs of the critical path (None: N5 is empty)."""
        path = self.critical_path(times)
        blocks = [[path[0]]]
        for o in path[1:]:
            if self.binding(times, o) == "machine":
                blocks[-1].append(o)
            else:
                blocks.append([o])
        pairs = []
        for b, block in enumerate(blocks):
            if len(block) < 2:
                continue
            ends = []
            if b > 0:
                ends.append((block[0], block[1]))
            if b < len(blocks) - 1:
                ends.append((block[-2], block[-1]))
            for pair in ends:
                if pair not in pairs:
                    pairs.append(pair)
        if not pairs:
            return None
        return [(u, v) for u, v in pairs if u[0] != v[0]]

    def estimate(self, times, tails, u: Op, v: Op) -> int:
        """Longest path through u or v once v goes right before u (the O(1) estimate's meaning)."""

        def end_of(o):
            return times[o][0] + self.duration(o) if o is not None else 0

        def tail_plus(o):
            return tails[o] + self.duration(o) if o is not None else 0

        release = self.release or [0] * self.instance.n_jobs
        head_v = max(release[v[0]] if v[1] == 0 else 0, end_of(self.job_pred(v)), end_of(self.machine_pred(u)))
        head_u = max(release[u[0]] if u[1] == 0 else 0, end_of(self.job_pred(u)), head_v + self.duration(v))
        tail_u = max(tail_plus(self.job_succ(u)), tail_plus(self.machine_succ(v)))
        tail_v = max(tail_plus(self.job_succ(v)), tail_u + self.duration(u))
        return max(head_v + self.duration(v) + tail_v, head_u + self.duration(u) + tail_u)

    def chain_pairs(self, times, objective: str, due=None) -> set[tuple[Op, Op]]:
        """Adjacent machine pairs on the longest paths to the costly jobs (see the kernel)."""
        lasts = [(j, int(self.instance.n_ops[j]) - 1) for j in range(self.instance.n_jobs)]
        if objective == "makespan":
            costly = [max(lasts, key=lambda x: (times[x][1], -x[0]))]
        elif objective == "total_weighted_tardiness":
            costly = [o for o in lasts if times[o][1] > due[o[0]]]
        else:
            costly = lasts
        pairs = set()
        for o in costly:
            while True:
                how = self.binding(times, o)
                if how == "none":
                    break
                previous = self.machine_pred(o) if how == "machine" else self.job_pred(o)
                if how == "machine" and previous[0] != o[0]:
                    pairs.add((previous, o))
                o = previous
        return pairs

    def objective(self, times, objective: str) -> int:
        inst = self.instance
        ends = [times[(j, int(inst.n_ops[j]) - 1)][1] for j in range(inst.n_jobs)]
        if objective == "makespan":
            return max(ends)
        if objective == "total_weighted_tardiness":
            weights = inst.weights if inst.weights is not None else [1] * inst.n_jobs
            return sum(int(w) * max(0, c - int(d)) for w, c, d in zip(weights, ends, inst.due_dates))
        release = self.release or [0] * inst.n_jobs
        return sum(c - r for c, r in zip(ends, release))
