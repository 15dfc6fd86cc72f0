"""The one rule for timing an operation around blocked intervals (downtimes, maintenance, work
already running), shared by the right-shift repair, the frozen-horizon decoder
(:func:`baselines.repair.hold_frozen`) and the tabu search's decoder; its plain-Python twin is in
``tests/test_timing.py``.

An operation of ``duration`` may start at ``t`` when ``[t, t + duration)`` touches no blocked
interval ``[a, b)``; a zero-length operation may not sit inside one either (``a <= t < b``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sched_env.jit import KERNEL_FLAGS

#: Inlined where it is called (numba IR): called across modules it stays a real call, and the tabu
#: decoder calls it for every operation it places (ta21, 30 000 iterations: 0.43 s not inlined,
#: 0.31 s inlined or written in place). Numba's cache keys a kernel on its own file only: after an
#: edit here, clear ``baselines/__pycache__/*.nb?`` or the tabu kernels keep the old rule.
inlined_kernel = njit(inline="always", **KERNEL_FLAGS)


@inlined_kernel
def earliest_clear(ready: int, duration: int, starts: np.ndarray, ends: np.ndarray, row: int, count: int) -> int:
    """The first t >= ``ready`` at which the operation fits, given ``count`` blocked intervals
    ``[starts[row, i], ends[row, i])``, sorted and disjoint (2-D tables, one row per machine: no
    row view is made in the tabu search's hot loop)."""
    t = ready
    for i in range(count):
        a, b = starts[row, i], ends[row, i]
        if b <= t:
            continue
        if a < t + duration or (duration == 0 and a <= t):
            t = b
        else:
            break  # sorted: every later interval starts later still
    return t


class BlockedIntervals:
    """A running shop's blocked intervals per machine (``{machine: [(start, end), ...]}``, sorted
    and disjoint) as the arrays :func:`earliest_clear` reads, made once per plan."""

    def __init__(self, blocked: dict[int, list[tuple[int, int]]]) -> None:
        width = max((len(spans) for spans in blocked.values()), default=0)
        self.starts = np.zeros((max(len(blocked), 1), width), dtype=np.int64)
        self.ends = np.zeros_like(self.starts)
        self.rows: dict[int, tuple[int, int]] = {}  # machine -> (row, count)
        for row, (machine, spans) in enumerate(blocked.items()):
            self.starts[row, : len(spans)] = [a for a, _ in spans]
            self.ends[row, : len(spans)] = [b for _, b in spans]
            self.rows[machine] = (row, len(spans))

    def earliest(self, ready: int, duration: int, machine: int) -> int:
        """The first start >= ``ready`` of an operation of ``duration`` on ``machine``."""
        row, count = self.rows.get(machine, (0, 0))
        if count == 0:
            return ready
        return int(earliest_clear(ready, duration, self.starts, self.ends, row, count))
