"""The compiled simulator as the layers above ``sched_env`` may use it: rule ids, feature widths,
the priority network's size, and the batched rollout kernels (``rules``, the evolved dispatcher and
the benchmarks call them). ``sched_env._kernels`` stays private: its rows and offsets may change,
these names keep their meaning.
"""

from __future__ import annotations

from sched_env._kernels import (
    DF,
    IN,
    N_DYNAMIC_CONTEXT,
    N_DYNAMIC_FEATURES,
    N_DYNAMIC_JOB_FEATURES,
    N_FEATURES,
    N_PAIR_FEATURES,
    PF,
    RULE,
    for_batch,
    priority_parameters,
    rollout_dynamic_rules,
    rollout_dynamic_scored,
    rollout_rules,
    sample_valid_actions,
)


def priority_network_sizes(hidden: int) -> tuple[int, int, int]:
    """The parameter counts of a priority network with ``hidden`` units: without the context gates,
    with them, and with them and the weights on the pair features of a network that picks machines
    too (``sched_env._kernels.priority_score``, ``dynamic_choose_scored``)."""
    base = int(priority_parameters(hidden))
    gated = base + N_DYNAMIC_JOB_FEATURES * N_DYNAMIC_CONTEXT
    return base, gated, gated + N_PAIR_FEATURES


def picks_machines(hidden: int, parameters) -> bool:
    """Whether a priority network scores (job, machine) pairs: it can dispatch flexible shops."""
    return len(parameters) == priority_network_sizes(hidden)[2]


#: Where an instance row (static or dynamic) holds its machine rule (``MACHINE_RULE`` ids).
MACHINE_RULE_FIELD = IN.machine_rule

__all__ = [
    "DF",
    "MACHINE_RULE_FIELD",
    "N_DYNAMIC_CONTEXT",
    "N_DYNAMIC_FEATURES",
    "N_DYNAMIC_JOB_FEATURES",
    "N_FEATURES",
    "N_PAIR_FEATURES",
    "PF",
    "RULE",
    "for_batch",
    "picks_machines",
    "priority_network_sizes",
    "priority_parameters",
    "rollout_dynamic_rules",
    "rollout_dynamic_scored",
    "rollout_rules",
    "sample_valid_actions",
]
