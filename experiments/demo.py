"""``sched-env demo``: the whole story on built-in defaults, in well under a minute on 2 cores.

1. Taillard's ta01 (15x15) scheduled by a dispatching rule, by the shipped learned policy
   (greedy and best of 128, through ONNX Runtime: no torch needed) and by CP-SAT with a short limit (3 s).
2. A dynamic shop (10 machines, 8 jobs at the start, 6 arriving, 10 % duration noise, one
   machine breaking down mid-run) run to its end four ways: ATC (the best instant rule), the
   dynamic policy deciding at every epoch, and replanning at every arrival, breakdown and repair
   with the best of 16 sampled plans of that policy and with the hybrid (policy plans
   warm-starting CP-SAT for 1 s).
3. A comparison table, the response times, Gantt charts of the plan before and after the
   breakdown, and ``report.md``, all in one folder named at the end.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import instances
from instances import SchedEnvError

SAMPLED_REPLANNER = "policy:16"  # the dynamic dispatcher, sampled 16 times per replan
BREAKDOWN = (3, 250, 450)  # machine, start, end: machine 3 fails at t=250 and is repaired at t=450


def demo_scenario():
    """The demo's dynamic shop: a seeded scenario plus one breakdown that surely happens."""
    from sched_env.events import BREAKDOWN as KIND
    from sched_env.events import Scenario, generate_scenario

    base = generate_scenario(10, initial_jobs=8, arriving_jobs=6, utilisation=0.9, noise=0.1, seed=7, name="demo")
    machine, start, end = BREAKDOWN
    downtimes = np.array([[machine, start, end, KIND]], dtype=np.int64)
    return Scenario(
        base.jobs,
        realized_durations=base.realized_durations,
        downtimes=downtimes,
        interruption=base.interruption,
        name="demo-shop",
    )


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _policy_available() -> bool:
    try:
        from agents.loading import load_policy

        load_policy(kind="static")
        return True
    except (ImportError, SchedEnvError):
        return False


def run_demo(out: Path, instance_name: str = "ta01", time_limit: float = 3.0, method: str = "hybrid:1",
             directory: str | None = None) -> int:  # fmt: skip
    started = time.perf_counter()
    print("sched-env demo: ta01 by a rule, the learned policy and CP-SAT; then a breakdown rescheduled", flush=True)
    from baselines import tabu  # noqa: F401  (registers the "tabu" kernel group)
    from sched_env.warmup import compile_beside, warm_up

    out.mkdir(parents=True, exist_ok=True)
    # A fresh machine compiles three kernel groups: the dynamic shop's compiles in a helper while this
    # process compiles the static shop's and prints the first table; the tabu search's (the hybrid's)
    # follows in a helper; the dynamic part waits for both, so that no plan's time pays for compiling.
    compile_beside("dynamic")
    warm_up("static", say=lambda line: print(line, flush=True))
    compile_beside("tabu")
    has_cp, has_policy = _have("ortools"), _policy_available()
    instance = instances.load(instance_name, directory=directory)
    report = [f"# sched-env demo ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    charts = _static_part(instance, time_limit, has_cp, has_policy, out, report)
    warm_up("dynamic", "tabu", say=lambda line: print(f"\n{line}", flush=True))
    charts += _dynamic_part(method, has_cp, has_policy, out, report)
    charts = [c for c in charts if c is not None]
    report += ["## Files", ""] + [f"* `{Path(c).name}`" for c in charts]
    report += ["* `dynamic_schedule.json`, `dynamic_scenario.json` (redraw: `sched-env gantt dynamic_schedule.json"
               " --scenario dynamic_scenario.json --out chart.png`)", ""]  # fmt: skip
    report.append(f"Total demo time: {time.perf_counter() - started:.0f} s.")
    (out / "report.md").write_text("\n".join(report) + "\n")
    print(f"\nwrote the report, {len(charts)} Gantt charts and the schedules to {out.resolve()}/"
          f" ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    return 0


def _static_part(instance, time_limit: float, has_cp: bool, has_policy: bool, out: Path, report: list) -> list:
    """ta01 by a rule, the policy (greedy, best of 128) and CP-SAT: the table, a text and a PNG chart."""
    from baselines import deciders
    from sched_env.render import gantt_text

    best = instances.best_known(instance.name)
    methods = (
        ["mwkr"] + (["policy", "policy:128"] if has_policy else []) + ([f"cpsat:{time_limit:g}"] if has_cp else [])
    )
    print(f"\n{instance.name} ({instance.n_jobs} jobs x {instance.n_machines} machines, best known makespan {best}):")
    header = ("method", "makespan", "above best known", "seconds")
    rows, results = [], {}
    widths = [max(len(header[0]), *map(len, methods)), *map(len, header[1:])]  # known before the rows come
    print("\n".join(_table_lines(header, [], widths)), flush=True)  # the rows follow as they come
    for spec in methods:
        result = deciders.solve(instance, spec)
        results[spec] = result
        gap = result.gap_to(best)
        rows.append(
            (spec, str(result.objective), "" if gap is None else f"{100 * gap:.1f} %", f"{result.wall_time_s:.2f}")
        )
        print(_table_lines(header, rows[-1:], widths)[-1], flush=True)
    table = _table(header, rows)
    report += [f"## {instance.name}: makespan by method", "", table, ""]
    if not has_policy:
        print("(no learned policy: pip install 'sched-env[policy]' for the shipped ONNX models)")
    if not has_cp:
        print("(no CP-SAT: pip install 'sched-env[cp]')")
    best_static = min(results.values(), key=lambda r: r.objective)
    best_static.schedule.save(out / f"{instance.name}_schedule.json")
    print(gantt_text(best_static.schedule, instance, width=100, color=False))
    return [_chart(best_static.schedule, out / f"{instance.name}_gantt.png", instance,
                   f"{instance.name}: {best_static.method}, makespan {best_static.objective}")]  # fmt: skip


def _dynamic_part(method: str, has_cp: bool, has_policy: bool, out: Path, report: list) -> list:
    """The dynamic shop four ways (ATC, the policy at every epoch, replanning with its samples and with
    the hybrid); latency; charts."""
    from baselines import deciders
    from baselines.replan import Replanner
    from sched_env.dynamic import DynamicJobShopEnv

    scenario = demo_scenario()
    machine, down_at, up_at = BREAKDOWN
    arrivals = int((scenario.jobs.release_dates > 0).sum())
    print(f"\ndynamic shop: {scenario.jobs.n_jobs} jobs ({arrivals} arriving), {scenario.n_machines} machines,"
          f" machine {machine} down from t={down_at} to t={up_at}; objective: total weighted tardiness")  # fmt: skip
    instant = ["atc"] + (["policy"] if has_policy else [])
    dynamic_rows = [(f"{spec} (decides at every epoch)", deciders.dispatch_online(deciders.make(spec), [scenario])[0])
                    for spec in instant]  # fmt: skip
    if has_policy:  # the dispatcher as a replanner: the best of 16 sampled plans at every event
        sampled = Replanner(SAMPLED_REPLANNER, execution="sequence").run(DynamicJobShopEnv(scenario, allow_wait=True))
        dynamic_rows.append((f"{SAMPLED_REPLANNER} replanning at every event (machine sequence kept)", sampled))
    rescheduler = method if (has_cp and has_policy) or not method.startswith("hybrid") else instant[-1]
    replanner = Replanner(rescheduler, execution="exact")
    replanned = replanner.run(DynamicJobShopEnv(scenario, allow_wait=True))
    dynamic_rows.append((f"{rescheduler} replanning at every event (exact execution)", replanned))
    rows = [(label, str(r.params["total_weighted_tardiness"]), str(r.params["makespan"]),
             f"{r.params['mean_flow_time']:.0f}") for label, r in dynamic_rows]  # fmt: skip
    table = _table(("method", "weighted tardiness", "makespan", "mean flow time"), rows)
    print(table)
    report += ["## Dynamic shop: one breakdown, arrivals, noisy durations", "", table, ""]
    times = np.array(replanner.response_times) * 1e3
    latency = (f"{rescheduler}: {len(times)} plans (one per arrival, breakdown, repair); response time p50"
               f" {np.percentile(times, 50):.0f} ms, p99 {np.percentile(times, 99):.0f} ms, max {times.max():.0f} ms")  # fmt: skip
    decision = _decision_latency() if has_policy else None
    print("\nlatency: " + latency + (f"\nlatency: {decision}" if decision else ""))
    report += ["## Latency", "", f"* {latency}"] + ([f"* {decision}"] if decision else []) + [""]
    replanned.schedule.save(out / "dynamic_schedule.json")
    scenario.save(out / "dynamic_scenario.json")
    return _breakdown_charts(replanner.plans, scenario, out)


def _breakdown_charts(plans, scenario, out: Path) -> list:
    """The plan in force just before the breakdown and the first one after it, with the downtime and "now"."""
    machine, down_at, _up_at = BREAKDOWN
    before = [p for p in plans if p[0] < down_at][-1:]
    after = [p for p in plans if p[0] >= down_at][:1]
    charts = []
    for label, chosen in (("before", before), ("after", after)):
        for t, plan, ids in chosen:
            schedule = _in_scenario_numbering(plan, ids, scenario)
            title = f"plan at t={t} ({label} machine {machine} breaks down at t={down_at})"
            known = scenario.downtimes[scenario.downtimes[:, 1] <= t]  # what the planner knew at t
            charts.append(_chart(schedule, out / f"dynamic_plan_{label}_breakdown.png", scenario.jobs, title,
                                 downtimes=known, now=t))  # fmt: skip
    return charts


def _decision_latency() -> str:
    """p50 / p99 of one policy decision (ONNX or torch, batch 1) over the states of a ta01 rollout."""
    from agents.loading import load_policy
    from agents.rollouts import static_batch

    policy = load_policy(kind="static")
    instance = instances.load("ta01")
    batch = static_batch(policy, instance, 1)
    obs, _ = batch.reset()
    times = []
    for _ in range(instance.n_operations):
        t0 = time.perf_counter()
        logits = policy.score(obs["jobs"], obs["action_mask"])
        times.append(time.perf_counter() - t0)
        obs, *_ = batch.step(logits.argmax(-1))
    ms = np.array(times) * 1e3
    return (f"policy ({policy.backend}) one decision on ta01: p50 {np.percentile(ms, 50):.2f} ms,"
            f" p99 {np.percentile(ms, 99):.2f} ms")  # fmt: skip


def _in_scenario_numbering(plan, ids, scenario):
    from sched_env.schedule import Schedule

    jobs = np.asarray(ids)[plan.job]
    return Schedule(jobs, plan.op, plan.machine, plan.start, plan.end, instance_name=scenario.name)


def _chart(schedule, path: Path, instance, title: str, **marks):
    try:
        from sched_env.render import save_gantt

        return save_gantt(schedule, path, instance, title=title, **marks)
    except (SchedEnvError, ImportError):  # matplotlib missing: the text chart and the tables stand
        return None


def _table(header, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return "\n".join(_table_lines(header, rows, widths))


def _table_lines(header, rows, widths) -> list[str]:
    """A Markdown table's lines with these column widths (rows may be printed one by one)."""
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]  # fmt: skip
    return lines + ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in rows]
