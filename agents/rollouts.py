"""Roll a loaded policy out in the batched envs: greedy, or the best of K samples stepped
together, on a static instance or a running shop's :class:`ShopState`, within a deadline.

    from agents.loading import load_policy
    from agents.rollouts import solve_with_policy
    result = solve_with_policy(load_policy(), instances.load("ta01"), samples=128)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.loading import MASKED_LOGIT, LoadedPolicy, Scorer
from baselines.deciders import default_objective, is_flexible
from instances import JobShopInstance, SchedEnvError
from sched_env.schedule import Schedule, SolveResult, objective_value, validate_schedule


@dataclass
class Trajectory:
    """The informative decisions of one episode (more than one allowed action): observations
    (with the pair features of a pair-action env) and the actions taken, for imitation."""

    jobs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    pairs: np.ndarray | None = None


@dataclass
class Rollouts:
    """K episodes of one problem: each sample's objective (and the tie-breaker), the best
    sample, its schedule and final values, and its trajectory when recorded."""

    objectives: np.ndarray
    best: int
    schedule: Schedule
    values: dict[str, float]
    decisions: int
    trajectory: Trajectory | None = None


class DeadlineError(Exception):
    """Sampling stopped at its deadline; the caller keeps what it had."""


def choose_actions(logits: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Greedy (``rng`` None) or sampled actions from masked logits; sampling by the Gumbel-max
    trick, so masked actions (logit -1e8) are never drawn."""
    if rng is None:
        return logits.argmax(-1)
    noise = -np.log(-np.log(rng.random(logits.shape, dtype=np.float64) + 1e-300) + 1e-300)
    return (logits + noise).argmax(-1)


def masked_scores(
    score: Scorer, jobs: np.ndarray, masks: np.ndarray, skip: np.ndarray | None = None, pairs: np.ndarray | None = None
) -> np.ndarray:
    """Logits of every shop, the network asked only about shops with a real choice and not in
    ``skip`` (the others get logit 0 for their allowed actions, the masked logit elsewhere);
    ``pairs``: the pair features, for a policy that scores (job, machine) pairs."""
    choice = masks.sum(-1) > 1
    if skip is not None:
        choice &= ~skip
    if choice.all():
        return score(jobs, masks) if pairs is None else score(jobs, masks, pairs)
    logits = np.where(masks > 0, 0.0, MASKED_LOGIT).astype(np.float32)
    if choice.any():
        extra = () if pairs is None else (pairs[choice],)
        logits[choice] = score(jobs[choice], masks[choice], *extra)
    return logits


def run_episodes(
    batch,
    score: Scorer,
    keys: Sequence[str],
    *,
    greedy: bool = False,
    greedy_first: bool = False,
    rule: int | None = None,
    seed: int | tuple | None = 0,
    record: bool = False,
    deadline: float | None = None,
    options: dict[str, Any] | None = None,
) -> Rollouts:
    """Run one episode in every shop of ``batch`` (a batched env with a fixed problem per shop)
    and keep the best by ``keys`` (final-info keys, compared in order: objective, tie-breaker).
    Shop 0 acts greedily with ``greedy_first``; the last shop follows the dispatching rule with
    kernel id ``rule`` (a rule in the pool of candidates, for self-labeling)."""
    rng = None if greedy else np.random.default_rng(seed)
    obs, _ = batch.reset(options=options)
    N = batch.num_envs
    finished = np.zeros(N, dtype=bool)
    values = np.full((N, len(keys)), np.inf)
    best, best_schedule, steps = -1, None, 0
    records: list[tuple] = []
    dims = batch.layout.dims
    limit = 8 * max(dims["J"], getattr(batch, "max_stream", 0)) * max(dims["O"], 1) + 1000
    while not finished.all():
        if deadline is not None and time.perf_counter() > deadline:
            raise DeadlineError
        pairs = obs.get("pairs")
        logits = masked_scores(score, obs["jobs"], obs["action_mask"], finished, pairs)
        actions = choose_actions(logits, rng)
        if greedy_first:
            actions[0] = int(logits[0].argmax())
        if rule is not None:
            actions[-1] = batch.rule_choices(rule)[-1]
        if record:
            records.append((obs["jobs"], obs["action_mask"], actions.copy(), ~finished, pairs))
        obs, _, dones, _, info = batch.step(actions)
        for i in np.flatnonzero(dones & ~finished).tolist():
            finished[i] = True
            values[i] = [float(info["final_info"][k][i]) for k in keys]
            if best < 0 or tuple(values[i]) < tuple(values[best]):
                best, best_schedule = i, batch.final_schedule(i)
        steps += 1
        if steps > limit:  # a policy cannot loop (every step starts an operation), a bug could
            raise SchedEnvError(f"episodes did not end within {limit} decisions")
    trajectory = _trajectory(records, best, obs) if record else None
    return Rollouts(values[:, 0], best, best_schedule, dict(zip(keys, values[best].tolist())), steps, trajectory)


def _trajectory(records: list[tuple], best: int, obs: dict[str, np.ndarray]) -> Trajectory:
    """Shop ``best``'s informative decisions out of the per-step records of :func:`run_episodes`."""
    keep = [t for t, (_, m, _, alive, _) in enumerate(records) if alive[best] and m[best].sum() > 1]

    def stacked(column: int, like: np.ndarray) -> np.ndarray:
        if not keep:
            return np.zeros((0, *like.shape[1:]), like.dtype)
        return np.stack([records[t][column][best] for t in keep])

    pairs = stacked(4, obs["pairs"]) if "pairs" in obs else None
    actions = np.array([records[t][2][best] for t in keep], dtype=np.int64)
    return Trajectory(stacked(0, obs["jobs"]), stacked(1, obs["action_mask"]), actions, pairs)


def require_pairs(policy: LoadedPolicy, problem, method: str) -> None:
    """Refuse a flexible problem (an instance or a running shop) to a policy that scores jobs only."""
    if is_flexible(problem) and not policy.pairs:
        what = "this instance" if isinstance(problem, JobShopInstance) else "this running shop"
        raise SchedEnvError(
            f"{method}: {policy.name} chooses jobs only, and {what} is flexible (each operation needs its machine"
            " chosen): use a pair policy (policy@flexible plans flexible instances), or hybrid:SECONDS, tabu:SECONDS,"
            " cpsat:SECONDS or a rule such as mwkr+eet"
        )


def static_batch(policy: LoadedPolicy, instance: JobShopInstance, samples: int):
    """A batched env of ``samples`` copies of ``instance`` under the policy's env options; a pair
    policy gets (job, machine) actions, on a classic instance too."""
    from sched_env.vector import BatchJobShopEnv

    options = {k: v for k, v in policy.env_options.items() if k in ("placement", "action_set")}
    return BatchJobShopEnv(samples, instance=instance, pair_actions=policy.pairs, **options)


def dynamic_batch(policy: LoadedPolicy, scenario, samples: int, objective: str, **options: Any):
    """A batched dynamic env of ``samples`` copies of ``scenario``, with the wait action when the policy has one."""
    from sched_env.dynamic import BatchDynamicJobShopEnv

    options.setdefault("allow_wait", policy.waits)
    return BatchDynamicJobShopEnv(samples, scenario, objective=objective, **options)


#: Most sampled episodes stepped together: bounds one step's cost, so a deadline is met within a step.
SAMPLE_CHUNK = 128


def _sample(make_batch: Callable[[int], Any], policy: LoadedPolicy, samples: int, keys, seed: int,
            deadline: float | None, greedy_deadline: float | None = None) -> tuple[Rollouts, int]:  # fmt: skip
    """The greedy episode first (an answer in milliseconds), then ``samples - 1`` sampled ones in
    chunks stepped together, while the deadline allows; the best of all. Under a deadline the
    chunks start small and double, each only if its measured cost says it can finish in time.
    Returns the best and how many episodes it covers (a chunk cut by the deadline does not count).
    ``greedy_deadline``: the greedy episode must end by then too (else :class:`DeadlineError`)."""
    started = time.perf_counter()
    best = run_episodes(make_batch(1), policy.score, keys, greedy=True, deadline=greedy_deadline)
    per_episode = time.perf_counter() - started  # an upper bound: batching shares the per-step costs
    covered, left, chunk_index = 1, samples - 1, 0
    size = min(left, SAMPLE_CHUNK if deadline is None else 8)
    while left > 0:
        if deadline is not None:
            room = deadline - time.perf_counter()
            while size > 1 and size * per_episode > room:
                size //= 2
            if size * per_episode > room:
                break
        chunk_started = time.perf_counter()
        try:
            run = run_episodes(make_batch(size), policy.score, keys, seed=(seed, chunk_index), deadline=deadline)
        except DeadlineError:
            break
        per_episode = (time.perf_counter() - chunk_started) / size
        if tuple(run.values[k] for k in keys) < tuple(best.values[k] for k in keys):
            best = run
        covered, left, chunk_index = covered + size, left - size, chunk_index + 1
        size = min(left, SAMPLE_CHUNK, 2 * size)
    return best, covered


def solve_with_policy(
    policy: LoadedPolicy,
    problem,
    *,
    samples: int = 1,
    seed: int = 0,
    budget_s: float | None = None,
    objective: str | None = None,
    method: str | None = None,
    greedy_budget_s: float | None = None,
) -> SolveResult:
    """The policy's plan of a :class:`JobShopInstance` (makespan) or a running shop's
    :class:`ShopState` (the rest of the work; done and running work untouched): greedy, or the
    best of ``samples`` (the greedy plan included). With a budget, sampling stops at 90 % of it
    and the greedy plan stands; ``greedy_budget_s``: even the greedy plan must come within it,
    else :class:`DeadlineError` (for callers that hold a cheaper plan already)."""
    from sched_env.snapshot import ShopState

    started = time.perf_counter()
    deadline = None if budget_s is None else started + 0.9 * budget_s
    strict = None if greedy_budget_s is None else started + greedy_budget_s
    method = method or ("policy" if samples == 1 else f"policy:{samples}")
    if samples < 1:
        raise SchedEnvError(f"samples must be >= 1, got {samples}")
    if isinstance(problem, ShopState):
        return _solve_state(policy, problem, samples, seed, deadline, objective, method, started, strict)
    if not isinstance(problem, JobShopInstance):
        raise SchedEnvError(f"a policy solves a JobShopInstance or a ShopState, got {type(problem).__name__}")
    if objective not in (None, "makespan"):
        raise SchedEnvError(f"{method}: a static instance is solved for the makespan only")
    require_pairs(policy, problem, method)
    if policy.kind != "dynamic":  # static or flexible: the static simulator
        run, covered = _sample(
            lambda n: static_batch(policy, problem, n), policy, samples, ("makespan",), seed, deadline, strict
        )
        schedule = validate_schedule(problem, run.schedule)
    else:  # a dynamic-shop policy on a static instance: the instance as a scenario without events
        from sched_env.events import Scenario

        scenario = Scenario(problem, name=problem.name)
        keys = ("makespan", "mean_flow_time")
        run, covered = _sample(lambda n: dynamic_batch(policy, scenario, n, "makespan"), policy, samples, keys, seed,
                               deadline, strict)  # fmt: skip
        schedule = validate_schedule(problem, run.schedule)
    return SolveResult(
        schedule=schedule, objective=schedule.makespan, status="feasible", method=method,
        wall_time_s=time.perf_counter() - started, instance_name=problem.name, seed=seed,
        params={"policy": policy.name, "backend": policy.backend, "samples": samples, "samples_run": covered,
                "decisions": run.decisions},
    )  # fmt: skip


def _solve_state(policy, state, samples, seed, deadline, objective, method, started, strict=None) -> SolveResult:
    from sched_env.snapshot import plan_rest, residual

    if policy.kind != "dynamic":
        raise SchedEnvError(
            f"{method}: {policy.name} is a static-shop policy ({policy.n_features} features); rescheduling a"
            " ShopState needs a dynamic-shop policy (policy@dynamic, or a model trained on DynamicJobShop-v0)"
        )
    require_pairs(policy, state, method)
    objective = default_objective(state, objective)
    rest = residual(state)
    covered, decisions = 0, 0
    rest_plan = None
    if rest.instance is not None:
        scenario = rest.as_scenario()
        keys = (objective, "makespan") if objective != "makespan" else ("makespan", "mean_flow_time")
        run, covered = _sample(lambda n: dynamic_batch(policy, scenario, n, objective), policy, samples, keys, seed,
                               deadline, strict)  # fmt: skip
        rest_plan, decisions = run.schedule, run.decisions
    plan = plan_rest(state, rest_plan, method)
    return SolveResult(
        schedule=plan, objective=objective_value(state.jobs, plan, objective), status="feasible", method=method,
        wall_time_s=time.perf_counter() - started, instance_name=state.jobs.name, seed=seed,
        params={"objective": objective, "policy": policy.name, "backend": policy.backend, "samples": samples,
                "samples_run": covered, "decisions": decisions},
    )  # fmt: skip
