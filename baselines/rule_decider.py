"""The dispatching rules as deciders: ``mwkr``, ``atc``, ``mwkr@giffler_thompson``, ``random:N``, and on
flexible shops a job rule with a machine rule, ``mwkr+eet``, ``spt+spt``, ... (a plain job rule takes
the earliest-end-time machine); registered by :mod:`baselines.deciders` for every name of
:data:`baselines.rules.RULES`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines import rules
from baselines.deciders import MAX_SAMPLES, DeciderError, MethodSpec, Problem, default_objective
from instances import JobShopInstance
from sched_env._names import MACHINE_RULES, split_machine_rule
from sched_env.schedule import SolveResult
from sched_env.shop import ACTION_SETS


@dataclass
class RuleDecider:
    """A dispatching rule in the compiled simulator; ``random:N`` keeps the best of N samples (as
    many as fit in the budget). On a shop state it dispatches the rest of the work around the known
    downtimes. Instant; a deterministic rule also dispatches online (:meth:`choose`)."""

    spec: str
    rule: str
    action_set: str = "non_delay"
    samples: int = 1
    objective: str | None = None
    machine_rule: str = "eet"  # which eligible machine the chosen job takes on a flexible shop
    time_limit_s = None
    reads_files = False
    plans_flexible = True

    @property
    def dispatches(self) -> bool:
        return self.rule != "random"

    def choose(self, batch, observation) -> np.ndarray:
        """The rule's pick in every shop of a batched env (its ``action_masks`` decide what is allowed)."""
        return batch.rule_choices(rules.rule_id(self.rule))

    def dispatch_scenarios(
        self, scenarios, *, objective: str = "total_weighted_tardiness", window: int | None = None
    ) -> list[SolveResult]:
        """Whole dynamic scenarios dispatched by the rule in one kernel call (``dispatch_online``)."""
        runs = rules.dispatch_dynamic_many(scenarios, self.with_machine_rule, objective=objective, window=window)
        return [dataclasses.replace(run, method=self.spec) for run in runs]

    @property
    def with_machine_rule(self) -> str:
        """The rule as the dynamic dispatchers take it: ``RULE+MACHINE_RULE``."""
        return f"{self.rule}+{self.machine_rule}"

    def solve(self, problem: Problem, *, budget_s=None, seed: int = 0, hint=None) -> SolveResult:
        if isinstance(problem, JobShopInstance):
            if self.samples > 1:
                result = rules.best_of_random(problem, self.samples, action_set=self.action_set, seed=seed,
                                              budget_s=budget_s, machine_rule=self.machine_rule)  # fmt: skip
            else:
                result = rules.dispatch(problem, self.rule, action_set=self.action_set, seed=seed,
                                        machine_rule=self.machine_rule)  # fmt: skip
            return dataclasses.replace(result, method=self.spec)
        return rules.dispatch_state(
            problem, self.with_machine_rule, objective=default_objective(problem, self.objective), samples=self.samples,
            seed=seed,
            method=self.spec, budget_s=budget_s,
        )  # fmt: skip


def rule_factory(spec: MethodSpec, *, objective: str | None = None, **_: Any) -> RuleDecider:
    """Build ``RULE``, ``RULE@ACTION_SET`` or ``random:N``."""
    action_set = spec.qualifier or "non_delay"
    if action_set not in ACTION_SETS:
        raise DeciderError(
            f"method {spec.text!r}: unknown action set {action_set!r}; choose one of {', '.join(ACTION_SETS)}"
        )
    rule, machine_rule = split_machine_rule(spec.name)
    if machine_rule is not None and machine_rule not in MACHINE_RULES:  # pragma: no cover - split checks it
        raise DeciderError(f"method {spec.text!r}: unknown machine rule {machine_rule!r}")
    samples = 1
    if rule == "random":
        spec.no_more_than(1, "random or random:N")
        samples = int(spec.number(0, "the sample count N", integer=True, default=1, maximum=MAX_SAMPLES))
    else:
        spec.no_more_than(0, f"{spec.name} or {spec.name}@ACTION_SET (only random takes :N)")
    return RuleDecider(spec.text, rule, action_set, samples, objective, machine_rule or "eet")
