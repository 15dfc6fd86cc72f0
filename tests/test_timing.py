"""baselines/_timing.py against its plain-Python twin: the one rule for an operation's earliest
start around blocked intervals (zero-length operations included), as the repair, the frozen
decoder and the tabu decoder all use it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from baselines._timing import BlockedIntervals, earliest_clear


def twin(ready: int, duration: int, blocked: list[tuple[int, int]]) -> int:
    """The smallest candidate start (ready, or the end of a blocked interval after it) that touches
    no interval: written from the rule's statement, not from the kernel's loop."""

    def clear(t: int) -> bool:
        return all(not (t < b and a < t + duration) and not (duration == 0 and a <= t < b) for a, b in blocked)

    return min(t for t in sorted({ready} | {b for _, b in blocked if b > ready}) if clear(t))


def random_blocked(rng: random.Random) -> list[tuple[int, int]]:
    spans, t = [], rng.randint(0, 5)
    for _ in range(rng.randint(0, 6)):
        start = t + rng.choice([0, 0, 1, 3])  # back-to-back intervals too
        end = start + rng.randint(1, 6)
        spans.append((start, end))
        t = end
    return spans


def test_the_kernel_equals_its_twin_on_random_intervals_and_zero_length_operations():
    rng = random.Random(7)
    for _ in range(20_000):
        blocked, ready, duration = random_blocked(rng), rng.randint(0, 40), rng.choice([0, 0, 1, 2, 5, 9])
        kernel = BlockedIntervals({3: blocked}).earliest(ready, duration, 3)
        assert kernel == twin(ready, duration, blocked), (ready, duration, blocked)


@pytest.mark.parametrize(("ready", "duration", "expected"), [(10, 0, 15), (15, 0, 15), (9, 0, 9), (9, 1, 9),
                                                             (9, 2, 15), (12, 0, 15), (12, 3, 15)])  # fmt: skip
def test_the_rule_at_the_edges_of_an_interval(ready, duration, expected):
    """[10, 15) blocked: a zero-length operation may not sit at 10 (inside) but may at 15 (after)."""
    starts, ends = np.array([[10]]), np.array([[15]])
    assert earliest_clear(ready, duration, starts, ends, 0, 1) == expected


def test_the_tabu_decoder_uses_the_same_rule():
    from baselines._tabu_kernels import earliest_free

    rng = random.Random(8)
    for _ in range(2_000):
        blocked, ready, duration = random_blocked(rng), rng.randint(0, 40), rng.choice([0, 1, 4])
        bstart, bend = np.zeros((2, 8), dtype=np.int64), np.zeros((2, 8), dtype=np.int64)
        bstart[1, : len(blocked)] = [a for a, _ in blocked]
        bend[1, : len(blocked)] = [b for _, b in blocked]
        nb = np.array([0, len(blocked)], dtype=np.int64)
        assert earliest_free(ready, duration, 1, bstart, bend, nb) == twin(ready, duration, blocked)
