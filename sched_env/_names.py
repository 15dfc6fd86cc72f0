"""Names the kernels number, importable without numba (the CLI lists them before any kernel loads)."""

#: Dispatching rules (baselines/rules.py) and what each prefers: the priority of an allowed job,
#: smallest key wins (ties to the lowest job index). ``RULE.mwkr`` is the kernel id of "mwkr".
RULES = {
    "spt": "shortest next operation",
    "lpt": "longest next operation",
    "mwkr": "most work remaining",
    "lwkr": "least work remaining",
    "mopnr": "most operations remaining",
    "fifo": "job ready earliest (waited longest)",
    "edd": "earliest due date",
    "random": "uniformly random allowed job",
    "atc": "apparent tardiness cost: weighted shortest first, urgent jobs first (needs due dates)",
}
RULE_NAMES = tuple(RULES)
