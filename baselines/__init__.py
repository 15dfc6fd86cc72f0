"""Classic deciders on the sched-env simulator: dispatching rules and (``baselines.cpsat``) OR-Tools CP-SAT."""

from baselines.rules import RULES, best_of_random, dispatch, dispatch_dynamic_many, dispatch_many, rule_action

__all__ = ["RULES", "best_of_random", "dispatch", "dispatch_dynamic_many", "dispatch_many", "rule_action"]
