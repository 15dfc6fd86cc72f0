"""``sched-env replay``: re-run a shop's recorded history under other dispatchers.

The history (``service.history``) gives the work orders that arrived, when the equipment broke
down and for how long, and how long each operation really took. Each method dispatches that
same history from its first arrival to its last completion (``baselines.deciders.dispatch_online``:
at every moment a machine is free, the method picks what starts), and the objectives are set side
by side with the recorded ones. The row ``recorded`` carries out the decisions the shop actually
made, at their recorded times: it must reproduce the recorded history exactly, and a replay
that does not is refused (the history would then not be what the simulator runs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from instances import SchedEnvError


def completions(jobs, schedule) -> np.ndarray:
    """When each job's last operation ended."""
    completion = np.zeros(jobs.n_jobs, dtype=np.int64)
    np.maximum.at(completion, schedule.job, schedule.end)
    return completion


def max_in_shop(scenario, schedule) -> int:
    """The most work orders that were in the shop (released, unfinished) at once."""
    completion = completions(scenario.jobs, schedule)
    times = np.concatenate([scenario.jobs.release_dates, completion])
    steps = np.concatenate([np.ones(scenario.jobs.n_jobs), -np.ones(scenario.jobs.n_jobs)])
    order = np.lexsort((steps, times))  # a completion before a release at the same time
    return int(np.cumsum(steps[order]).max())


def replay_recorded(scenario, recorded, window: int):
    """The recorded decisions carried out in the simulator, each operation started at its recorded
    time on its recorded equipment; returns the simulated schedule (real times)."""
    from sched_env.dynamic import DynamicJobShopEnv

    env = DynamicJobShopEnv(scenario, allow_wait=True, max_jobs=window, strict=True)
    planned = {(int(j), int(k)): (int(m), int(s))
               for j, k, m, s in zip(recorded.job, recorded.op, recorded.machine, recorded.start)}  # fmt: skip
    starts = np.sort(recorded.start)
    n_machines = env.layout.M
    obs, _ = env.reset()
    done = False
    while not done:
        now = env.time
        action = None
        for slot, (job, op) in enumerate(zip(env.slot_jobs().tolist(), env.next_operations().tolist())):
            if job >= 0 and planned.get((job, op), (None, now + 1))[1] <= now:  # due now (or cut, restarting)
                machine = planned[(job, op)][0]
                action = slot * n_machines + machine if env.pair_actions else slot
                break
        if action is not None:
            if not obs["action_mask"][action]:
                raise SchedEnvError(f"replay diverged at time {now}: work order {job} operation {op} started then on"
                                    f" machine {machine}, which the simulator does not have free; the log and the"
                                    " simulator disagree")  # fmt: skip
            obs, _, done, _, _ = env.step(action)
            continue
        later = starts[np.searchsorted(starts, now, side="right") :]
        obs, _, done, _, _ = env.wait(int(later[0]) if len(later) else None)
    return env.schedule()


def same_history(a, b) -> bool:
    ia, ib = np.lexsort((a.op, a.job)), np.lexsort((b.op, b.job))
    return len(a.job) == len(b.job) and all(
        np.array_equal(getattr(a, c)[ia], getattr(b, c)[ib]) for c in ("job", "op", "machine", "start", "end")
    )


def metrics(scenario, schedule) -> dict[str, float]:
    from sched_env.schedule import objectives

    jobs = scenario.jobs
    values = objectives(jobs, schedule)
    late = completions(jobs, schedule) > jobs.due_dates
    return {
        "total_weighted_tardiness": values["total_weighted_tardiness"],
        "weighted_tardiness_mean": round(values["total_weighted_tardiness"] / jobs.n_jobs, 2),
        "mean_flow_time": round(values["mean_flow_time"], 1), "tardy_share": round(float(late.mean()), 4),
        "makespan": values["makespan"],
    }  # fmt: skip


def replay(db: str | Path, shop: str, methods: list[str]) -> dict[str, Any]:
    """The recorded history of ``shop`` and each method's replay of it (see the module docstring)."""
    from baselines import deciders
    from service.history import read_history

    history = read_history(db, shop)
    scenario, recorded, _ = history.scenario()
    window = max(32, max_in_shop(scenario, recorded) + 1)
    started = time.perf_counter()
    again = replay_recorded(scenario, recorded, window)
    if not same_history(again, recorded):
        raise SchedEnvError(f"shop {shop!r}: replaying its recorded decisions does not reproduce its history;"
                            " the log and the simulator disagree (please report it with the database)")  # fmt: skip
    rows = [{"method": "recorded", **metrics(scenario, recorded), "seconds": round(time.perf_counter() - started, 2)}]
    wide = min(scenario.jobs.n_jobs, max(320, 4 * window))  # other dispatchers may hold more work at once
    for spec in methods:
        decider = deciders.make(spec)
        started = time.perf_counter()
        result = deciders.dispatch_online(decider, [scenario], window=wide)[0]
        rows.append({"method": spec, **metrics(scenario, result.schedule),
                     "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
    return {
        "shop": shop, "events": history.n_events, "work_orders": scenario.jobs.n_jobs,
        "left_out": len(history.orders) - scenario.jobs.n_jobs, "operations": len(recorded.job),
        "breakdowns": int(len(scenario.downtimes)), "flexible": bool(scenario.is_flexible), "rows": rows,
    }  # fmt: skip


def markdown(result: dict[str, Any], command: str) -> str:
    base = result["rows"][0]["total_weighted_tardiness"] or 1
    lines = [
        f"# Replay of shop {result['shop']}", "",
        f"Command: `{command}`", "",
        f"{result['events']:,} events: {result['work_orders']:,} work orders that finished ({result['left_out']}"
        f" cancelled or unfinished left out), {result['operations']:,} operations, {result['breakdowns']:,} downtimes."
        " Every method dispatches the same arrivals, breakdowns and real durations; `recorded` carries out the"
        " shop's own decisions and reproduces its history exactly (checked).", "",
        "| method | total weighted tardiness | / recorded | per order | mean flow time | % late | makespan | s |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    best = min(r["total_weighted_tardiness"] for r in result["rows"])
    for r in result["rows"]:
        wt = f"{r['total_weighted_tardiness']:,}"
        lines.append(f"| {r['method']} | {f'**{wt}**' if r['total_weighted_tardiness'] == best else wt} |"
                     f" {r['total_weighted_tardiness'] / base:.3f} | {r['weighted_tardiness_mean']} |"
                     f" {r['mean_flow_time']} | {100 * r['tardy_share']:.1f} | {r['makespan']:,} | {r['seconds']} |")  # fmt: skip
    return "\n".join(lines) + "\n"
