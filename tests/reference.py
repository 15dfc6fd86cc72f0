"""Plain-Python twins of the compiled kernels in ``sched_env/_kernels.py``: slow, obviously correct.

They share no code with the kernels: a shop is a few lists and a dict of machine intervals,
and the earliest start is found by trying every candidate time instead of walking a linked
list. Tests drive both with the same actions and compare everything observable.
"""

from __future__ import annotations

import math

import numpy as np

from instances import JobShopInstance

PLACEMENTS = ("append", "active")
ACTION_SETS = ("any", "giffler_thompson", "non_delay")


class ReferenceShop:
    """One shop: reset, earliest start, dispatch, mask, features, lower bound, step."""

    def __init__(
        self, instance: JobShopInstance, max_jobs: int, max_ops: int, placement: str, action_set: str, reward: str
    ):
        self.instance = instance
        self.J, self.O = max_jobs, max_ops
        self.placement, self.action_set, self.reward = placement, action_set, reward
        self.time_scale = max(1, instance.simple_lower_bound())
        self.duration_scale = max(1, int(instance.durations.max()))
        self.reset()

    # -------------------------------------------------------------- helpers
    def n_ops(self, j: int) -> int:
        return int(self.instance.n_ops[j]) if j < self.instance.n_jobs else 0

    def op(self, j: int, k: int) -> tuple[int, int]:
        return int(self.instance.machines[j, k]), int(self.instance.durations[j, k])

    def unfinished(self) -> list[int]:
        return [j for j in range(self.J) if self.next_op[j] < self.n_ops(j)]

    # -------------------------------------------------------------- kernels' twins
    def reset(self) -> None:
        inst = self.instance
        self.next_op = [0] * self.J
        release = inst.release_dates if inst.release_dates is not None else np.zeros(inst.n_jobs, dtype=int)
        self.ready = [int(release[j]) if j < inst.n_jobs else 0 for j in range(self.J)]
        self.intervals: dict[int, list[tuple[int, int]]] = {m: [] for m in range(inst.n_machines)}
        self.start = np.full((self.J, self.O), -1, dtype=np.int64)
        self.end = np.full((self.J, self.O), -1, dtype=np.int64)
        self.makespan = 0
        self.bound = self.lower_bound()

    def earliest_start(self, j: int) -> int:
        machine, duration = self.op(j, self.next_op[j])
        busy = self.intervals[machine]
        ready = self.ready[j]
        if self.placement == "append":
            return max([ready] + [e for _, e in busy])
        # Try every candidate start (the ready time, or when something on the machine ends)
        # and keep the earliest one that overlaps nothing: [t, t+d) vs [s, e) overlap iff
        # t < e and s < t + d, the validator's rule.
        candidates = sorted({ready} | {e for _, e in busy if e >= ready})
        for t in candidates:
            if all(not (t < e and s < t + duration) for s, e in busy):
                return t
        raise AssertionError("unreachable: the latest end is always free")

    def remaining_work(self, j: int) -> int:
        return sum(self.op(j, k)[1] for k in range(self.next_op[j], self.n_ops(j)))

    def est(self, j: int) -> int:
        return self.earliest_start(j) if self.next_op[j] < self.n_ops(j) else self.ready[j]

    def lower_bound(self) -> int:
        bound = self.makespan
        for j in range(self.J):
            if self.n_ops(j) > 0:
                bound = max(bound, self.est(j) + self.remaining_work(j))
        return bound

    def dispatch(self, j: int) -> int:
        k = self.next_op[j]
        machine, duration = self.op(j, k)
        start = self.earliest_start(j)
        self.start[j, k], self.end[j, k] = start, start + duration
        self.intervals[machine].append((start, start + duration))
        self.ready[j] = start + duration
        self.next_op[j] += 1
        self.makespan = max(self.makespan, start + duration)
        return start

    def mask(self) -> np.ndarray:
        mask = np.zeros(self.J, dtype=np.int8)
        jobs = self.unfinished()
        if not jobs:
            return mask
        if self.action_set == "any":
            mask[jobs] = 1
        elif self.action_set == "non_delay":
            t = min(self.est(j) for j in jobs)
            mask[[j for j in jobs if self.est(j) == t]] = 1
        else:  # Giffler-Thompson, ties to the lowest job index
            completion = {j: self.est(j) + self.op(j, self.next_op[j])[1] for j in jobs}
            best = min(jobs, key=lambda j: (completion[j], j))
            machine = self.op(best, self.next_op[best])[0]
            for j in jobs:
                if self.op(j, self.next_op[j])[0] == machine and (self.est(j) < completion[best] or j == best):
                    mask[j] = 1
        return mask

    def features(self, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((self.J, 10), dtype=np.float64)
        jobs = self.unfinished()
        now = min((self.est(j) for j in jobs), default=self.makespan)
        n_jobs = max(self.instance.n_jobs, 1)
        for j in range(self.J):
            if self.n_ops(j) == 0:
                continue
            if self.next_op[j] >= self.n_ops(j):
                out[j, 9] = 1
                continue
            machine, duration = self.op(j, self.next_op[j])
            machine_left = sum(
                self.op(i, k)[1]
                for i in range(self.instance.n_jobs)
                for k in range(self.next_op[i], self.n_ops(i))
                if self.op(i, k)[0] == machine
            )
            waiting = sum(1 for i in jobs if self.op(i, self.next_op[i])[0] == machine)
            machine_end = max([0] + [e for _, e in self.intervals[machine]])
            out[j] = [
                mask[j],
                duration / self.duration_scale,
                self.remaining_work(j) / self.time_scale,
                (self.n_ops(j) - self.next_op[j]) / self.O,
                (self.est(j) - now) / self.time_scale,
                (self.ready[j] - now) / self.time_scale,
                machine_left / self.time_scale,
                (machine_end - now) / self.time_scale,
                waiting / n_jobs,
                0,
            ]
        return np.clip(out, -1000.0, 1000.0)

    def step(self, action: int, mask: np.ndarray) -> tuple[float, bool, bool]:
        """Same contract as ``step_shop``: an action outside the mask becomes the lowest allowed job."""
        invalid = not (0 <= action < self.J and mask[action])
        if invalid:
            allowed = np.flatnonzero(mask)
            if allowed.size == 0:
                return 0.0, True, True
            action = int(allowed[0])
        before = self.bound
        self.dispatch(action)
        self.bound = self.lower_bound()
        done = not self.unfinished()
        if self.reward == "dense":
            reward = (before - self.bound) / self.time_scale
        else:
            reward = -self.makespan / self.time_scale if done else 0.0
        return reward, done, invalid


def rule_key(rule: str, job: dict, now: int, mean_p: float, queue_work: dict) -> float:
    """Twin of the kernels' ``rule_key``: the key of one job (smaller is better) from its view
    ``job`` (p, left, due, weight, ready, next_op, n_ops, next_machine, npt)."""
    p, left, due, weight = job["p"], job["left"], job["due"], max(job["weight"], 1)
    slack = due - now - left
    winq = queue_work.get(job["next_machine"], 0) if job["next_machine"] is not None else 0
    keys = {
        "spt": lambda: p,
        "lpt": lambda: -p,
        "mwkr": lambda: -left,
        "lwkr": lambda: left,
        "mopnr": lambda: -(job["n_ops"] - job["next_op"]),
        "fifo": lambda: job["ready"],
        "edd": lambda: due,
        "atc": lambda: -(math.log(weight / max(p, 1)) - max(0, slack) / (2.0 * mean_p)),
        "wspt": lambda: -weight / max(p, 1),
        "covert": lambda: -weight / max(p, 1) * max(0.0, 1.0 - max(0, slack) / (2.0 * max(p, 1))),
        "cr": lambda: (due - now) / max(left, 1),
        "slack/opn": lambda: slack / max(job["n_ops"] - job["next_op"], 1),
        "pt+winq": lambda: p + winq,
        "2pt+winq+npt": lambda: 2 * p + winq + job["npt"],
    }
    return float(keys[rule]())


def choose_by_rule(shop: ReferenceShop, mask: np.ndarray, rule: str, uniform: float) -> int:
    """Twin of the kernel: the allowed job with the smallest rule key (ties: lowest index);
    "now" is the earliest start of the allowed jobs, queues hold the unfinished jobs ready by then."""
    allowed = [int(j) for j in np.flatnonzero(mask)]
    if not allowed:
        return -1
    if rule == "random":
        return allowed[int(uniform * len(allowed))]
    now = min(shop.est(j) for j in allowed)
    instance = shop.instance
    views = {}
    for j in shop.unfinished():
        k = shop.next_op[j]
        after = shop.op(j, k + 1) if k + 1 < shop.n_ops(j) else (None, 0)
        views[j] = {
            "machine": shop.op(j, k)[0], "p": shop.op(j, k)[1], "left": shop.remaining_work(j),
            "due": int(instance.due_dates[j]) if instance.due_dates is not None else 0,
            "weight": int(instance.weights[j]) if instance.weights is not None else 1,
            "ready": shop.ready[j], "next_op": k, "n_ops": shop.n_ops(j), "next_machine": after[0], "npt": after[1],
        }  # fmt: skip
    queue_work: dict = {}
    for view in views.values():
        if view["ready"] <= now:
            queue_work[view["machine"]] = queue_work.get(view["machine"], 0) + view["p"]
    mean_p = sum(max(views[j]["p"], 1) for j in allowed) / len(allowed)
    return min(allowed, key=lambda j: (rule_key(rule, views[j], now, mean_p, queue_work), j))


def sample_valid_actions(masks: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Twin of the kernel: the floor(u * count)-th allowed job of each row, -1 if none."""
    actions = np.full(masks.shape[0], -1, dtype=np.int64)
    for i, row in enumerate(masks):
        allowed = np.flatnonzero(row)
        if allowed.size:
            actions[i] = allowed[int(uniforms[i] * allowed.size)]
    return actions


def random_test_instance(rng: np.random.Generator, max_jobs: int = 6, max_machines: int = 4, max_ops: int = 6):
    """Small instances that stress the kernels: revisited machines, zero durations, jobs of
    different lengths, release dates."""
    n_jobs = int(rng.integers(1, max_jobs + 1))
    n_machines = int(rng.integers(1, max_machines + 1))
    width = int(rng.integers(1, max_ops + 1))
    n_ops = rng.integers(1, width + 1, size=n_jobs)
    n_ops[rng.integers(n_jobs)] = width
    machines = rng.integers(0, n_machines, size=(n_jobs, width))
    durations = rng.integers(0, 10, size=(n_jobs, width)) * (rng.random((n_jobs, width)) > 0.1)
    release = rng.integers(0, 15, size=n_jobs) if rng.random() < 0.4 else None
    return JobShopInstance(
        machines, durations, n_machines=n_machines, n_ops=n_ops, release_dates=release, name="random-test"
    )


class ReferenceDynamicShop:
    """Twin of the dynamic kernels: the clock advances one time unit at a time, and an
    operation runs unit by unit around (resume) or into (restart) its machine's downtimes.
    Jobs enter ``window`` slots in arrival order (job n of the stream: slot n mod window, else
    the next free one); while none is free they queue. Rows of the mask and features are slots."""

    def __init__(self, scenario, max_jobs: int, max_ops: int, objective: str, allow_wait: bool = False):
        self.s, self.jobs = scenario, scenario.jobs
        self.J, self.O, self.objective, self.allow_wait = max_jobs, max_ops, objective, allow_wait
        self.scale = max(1, int(round(float(self.jobs.job_work().mean()))))
        n = self.jobs.n_jobs
        self.stream = sorted(range(n), key=lambda j: (int(self.jobs.release_dates[j]), j))
        self.slots: list[int | None] = [None] * max_jobs
        self.admitted = 0
        self.now = 0
        self.next_op = [0] * n
        self.ready = [int(r) for r in self.jobs.release_dates]
        self.busy_until = [0] * self.jobs.n_machines
        self.expected_job = [int(r) for r in self.jobs.release_dates]
        self.expected_machine = [0] * self.jobs.n_machines
        self.start = np.full((n, max_ops), -1, dtype=np.int64)  # by scenario job
        self.end = np.full((n, max_ops), -1, dtype=np.int64)
        self.wasted = 0
        self.carry = {"makespan": 0, "mean_flow_time": 0, "total_weighted_tardiness": 0}

    def down(self, machine: int, t: int) -> tuple[int, int] | None:
        for m, a, b, _ in self.s.downtimes.tolist():
            if m == machine and a <= t < b:
                return a, b
        return None

    def unfinished(self, j: int) -> bool:
        return self.next_op[j] < self.jobs.n_ops[j]

    def machine_of(self, j: int) -> int:
        return int(self.jobs.machines[j, self.next_op[j]])

    def admit(self) -> None:
        """Free the slots of complete jobs, then fill free slots with arrived jobs."""
        for i, j in enumerate(self.slots):
            if j is not None and not self.unfinished(j) and self.ready[j] <= self.now:
                self.slots[i] = None
        while self.admitted < len(self.stream) and None in self.slots:
            n = self.admitted
            job = self.stream[n]
            if self.jobs.release_dates[job] > self.now:
                break
            slot = next(i % self.J for i in range(n, n + self.J) if self.slots[i % self.J] is None)
            self.slots[slot] = job
            self.admitted += 1

    def startable(self, slot: int) -> bool:
        j = self.slots[slot] if slot < self.J else None
        if j is None or not self.unfinished(j):
            return False
        m = self.machine_of(j)
        now = self.now
        return self.ready[j] <= now and self.busy_until[m] <= now and self.down(m, now) is None

    def next_event(self) -> float:
        """The next time anything changes: an arrival, an op end, a downtime start or end."""
        later = [int(r) for r in self.jobs.release_dates if r > self.now]
        later += [t for t in self.ready + self.busy_until if t > self.now]
        later += [t for _m, a, b, _k in self.s.downtimes.tolist() for t in (a, b) if t > self.now]
        return min(later, default=float("inf"))

    def mask(self) -> np.ndarray:
        mask = [self.startable(i) for i in range(self.J)]
        if self.allow_wait:
            mask.append(any(mask) and self.next_event() < float("inf"))
        return np.array(mask, dtype=np.int8)

    def completion(self, j: int) -> float:
        return self.ready[j] if not self.unfinished(j) else float("inf")

    def tick(self) -> None:
        """Accrue one time unit [now, now + 1) and move the clock."""
        t = self.now
        self.carry["makespan"] += 1
        for j in range(self.jobs.n_jobs):
            if self.jobs.release_dates[j] <= t < self.completion(j):
                self.carry["mean_flow_time"] += 1
                if t >= self.jobs.due_dates[j]:
                    self.carry["total_weighted_tardiness"] += int(self.jobs.weights[j])
        self.now += 1

    def settle(self) -> None:
        while True:
            self.admit()
            if not any(self.unfinished(j) for j in range(self.jobs.n_jobs)):
                final = max(self.ready)
                while self.now < final:
                    self.tick()
                self.admit()
                return
            if self.mask()[: self.J].any():
                return
            self.tick()

    def wait(self, until: int | None = None) -> None:
        target = self.next_event()
        if until is not None and until > self.now:
            target = min(target, until)
        while self.now < target:
            self.tick()
        self.settle()

    def run(self, slot: int) -> None:
        j = self.slots[slot]
        m, k = self.machine_of(j), self.next_op[j]
        work = int(self.s.realized_durations[j, k])
        t, done = self.now, 0
        while done < work:
            if self.down(m, t) is not None:
                if self.s.interruption == "restart":  # aborted: the work is lost
                    self.busy_until[m] = max(self.busy_until[m], t)
                    self.ready[j] = t
                    self.wasted += t - self.now
                    break
            else:
                done += 1
            t += 1
        else:
            self.start[j, k], self.end[j, k] = self.now, t
            self.busy_until[m] = max(self.busy_until[m], t)
            self.ready[j] = t
            self.next_op[j] += 1
        planned = int(self.jobs.durations[j, k])
        self.expected_job[j] = self.expected_machine[m] = self.now + planned

    def reward(self) -> float:
        n = max(self.jobs.n_jobs, 1)
        value = {
            "makespan": self.carry["makespan"],
            "mean_flow_time": self.carry["mean_flow_time"] / n,
            "total_weighted_tardiness": self.carry["total_weighted_tardiness"] / n,
        }
        self.carry = dict.fromkeys(self.carry, 0)
        return -value[self.objective] / self.scale

    def view(self, j: int) -> dict:
        """What the rules and features read of active job ``j`` (planned data)."""
        jobs, k = self.jobs, self.next_op[j]
        after = k + 1 < jobs.n_ops[j]
        return {
            "machine": self.machine_of(j), "p": int(jobs.durations[j, k]), "left": int(jobs.durations[j, k:].sum()),
            "due": int(jobs.due_dates[j]), "weight": int(jobs.weights[j]), "ready": self.ready[j], "next_op": k,
            "n_ops": int(jobs.n_ops[j]), "next_machine": int(jobs.machines[j, k + 1]) if after else None,
            "npt": int(jobs.durations[j, k + 1]) if after else 0,
        }  # fmt: skip

    def queues(self) -> tuple[dict, dict]:
        """Planned work and count of the active jobs waiting at each machine now (ready, not started)."""
        work: dict = {}
        count: dict = {}
        for j in self.slots:
            if j is not None and self.unfinished(j) and self.ready[j] <= self.now:
                m = self.machine_of(j)
                work[m] = work.get(m, 0) + int(self.jobs.durations[j, self.next_op[j]])
                count[m] = count.get(m, 0) + 1
        return work, count

    def mean_allowed_duration(self, mask: np.ndarray) -> float:
        allowed = [self.slots[i] for i in np.flatnonzero(mask[: self.J])]
        if not allowed:
            return 1.0
        return sum(max(int(self.jobs.durations[j, self.next_op[j]]), 1) for j in allowed) / len(allowed)

    def features(self, mask: np.ndarray) -> np.ndarray:
        jobs, now = self.jobs, self.now
        out = np.zeros((self.J, 29))
        active = [(i, j) for i, j in enumerate(self.slots) if j is not None and self.unfinished(j)]
        load = np.zeros(jobs.n_machines)
        for _, j in active:
            for k in range(self.next_op[j], jobs.n_ops[j]):
                load[jobs.machines[j, k]] += jobs.durations[j, k]
        max_weight = max([1] + [int(jobs.weights[j]) for _, j in active])
        queue_work, queue_count = self.queues()
        mean_p = self.mean_allowed_duration(mask)
        longest = max(1, int(jobs.durations.max()))
        for i, j in active:
            v = self.view(j)
            m, k, remaining = v["machine"], v["next_op"], v["left"]
            window = self.down(m, now)
            slack = int(jobs.due_dates[j]) - now - remaining
            ops_left = int(jobs.n_ops[j]) - k
            atc = math.log(max(v["weight"], 1) / max(v["p"], 1)) - max(0, slack) / (2.0 * mean_p) + math.log(mean_p)
            out[i] = [
                mask[i],
                v["p"] / longest,
                remaining / self.scale,
                ops_left / jobs.n_machines,
                max(0, self.expected_job[j] - now) / self.scale,
                max(0, self.expected_machine[m] - now) / self.scale,
                window is not None,
                (window[1] - now) / self.scale if window else 0,
                load[m] / self.scale,
                np.clip(slack / self.scale, -1000, 1000),
                jobs.weights[j] / max_weight,
                min((now - jobs.release_dates[j]) / self.scale, 1000),
                v["npt"] / longest,
                queue_work.get(v["next_machine"], 0) / self.scale if v["next_machine"] is not None else 0,
                queue_work.get(m, 0) / self.scale,
                queue_count.get(m, 0) / jobs.n_machines,
                np.clip(slack / max(ops_left, 1) / longest, -1000, 1000),
                np.clip(atc, -1000, 1000),
                np.clip((int(jobs.due_dates[j]) - now) / max(remaining, 1), -10, 10),
                math.log(max(v["weight"], 1) * mean_p / max(v["p"], 1)),
                min(max(0, slack) / mean_p, 1000),
                *self.context(),
            ]
        return out

    def context(self) -> list[float]:
        """The shop's context columns: jobs and planned work per machine, the share of jobs late,
        their mean critical ratio, the share of machines down, the machine count / 10, how early
        the shop is (1 - jobs arrived so far / 100, at least 0) and whether every job has arrived."""
        jobs, now, n_machines = self.jobs, self.now, self.jobs.n_machines
        active = [j for j in self.slots if j is not None and self.unfinished(j)]
        left = [self.view(j)["left"] for j in active]
        due = [int(jobs.due_dates[j]) for j in active]
        ratios = [float(np.clip((d - now) / max(w, 1), -10, 10)) for d, w in zip(due, left)]
        arrived = sum(int(jobs.release_dates[j]) <= now for j in self.stream)
        return [
            len(active) / n_machines,
            sum(left) / n_machines / self.scale,
            sum(d - now - w < 0 for d, w in zip(due, left)) / max(len(active), 1),
            sum(ratios) / max(len(active), 1),
            sum(self.down(m, now) is not None for m in range(n_machines)) / n_machines,
            n_machines / 10,
            max(0.0, 1.0 - arrived / 100),
            float(arrived == len(self.stream) and not self.s.metadata.get("open_stream")),
        ]


def dynamic_choose(shop: ReferenceDynamicShop, mask: np.ndarray, rule: str, uniform: float) -> int:
    """Twin of ``dynamic_choose``: the rules on planned data at the clock's time, ties to the
    first-arrived job (returns a slot)."""
    allowed = [int(i) for i in np.flatnonzero(mask[: shop.J])]
    if not allowed:
        return -1
    if rule == "random":
        return allowed[int(uniform * len(allowed))]
    arrival = {job: n for n, job in enumerate(shop.stream)}
    queue_work, _ = shop.queues()
    mean_p = shop.mean_allowed_duration(mask)
    views = {i: shop.view(shop.slots[i]) for i in allowed}
    return min(allowed, key=lambda i: (rule_key(rule, views[i], shop.now, mean_p, queue_work), arrival[shop.slots[i]]))


class ReferenceFlexibleShop:
    """Twin of the flexible static shop: (job, machine) decisions, the pair mask and features,
    each job's planned pair under a machine rule, the job features read through it, and the
    lower bound (min over machines of the end + the work after at the shortest times)."""

    PAIR_FEATURES = 3

    def __init__(self, instance: JobShopInstance, J: int, M: int, O: int, placement: str, action_set: str,
                 machine_rule: str = "eet"):  # fmt: skip
        self.instance, self.J, self.M, self.O = instance, J, M, O
        self.placement, self.action_set, self.machine_rule = placement, action_set, machine_rule
        self.table = instance.processing_table()
        self.time_scale = max(1, instance.simple_lower_bound())
        self.duration_scale = max(1, int(self.table.max()))
        self.next_op = [0] * J
        release = instance.release_dates if instance.release_dates is not None else np.zeros(instance.n_jobs, dtype=int)
        self.ready = [int(release[j]) if j < instance.n_jobs else 0 for j in range(J)]
        self.intervals: dict[int, list[tuple[int, int]]] = {m: [] for m in range(M)}
        self.work = [0] * M
        self.start = np.full((J, O), -1, dtype=np.int64)
        self.machine = np.full((J, O), -1, dtype=np.int64)
        self.makespan = 0
        self.bound = self.lower_bound()

    def n_ops(self, j: int) -> int:
        return int(self.instance.n_ops[j]) if j < self.instance.n_jobs else 0

    def unfinished(self) -> list[int]:
        return [j for j in range(self.J) if self.next_op[j] < self.n_ops(j)]

    def alternatives(self, j: int) -> dict[int, int]:
        k = self.next_op[j]
        return {m: int(d) for m, d in enumerate(self.table[j, k]) if d >= 0}

    def shortest(self, j: int, k: int) -> int:
        return int(self.instance.durations[j, k])

    def est(self, j: int, machine: int) -> int:
        duration, busy, ready = self.alternatives(j)[machine], self.intervals[machine], self.ready[j]
        if self.placement == "append":
            return max([ready] + [e for _, e in busy])
        for t in sorted({ready} | {e for _, e in busy if e >= ready}):
            if all(not (t < e and s < t + duration) for s, e in busy):
                return t
        raise AssertionError("unreachable")

    def remaining(self, j: int) -> int:
        return sum(self.shortest(j, k) for k in range(self.next_op[j], self.n_ops(j)))

    def lower_bound(self) -> int:
        bound = self.makespan
        for j in self.unfinished():
            ends = [self.est(j, m) + d for m, d in self.alternatives(j).items()]
            bound = max(bound, min(ends) + self.remaining(j) - self.shortest(j, self.next_op[j]))
        return max(bound, max((self.ready[j] for j in range(self.J) if self.n_ops(j)), default=0))

    def pairs(self) -> dict[tuple[int, int], int]:
        """Every eligible (job, machine) pair of the unfinished jobs and its earliest start."""
        return {(j, m): self.est(j, m) for j in self.unfinished() for m in self.alternatives(j)}

    def pair_mask(self) -> np.ndarray:
        mask = np.zeros(self.J * self.M, dtype=np.int8)
        pairs = self.pairs()
        if not pairs:
            return mask
        if self.action_set == "any":
            allowed = list(pairs)
        elif self.action_set == "non_delay":
            now = min(pairs.values())
            allowed = [pair for pair, t in pairs.items() if t == now]
        else:
            end = {(j, m): t + self.alternatives(j)[m] for (j, m), t in pairs.items()}
            best = min(pairs, key=lambda pair: (end[pair], pair[0] * self.M + pair[1]))
            allowed = [(j, m) for (j, m), t in pairs.items() if m == best[1] and (t < end[best] or (j, m) == best)]
        for j, m in allowed:
            mask[j * self.M + m] = 1
        return mask

    def planned(self, mask: np.ndarray) -> dict[int, int]:
        """Each unfinished job's machine under the machine rule, among its allowed pairs if any."""
        chosen = {}
        for j in self.unfinished():
            options = self.alternatives(j)
            allowed = [m for m in options if mask[j * self.M + m]] or list(options)

            def key(m: int, j: int = j, options: dict = options) -> tuple:
                t, d = self.est(j, m), options[m]
                return {"eet": (t + d, d), "spt": (d, t + d), "ll": (self.work[m], t + d), "est": (t, d)}[
                    self.machine_rule
                ] + (m,)

            chosen[j] = min(allowed, key=key)
        return chosen

    def features(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(job features through the planned pairs, pair features)."""
        jobs_out = np.zeros((self.J, 10))
        pairs_out = np.zeros((self.J, self.M, self.PAIR_FEATURES))
        pairs = self.pairs()
        now = min(pairs.values(), default=self.makespan)
        planned = self.planned(mask)
        end_of = {m: max([0] + [e for _, e in self.intervals[m]]) for m in range(self.M)}
        shortest_left = dict.fromkeys(range(self.M), 0)
        for i in range(self.instance.n_jobs):
            for k in range(self.next_op[i], self.n_ops(i)):
                shortest_left[int(self.instance.machines[i, k])] += self.shortest(i, k)
        for j in range(self.J):
            if self.n_ops(j) == 0:
                continue
            if j not in planned:
                jobs_out[j, 9] = 1
                continue
            m = planned[j]
            job_allowed = any(mask[j * self.M : (j + 1) * self.M])
            waiting = sum(1 for i in planned.values() if i == m)
            jobs_out[j] = [
                job_allowed,
                self.alternatives(j)[m] / self.duration_scale,
                self.remaining(j) / self.time_scale,
                (self.n_ops(j) - self.next_op[j]) / self.O,
                (self.est(j, m) - now) / self.time_scale,
                (self.ready[j] - now) / self.time_scale,
                shortest_left[m] / self.time_scale,
                (end_of[m] - now) / self.time_scale,
                waiting / max(self.instance.n_jobs, 1),
                0,
            ]
            for machine, d in self.alternatives(j).items():
                pairs_out[j, machine] = [
                    d / self.duration_scale,
                    (end_of[machine] - now) / self.time_scale,
                    (pairs[j, machine] + d - now) / self.time_scale,
                ]
        return np.clip(jobs_out, -1000, 1000), np.clip(pairs_out, -1000, 1000)

    def step(self, action: int, mask: np.ndarray) -> tuple[float, bool, bool]:
        """A pair action ``job * M + machine``; outside the mask: the lowest allowed pair."""
        invalid = not (0 <= action < self.J * self.M and mask[action])
        if invalid:
            allowed = np.flatnonzero(mask)
            if allowed.size == 0:
                return 0.0, True, True
            action = int(allowed[0])
        j, m = divmod(action, self.M)
        k, d = self.next_op[j], self.alternatives(j)[m]
        start = self.est(j, m)
        self.start[j, k], self.machine[j, k] = start, m
        self.intervals[m].append((start, start + d))
        self.work[m] += d
        self.ready[j] = start + d
        self.next_op[j] += 1
        self.makespan = max(self.makespan, start + d)
        before, self.bound = self.bound, self.lower_bound()
        return (before - self.bound) / self.time_scale, not self.unfinished(), invalid


def random_flexible_instance(rng: np.random.Generator, max_jobs: int = 6, max_machines: int = 4, max_ops: int = 5):
    """Small flexible instances: 1 to all alternatives, zero durations, uneven jobs, release dates."""
    n_jobs = int(rng.integers(1, max_jobs + 1))
    n_machines = int(rng.integers(1, max_machines + 1))
    jobs = []
    for _ in range(n_jobs):
        ops = []
        for _ in range(int(rng.integers(1, max_ops + 1))):
            machines = rng.choice(n_machines, size=int(rng.integers(1, n_machines + 1)), replace=False)
            ops.append([(int(m), int(rng.integers(0, 10)) * int(rng.random() > 0.1)) for m in machines])
        jobs.append(ops)
    release = rng.integers(0, 15, size=n_jobs) if rng.random() < 0.4 else None
    return JobShopInstance.from_alternatives(jobs, n_machines=n_machines, release_dates=release, name="random-flexible")


class ReferenceFlexibleDynamicShop(ReferenceDynamicShop):
    """Twin of the flexible dynamic kernels: a (slot, machine) pair can start now when the job's
    previous op is done and the machine can run its next op, is idle and up. Each job's planned
    machine: the machine rule's choice among its startable machines, else the one where the op
    would end first given when the job and the machine are expected free (and a machine down
    until its repair). Job-level rows read the planned pair; work left counts shortest times."""

    def __init__(self, scenario, max_jobs: int, max_ops: int, max_machines: int, objective: str,
                 allow_wait: bool = False, machine_rule: str = "eet"):  # fmt: skip
        super().__init__(scenario, max_jobs, max_ops, objective, allow_wait)
        self.M, self.machine_rule = max_machines, machine_rule
        self.table = scenario.jobs.processing_table()
        self.real = scenario.realized_durations if scenario.is_flexible else np.where(
            self.table >= 0, scenario.realized_durations[:, :, None], -1)  # fmt: skip
        self.work = [0] * self.jobs.n_machines
        self.used = np.full(self.start.shape, -1, dtype=np.int64)

    def alternatives(self, j: int) -> dict[int, int]:
        return {m: int(d) for m, d in enumerate(self.table[j, self.next_op[j]]) if d >= 0}

    def startable_machines(self, j: int) -> list[int]:
        now = self.now
        if self.ready[j] > now:
            return []
        return [m for m in self.alternatives(j) if self.busy_until[m] <= now and self.down(m, now) is None]

    def pair_start(self, j: int, m: int) -> int:
        if m in self.startable_machines(j):
            return self.now
        free = max(self.now, self.expected_job[j], self.expected_machine[m])
        window = self.down(m, self.now)
        return max(free, window[1]) if window else free

    def machine_of(self, j: int) -> int:
        options = self.alternatives(j)
        choices = self.startable_machines(j) or list(options)

        def key(m: int) -> tuple:
            t, d = self.pair_start(j, m), options[m]
            return {"eet": (t + d, d), "spt": (d, t + d), "ll": (self.work[m], t + d), "est": (t, d)}[
                self.machine_rule
            ] + (m,)

        return min(choices, key=key)

    def startable(self, slot: int) -> bool:
        j = self.slots[slot] if slot < self.J else None
        return j is not None and self.unfinished(j) and bool(self.startable_machines(j))

    def pair_mask(self) -> np.ndarray:
        mask = np.zeros(self.J * self.M + self.allow_wait, dtype=np.int8)
        for slot, j in enumerate(self.slots):
            if j is not None and self.unfinished(j):
                for m in self.startable_machines(j):
                    mask[slot * self.M + m] = 1
        if self.allow_wait:
            mask[-1] = self.mask()[-1]
        return mask

    def pair_features(self) -> np.ndarray:
        out = np.zeros((self.J, self.M, 3))
        longest = max(1, int(self.table.max()))
        for slot, j in enumerate(self.slots):
            if j is None or not self.unfinished(j):
                continue
            for m, d in self.alternatives(j).items():
                out[slot, m] = [
                    d / longest,
                    min(max(0, self.expected_machine[m] - self.now) / self.scale, 1000),
                    min((self.pair_start(j, m) + d - self.now) / self.scale, 1000),
                ]
        return out

    def run(self, slot: int, machine: int | None = None) -> None:
        j = self.slots[slot]
        m = self.machine_of(j) if machine is None else machine
        k = self.next_op[j]
        work, planned = int(self.real[j, k, m]), int(self.table[j, k, m])
        t, done = self.now, 0
        while done < work:
            if self.down(m, t) is not None:
                if self.s.interruption == "restart":
                    self.busy_until[m] = max(self.busy_until[m], t)
                    self.ready[j] = t
                    self.wasted += t - self.now
                    break
            else:
                done += 1
            t += 1
        else:
            self.start[j, k], self.end[j, k], self.used[j, k] = self.now, t, m
            self.busy_until[m] = max(self.busy_until[m], t)
            self.ready[j] = t
            self.next_op[j] += 1
            self.work[m] += planned
        self.expected_job[j] = self.expected_machine[m] = self.now + planned

    def view(self, j: int) -> dict:
        view = super().view(j)
        m = self.machine_of(j)
        return view | {"machine": m, "p": self.alternatives(j)[m]}

    def queues(self) -> tuple[dict, dict]:
        work: dict = {}
        count: dict = {}
        for j in self.slots:
            if j is not None and self.unfinished(j) and self.ready[j] <= self.now:
                m = self.machine_of(j)
                work[m] = work.get(m, 0) + self.alternatives(j)[m]
                count[m] = count.get(m, 0) + 1
        return work, count

    def mean_allowed_duration(self, mask: np.ndarray) -> float:
        allowed = [self.slots[i] for i in np.flatnonzero(mask[: self.J])]
        if not allowed:
            return 1.0
        return sum(max(self.alternatives(j)[self.machine_of(j)], 1) for j in allowed) / len(allowed)

    def features(self, mask: np.ndarray) -> np.ndarray:
        out = super().features(mask)
        longest_planned, longest = max(1, int(self.table.max())), max(1, int(self.jobs.durations.max()))
        for column in (1, 12, 16):  # durations: the kernels divide by the longest alternative
            out[:, column] *= longest / longest_planned
        return out
