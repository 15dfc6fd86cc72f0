"""The learned deciders: ``policy`` (greedy), ``policy:K`` (best of K samples), ``policy@PATH``
(a model file, ``.zip`` or ``.onnx``; ``@static`` / ``@flexible`` / ``@dynamic`` name the shipped ones).

They join the registry through the ``sched_env.deciders`` entry point, so ``sched-env solve ta01
--method policy``, ``sched-env bench``, ``Replanner("policy")`` and ``deciders.solve(shop_state,
"policy")`` all reach them. A classic static instance goes to the static-shop policy, a flexible one to the (job, machine)
pair policy; a running shop's :class:`ShopState` to the dynamic-shop policy, which plans the rest in the dynamic simulator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.loading import SHIPPED, LoadedPolicy, PolicyLoadError, load_policy
from agents.rollouts import DeadlineError, choose_actions, masked_scores, solve_with_policy
from baselines.deciders import is_flexible
from baselines.rules import quick_rule_plan
from instances import JobShopInstance, SchedEnvError
from sched_env.dynamic import offers_wait
from sched_env.schedule import SolveResult


@dataclass
class PolicyDecider:
    """``policy`` (greedy), ``policy:K`` (best of K samples, greedy included), ``@PATH`` a model
    file; the model loads once, when the decider is built (no budget pays for it)."""

    spec: str
    samples: int = 1
    path: str | None = None
    objective: str | None = None
    loaded: LoadedPolicy | None = None  # a policy loaded already (plans with it alone)
    time_limit_s = None
    plans_flexible = True  # a flexible instance goes to the (job, machine) pair policy

    @property
    def dispatches(self) -> bool:
        """The greedy policy decides online, one operation at a time (:meth:`choose`)."""
        return self.samples == 1

    @property
    def reads_files(self) -> bool:
        return self.path is not None and self.path not in SHIPPED

    def choose(self, batch, observation) -> np.ndarray:
        """The greedy policy's pick in every shop of a batched dynamic env."""
        pairs = observation.get("pairs")
        policy = self.policy_for(None, flexible=pairs is not None)
        jobs, mask = observation["jobs"], observation["action_mask"]
        if pairs is not None:
            if not policy.pairs:
                raise SchedEnvError(
                    f"{self.spec}: {policy.name} chooses jobs only, and this shop is flexible (each operation needs"
                    " its machine chosen): dispatch it with a rule and a machine rule (atc+eet, mwkr+eet, ...)"
                )
            return choose_actions(masked_scores(policy.score, jobs, mask, pairs=pairs), None)
        offered = offers_wait(jobs.shape[1], mask.shape[1])  # the env offers the wait action
        if offered and not policy.waits:  # a policy without a wait head: it never waits
            mask = mask[:, :-1]
        elif policy.waits and not offered:  # a waiting policy in an env without waiting: the wait logit is masked
            mask = np.concatenate([mask, np.zeros((len(mask), 1), dtype=mask.dtype)], axis=1)
        return choose_actions(masked_scores(policy.score, jobs, mask), None)

    def dispatch_scenarios(
        self, scenarios, *, objective: str = "total_weighted_tardiness", window: int | None = None
    ) -> list[SolveResult]:
        """Whole dynamic scenarios dispatched greedily (``baselines.deciders.dispatch_online``): a
        priority network runs inside the compiled kernels, other policies step a batched env."""
        from baselines.deciders import dispatch_by_choosing
        from baselines.rules import dispatch_dynamic_network
        from sched_env.compiled import picks_machines

        flexible = any(scenario.is_flexible for scenario in scenarios)
        policy = self.policy_for(None, flexible=flexible)
        if policy.network is None or (flexible and not picks_machines(*policy.network)):
            return dispatch_by_choosing(self, scenarios, objective=objective, window=window)
        hidden, parameters = policy.network
        return dispatch_dynamic_network(scenarios, parameters, hidden, method=self.spec, objective=objective,
                                        window=window)  # fmt: skip

    def __post_init__(self) -> None:
        self._policies: dict[str, LoadedPolicy] = {}
        if self.loaded is not None:
            self._policies["any"] = self.loaded
        elif self.path is not None:
            self._policies["any"] = load_policy(self.path)
        else:  # both shipped models now (cached across deciders), so that no budget pays for loading them
            for kind in SHIPPED:
                with contextlib.suppress(PolicyLoadError):  # a missing one fails when a problem needs it
                    self._policies[kind] = load_policy(kind=kind)

    def pin(self, loaded: LoadedPolicy, spec: str) -> None:
        """Plan with ``loaded`` alone, named ``spec`` (a server's registered model, ``policy@NAME``)."""
        self.spec, self.loaded, self._policies = spec, loaded, {"any": loaded}

    def use(self, policies: dict[str, LoadedPolicy]) -> None:
        """Plan with these loaded policies (by kind: ``static``, ``dynamic``) instead of the
        shipped ones, unless a model file was named (``policy@PATH``); the service passes the
        models it loaded at start-up."""
        if "any" not in self._policies:
            self._policies.update(policies)

    def policy_for(self, problem, *, flexible: bool = False) -> LoadedPolicy:
        """The policy that plans ``problem``: the named one, else the shipped one of its kind (a
        classic instance: ``static``; a flexible one: ``flexible``; a running shop: ``dynamic``, a
        running flexible shop ``dynamic-flexible``)."""
        if "any" in self._policies:
            return self._policies["any"]
        if isinstance(problem, JobShopInstance):
            kind = "flexible" if problem.is_flexible else "static"
        else:  # a running shop's ShopState, or None: online dispatching (``flexible``: in a flexible shop)
            kind = "dynamic-flexible" if flexible or (problem is not None and is_flexible(problem)) else "dynamic"
        if kind not in self._policies:
            self._policies[kind] = load_policy(kind=kind)
        return self._policies[kind]

    def solve(self, problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        """The policy's plan; with a budget it is anytime: a dispatching rule's plan first
        (milliseconds), the answer (status ``start-plan``) when not even the greedy policy plan
        fits in the budget."""
        policy = self.policy_for(problem)
        if budget_s is None:
            return solve_with_policy(policy, problem, samples=self.samples, seed=seed, objective=self.objective,
                                     method=self.spec)  # fmt: skip
        started = time.perf_counter()
        fallback = quick_rule_plan(problem, self.objective)
        left = budget_s - (time.perf_counter() - started)
        try:
            planned = solve_with_policy(
                policy, problem, samples=self.samples, seed=seed, budget_s=left, objective=self.objective,
                method=self.spec, greedy_budget_s=0.95 * left,
            )  # fmt: skip
        except DeadlineError:  # not even the greedy plan fits: the rule's plan stands, and says so
            params = {"policy": policy.name, "fallback": fallback.method, "samples_run": 0}
            return dataclasses.replace(fallback, method=self.spec, status="start-plan", seed=seed, params=params)
        return planned


def dispatch_dynamic_policy(
    policy: LoadedPolicy, scenarios, *, objective: str = "total_weighted_tardiness"
) -> list[SolveResult]:
    """Each dynamic scenario run to its end by the policy deciding greedily at every epoch (the
    learned counterpart of ``baselines.rules.dispatch_dynamic_many``), all stepped together."""
    from baselines.deciders import dispatch_online

    if policy.kind != "dynamic":
        raise SchedEnvError(f"{policy.name} is a static-shop policy; dynamic scenarios need a dynamic-shop policy")
    return dispatch_online(PolicyDecider("policy", loaded=policy), scenarios, objective=objective)


def policy_factory(spec, *, objective: str | None = None, **_: Any) -> PolicyDecider:
    """Entry point of the ``policy`` decider (group ``sched_env.deciders``)."""
    from baselines.deciders import MAX_SAMPLES, DeciderError

    spec.no_more_than(1, "policy, policy:K, policy@PATH or policy:K@PATH")
    samples = int(spec.number(0, "the sample count K", integer=True, default=1, maximum=MAX_SAMPLES))
    try:
        decider = PolicyDecider(spec.text, samples, spec.qualifier, objective)
        if spec.qualifier is None:
            load_policy(kind="static")  # fail now, with the reason, if the shipped model is unusable
    except PolicyLoadError as error:
        failure = str(error)
    else:
        return decider
    spec.refuse_args_after_qualifier()  # policy@FILE:16: the count goes before the '@'
    raise DeciderError(f"method {spec.text!r}: {failure}")
