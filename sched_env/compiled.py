"""The compiled simulator as the layers above ``sched_env`` may use it: rule ids, feature widths,
the priority network's size, and the batched rollout kernels (``rules``, the evolved dispatcher and
the benchmarks call them). ``sched_env._kernels`` stays private: its rows and offsets may change,
these names keep their meaning.
"""

from __future__ import annotations

from sched_env._kernels import (
    DF,
    IN,
    N_DYNAMIC_FEATURES,
    N_FEATURES,
    RULE,
    for_batch,
    priority_parameters,
    rollout_dynamic_rules,
    rollout_dynamic_scored,
    rollout_rules,
    sample_valid_actions,
)

#: Where an instance row (static or dynamic) holds its machine rule (``MACHINE_RULE`` ids).
MACHINE_RULE_FIELD = IN.machine_rule

__all__ = [
    "DF",
    "MACHINE_RULE_FIELD",
    "N_DYNAMIC_FEATURES",
    "N_FEATURES",
    "RULE",
    "for_batch",
    "priority_parameters",
    "rollout_dynamic_rules",
    "rollout_dynamic_scored",
    "rollout_rules",
    "sample_valid_actions",
]
