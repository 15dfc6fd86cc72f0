"""Names the kernels number, importable without numba (the CLI lists them before any kernel loads)."""

#: Dispatching rules (baselines/rules.py) and what each prefers: the priority of an allowed job,
#: smallest key wins (ties to the lowest job index; in a dynamic shop to the first-arrived job).
#: ``p`` is the next operation's planned duration, ``R`` the job's planned work left (this
#: operation included), ``slack = due - now - R``, ``w`` the weight. ``RULE.mwkr`` is the
#: kernel id of "mwkr" (rule names with ``+``, ``/`` or a leading digit: see ``RULE_FIELDS``).
RULES = {
    "spt": "shortest next operation",
    "lpt": "longest next operation",
    "mwkr": "most work remaining",
    "lwkr": "least work remaining",
    "mopnr": "most operations remaining",
    "fifo": "job ready earliest (waited longest)",
    "edd": "earliest due date",
    "random": "uniformly random allowed job",
    "atc": "apparent tardiness cost (WATC): largest w/p x exp(-max(0, slack) / (k x mean p)), k = 2,"
    " mean p over the allowed jobs (needs due dates)",
    "wspt": "weighted shortest processing time: largest w/p",
    "covert": "cost over time: largest w/p x max(0, 1 - max(0, slack) / (k x p)), k = 2 (needs due dates)",
    "cr": "critical ratio: smallest (due - now) / R (needs due dates)",
    "slack/opn": "smallest slack per operation left: slack / operations left (needs due dates)",
    "pt+winq": "smallest p + WINQ (planned work waiting at the job's next machine)",
    "2pt+winq+npt": "smallest 2p + WINQ + NPT (the planned duration of the job's operation after this one)",
}
RULE_NAMES = tuple(RULES)
#: The attribute of ``RULE`` (and of the kernel's ids) for each rule name.
RULE_FIELDS = {name: {"slack/opn": "slack_opn", "pt+winq": "pt_winq", "2pt+winq+npt": "pt2_winq_npt"}.get(name, name)
               for name in RULE_NAMES}  # fmt: skip
#: Rules that read due dates (refused on an instance without them).
DUE_DATE_RULES = ("edd", "atc", "covert", "cr", "slack/opn")

#: Machine rules of the flexible shop: which eligible machine a job's next operation takes when
#: a policy or rule chooses only the job (``mwkr+eet``). Among the allowed (job, machine) pairs,
#: the smallest key wins, ties to the lowest machine.
MACHINE_RULES = {
    "eet": "earliest end time: the machine where the operation would end first (ties: shorter duration)",
    "spt": "shortest processing time on the machine (ties: earliest end)",
    "ll": "least loaded: the machine with the least work scheduled so far (ties: earliest end)",
    "est": "earliest start time (ties: shorter duration)",
}
MACHINE_RULE_NAMES = tuple(MACHINE_RULES)


def split_machine_rule(name: str) -> tuple[str, str | None]:
    """``"mwkr+eet"`` -> ``("mwkr", "eet")``; a name without a machine rule -> ``(name, None)``
    (``pt+winq`` is a job rule of its own: only a known machine rule after the last ``+`` splits)."""
    head, plus, tail = name.lower().rpartition("+")
    if plus and tail in MACHINE_RULES and head in RULES:
        return head, tail
    return name.lower(), None
