"""How a decider's budget is cut: shared by the stateless routes and the shop sessions."""

#: The least a decider is given, even when parsing used up the budget (a rule's plan comes in it).
MIN_DECIDER_S = 0.001


def answer_reserve_s(n_operations: int) -> float:
    """Time kept back from the decider to write the answer (measured: ~1.5 us per planned operation)."""
    return 0.003 + 3e-6 * n_operations
