"""Inference: load a trained policy (SB3 zip or ONNX), roll it out greedily or take the best of
K samples stepped together in the batched env, and the ``policy`` deciders.

    from agents.inference import load_policy, solve_with_policy
    policy = load_policy()                     # the shipped static-shop policy (ONNX if available)
    result = solve_with_policy(policy, instances.load("ta01"), samples=128)

Through the decider door the same runs as ``policy`` (greedy), ``policy:K`` (best of K, the
greedy plan included) and ``policy@PATH`` / ``policy:K@PATH`` (a model file, ``.zip`` or
``.onnx``; ``@static`` / ``@dynamic`` name the shipped ones): ``sched-env solve ta01 --method
policy``, ``sched-env bench``, ``Replanner("policy")`` and ``deciders.solve(shop_state, "policy")``.
A static instance goes to the static-shop policy; a running shop's :class:`ShopState` to the
dynamic-shop policy, which plans the rest of the work in the dynamic simulator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instances import JobShopInstance, SchedEnvError
from sched_env import _kernels as K
from sched_env.schedule import Schedule, SolveResult, objective_value, objectives, validate_schedule

MODELS = Path(__file__).resolve().parent / "models"
#: The shipped models: kind -> file stem in ``agents/models``.
SHIPPED = {"static": "static", "dynamic": "dynamic"}
KIND_OF_FEATURES = {K.N_FEATURES: "static", K.N_DYNAMIC_FEATURES: "dynamic"}

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: The logit of a masked action (the value the networks and the exported graphs use).
MASKED_LOGIT = -1e8


class PolicyLoadError(SchedEnvError):
    """A policy file that is missing, unreadable or not a sched-env policy."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy ready to score observations: ``score(jobs (B, J, F) float32, mask (B, A)) ->
    masked logits (B, A)``, from torch or ONNX Runtime. ``kind`` is ``static`` (10 features,
    ``JobShop-v0``) or ``dynamic`` (12 features, ``DynamicJobShop-v0``); ``env_options`` are
    the env options it was trained under (placement, action set, objective)."""

    name: str
    path: Path
    kind: str
    backend: str
    n_features: int
    sha256: str
    config: dict[str, Any]
    env_options: dict[str, Any]
    score: Scorer = dataclasses.field(repr=False)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "kind": self.kind, "backend": self.backend,
                "n_features": self.n_features, "sha256": self.sha256, "config": self.config,
                "env_options": self.env_options}  # fmt: skip


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_path(kind: str, backend: str = "auto") -> Path:
    """The shipped model file of ``kind`` (``.onnx`` when ONNX Runtime is installed, else ``.zip``)."""
    if kind not in SHIPPED:
        raise PolicyLoadError(f"no shipped policy {kind!r}; the shipped ones are {', '.join(SHIPPED)}")
    stem = MODELS / SHIPPED[kind]
    if backend == "onnx" or (backend == "auto" and _has_onnxruntime() and stem.with_suffix(".onnx").exists()):
        return stem.with_suffix(".onnx")
    return stem.with_suffix(".zip")


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_policy(path: str | Path | None = None, *, kind: str = "static", backend: str = "auto") -> LoadedPolicy:
    """Load a policy: an SB3 zip (needs torch) or an exported ``.onnx`` file (needs only
    onnxruntime); ``None`` (or ``"static"`` / ``"dynamic"``) loads a shipped model. Loaded
    models are cached per file, so deciders built again do not load again."""
    if backend not in ("auto", "torch", "onnx"):
        raise PolicyLoadError(f"backend must be auto, torch or onnx, got {backend!r}")
    if path is None or str(path) in SHIPPED:
        path = shipped_path(kind if path is None else str(path), backend)
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        hint = " (train one with `sched-env train`, or use the shipped models: policy@static, policy@dynamic)"
        raise PolicyLoadError(f"policy file {path} does not exist{hint}")
    if backend == "torch" and path.suffix == ".onnx":
        raise PolicyLoadError(f"{path} is an ONNX file; load the SB3 .zip for the torch backend")
    return _load_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, _mtime: int) -> LoadedPolicy:
    file = Path(path)
    if file.suffix == ".onnx":
        return _load_onnx(file)
    return _load_zip(file)


def _load_zip(path: Path) -> LoadedPolicy:
    try:
        import torch
        from sb3_contrib import MaskablePPO
    except ImportError:
        raise PolicyLoadError(
            f"loading {path.name} needs torch and sb3-contrib (pip install 'sched-env[rl]'), or load its .onnx export"
        ) from None
    try:
        model = MaskablePPO.load(path, device="cpu")
    except Exception as error:  # a zip of another kind, truncated, or not a zip at all
        raise PolicyLoadError(f"{path} is not a readable sched-env policy ({type(error).__name__}: {error})") from None
    policy = model.policy
    if not hasattr(policy, "scores"):
        raise PolicyLoadError(f"{path} holds a {type(policy).__name__}, not sched-env's JobShopPolicy")
    policy.set_training_mode(False)
    meta = getattr(model, "sched_env", None) or {}
    n_features = int(policy.observation_space["jobs"].shape[-1])

    def score(jobs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return policy.scores(torch.as_tensor(jobs), torch.as_tensor(mask, dtype=torch.float32)).numpy()

    return LoadedPolicy(
        path.stem, path, _kind(n_features, path), "torch", n_features, file_sha256(path), meta.get("config", {}),
        meta.get("env_options", {}), score,
    )  # fmt: skip


def _load_onnx(path: Path) -> LoadedPolicy:
    try:
        import onnxruntime as ort
    except ImportError:
        raise PolicyLoadError(f"loading {path.name} needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one decision at a time is latency-bound; threads only add overhead
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise PolicyLoadError(f"{path} is not a readable ONNX policy ({type(error).__name__}: {error})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "sched_env" not in meta:
        raise PolicyLoadError(f"{path} is an ONNX model but not one exported by `sched-env export-onnx`")
    info = json.loads(meta["sched_env"])
    n_features = int(info["n_features"])

    def score(jobs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"jobs": np.ascontiguousarray(jobs, dtype=np.float32), "mask": np.asarray(mask, dtype=np.float32)}
        return session.run(["logits"], feeds)[0]

    return LoadedPolicy(
        path.stem, path, _kind(n_features, path), "onnx", n_features, file_sha256(path), info.get("config", {}),
        info.get("env_options", {}), score,
    )  # fmt: skip


def _kind(n_features: int, path: Path) -> str:
    if n_features not in KIND_OF_FEATURES:
        raise PolicyLoadError(f"{path}: a policy over {n_features} features fits neither sched-env shop (10 or 12)")
    return KIND_OF_FEATURES[n_features]


# ---------------------------------------------------------------------- rollouts in the batched env
@dataclass
class Trajectory:
    """The informative decisions of one episode (more than one allowed action): observations
    and the actions taken, for imitation."""

    jobs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray


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


def masked_scores(score: Scorer, jobs: np.ndarray, masks: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
    """Logits of every shop, the network asked only about shops with a real choice and not in
    ``skip`` (the others get logit 0 for their allowed actions, the masked logit elsewhere)."""
    choice = masks.sum(-1) > 1
    if skip is not None:
        choice &= ~skip
    if choice.all():
        return score(jobs, masks)
    logits = np.where(masks > 0, 0.0, MASKED_LOGIT).astype(np.float32)
    if choice.any():
        logits[choice] = score(jobs[choice], masks[choice])
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
    records: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    dims = batch.layout.dims
    limit = 8 * max(dims["J"], getattr(batch, "max_stream", 0)) * max(dims["O"], 1) + 1000
    while not finished.all():
        if deadline is not None and time.perf_counter() > deadline:
            raise DeadlineError
        logits = masked_scores(score, obs["jobs"], obs["action_mask"], finished)
        actions = choose_actions(logits, rng)
        if greedy_first:
            actions[0] = int(logits[0].argmax())
        if rule is not None:
            actions[-1] = batch.rule_choices(rule)[-1]
        if record:
            records.append((obs["jobs"], obs["action_mask"], actions.copy(), ~finished))
        obs, _, dones, _, info = batch.step(actions)
        for i in np.flatnonzero(dones & ~finished).tolist():
            finished[i] = True
            values[i] = [float(info["final_info"][k][i]) for k in keys]
            if best < 0 or tuple(values[i]) < tuple(values[best]):
                best, best_schedule = i, batch.final_schedule(i)
        steps += 1
        if steps > limit:  # a policy cannot loop (every step starts an operation), a bug could
            raise SchedEnvError(f"episodes did not end within {limit} decisions")
    trajectory = None
    if record:
        keep = [t for t, (_, m, _, alive) in enumerate(records) if alive[best] and m[best].sum() > 1]
        trajectory = Trajectory(
            np.stack([records[t][0][best] for t in keep]) if keep else np.zeros((0, *obs["jobs"].shape[1:]), np.float32),
            np.stack([records[t][1][best] for t in keep]) if keep else np.zeros((0, obs["action_mask"].shape[1]), np.int8),
            np.array([records[t][2][best] for t in keep], dtype=np.int64),
        )  # fmt: skip
    return Rollouts(values[:, 0], best, best_schedule, dict(zip(keys, values[best].tolist())), steps, trajectory)


def static_batch(policy: LoadedPolicy, instance: JobShopInstance, samples: int):
    """A batched env of ``samples`` copies of ``instance`` under the policy's env options."""
    from sched_env.vector import BatchJobShopEnv

    options = {k: v for k, v in policy.env_options.items() if k in ("placement", "action_set")}
    return BatchJobShopEnv(samples, instance=instance, **options)


def dynamic_batch(policy: LoadedPolicy, scenario, samples: int, objective: str, **options: Any):
    from sched_env.dynamic import BatchDynamicJobShopEnv

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
    if policy.kind == "static":
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
    from sched_env.snapshot import full_plan, plan_violations, residual

    if policy.kind != "dynamic":
        raise SchedEnvError(
            f"{method}: {policy.name} is a static-shop policy ({policy.n_features} features); rescheduling a"
            " ShopState needs a dynamic-shop policy (policy@dynamic, or a model trained on DynamicJobShop-v0)"
        )
    objective = objective or "total_weighted_tardiness"
    rest = residual(state)
    covered, decisions = 0, 0
    if rest.instance is None:
        plan = full_plan(state, rest, None)
    else:
        scenario = rest.as_scenario()
        keys = (objective, "makespan") if objective != "makespan" else ("makespan", "mean_flow_time")
        run, covered = _sample(lambda n: dynamic_batch(policy, scenario, n, objective), policy, samples, keys, seed,
                               deadline, strict)  # fmt: skip
        plan, decisions = full_plan(state, rest, run.schedule), run.decisions
    problems = plan_violations(state, plan)
    if problems:  # a bug, never a user error: say so loudly
        raise AssertionError(f"{method} produced a plan that breaks the shop state: {problems[0]}")
    return SolveResult(
        schedule=plan, objective=objective_value(state.jobs, plan, objective), status="feasible", method=method,
        wall_time_s=time.perf_counter() - started, instance_name=state.jobs.name, seed=seed,
        params={"objective": objective, "policy": policy.name, "backend": policy.backend, "samples": samples,
                "samples_run": covered, "decisions": decisions},
    )  # fmt: skip


def dispatch_dynamic_policy(
    policy: LoadedPolicy, scenarios: Sequence, *, objective: str = "total_weighted_tardiness"
) -> list[SolveResult]:
    """Run each dynamic scenario to its end with the policy deciding greedily at every epoch
    (the learned counterpart of ``baselines.rules.dispatch_dynamic_many``), all scenarios
    stepped together. Schedules (real times) are validated against the scenarios."""
    from sched_env.dynamic import episode_summary

    if policy.kind != "dynamic":
        raise SchedEnvError(f"{policy.name} is a static-shop policy; dynamic scenarios need a dynamic-shop policy")
    started = time.perf_counter()
    batch = dynamic_batch(policy, list(scenarios), len(scenarios), objective, max_jobs=None)
    obs, _ = batch.reset(options={"scenarios": list(scenarios)})
    finished = np.zeros(len(scenarios), dtype=bool)
    schedules: list[Schedule | None] = [None] * len(scenarios)
    wasted = np.zeros(len(scenarios), dtype=np.int64)
    while not finished.all():
        obs, _, dones, _, info = batch.step(
            choose_actions(masked_scores(policy.score, obs["jobs"], obs["action_mask"]), None)
        )
        for i in np.flatnonzero(dones & ~finished).tolist():
            finished[i] = True
            schedules[i] = batch.final_schedule(i)
            wasted[i] = int(info["final_info"]["wasted_work"][i])
    elapsed = (time.perf_counter() - started) / max(len(scenarios), 1)
    results = []
    for scenario, schedule, lost in zip(scenarios, schedules, wasted):
        summary = episode_summary(scenario, schedule, int(lost))
        values = objectives(scenario.jobs, summary["schedule"])
        results.append(
            SolveResult(
                schedule=summary["schedule"], objective=values[objective], status="feasible", method="policy",
                wall_time_s=elapsed, instance_name=scenario.name, params={"objective": objective, **values},
            )
        )  # fmt: skip
    return results


# ---------------------------------------------------------------------- the deciders
@dataclass
class PolicyDecider:
    """``policy`` (greedy), ``policy:K`` (best of K samples, greedy included), ``@PATH`` a model
    file; the model loads once, when the decider is built (no budget pays for it)."""

    spec: str
    samples: int = 1
    path: str | None = None
    objective: str | None = None

    def __post_init__(self) -> None:
        self._policies: dict[str, LoadedPolicy] = {}
        if self.path is not None:
            self._policies["any"] = load_policy(self.path)
        else:  # both shipped models now (cached across deciders), so that no budget pays for loading them
            for kind in SHIPPED:
                with contextlib.suppress(PolicyLoadError):  # a missing one fails when a problem needs it
                    self._policies[kind] = load_policy(kind=kind)

    def use(self, policies: dict[str, LoadedPolicy]) -> None:
        """Plan with these loaded policies (by kind: ``static``, ``dynamic``) instead of the
        shipped ones, unless a model file was named (``policy@PATH``); the service passes the
        models it loaded at start-up."""
        if "any" not in self._policies:
            self._policies.update(policies)

    def policy_for(self, problem) -> LoadedPolicy:
        if "any" in self._policies:
            return self._policies["any"]
        kind = "static" if isinstance(problem, JobShopInstance) else "dynamic"
        if kind not in self._policies:
            self._policies[kind] = load_policy(kind=kind)
        return self._policies[kind]

    def solve(self, problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        return solve_with_policy(
            self.policy_for(problem), problem, samples=self.samples, seed=seed, budget_s=budget_s,
            objective=self.objective, method=self.spec,
        )  # fmt: skip


def policy_factory(spec, *, objective: str | None = None, **_: Any) -> PolicyDecider:
    """Entry point of the ``policy`` decider (group ``sched_env.deciders``)."""
    from baselines.deciders import DeciderError

    spec.no_more_than(1, "policy, policy:K, policy@PATH or policy:K@PATH")
    samples = int(spec.number(0, "the sample count K", integer=True, default=1))
    try:
        decider = PolicyDecider(spec.text, samples, spec.qualifier, objective)
        if spec.qualifier is None:
            load_policy(kind="static")  # fail now, with the reason, if the shipped model is unusable
    except PolicyLoadError as error:
        raise DeciderError(f"method {spec.text!r}: {error}") from None
    return decider
