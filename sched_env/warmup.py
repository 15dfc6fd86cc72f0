"""Compile the simulator's kernels before they are needed, and say so when that takes a while.

numba compiles a kernel on its first call and caches the machine code on disk (``__pycache__``
or ``$NUMBA_CACHE_DIR``), so only the very first run on a machine pays: about 15 s for the static
shop and 20 s for the dynamic shop on 2 cores; later processes load them in a fraction of a second.
:func:`warm_up` compiles only the groups a program uses, tells the user when it must compile,
and on a multi-core machine compiles two cold groups at once (one in a helper process that
fills the same cache).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from sched_env import _kernels as K

GROUPS = tuple(K.WARM_UPS)
_warm: set[str] = set()  # groups this process has compiled or loaded already
#: Measured on a 2-core machine with an empty cache (serial kernels): seconds per group.
COLD_SECONDS = {"static": 15, "dynamic": 20}


def is_cached(group: str) -> bool:
    """Whether every entry kernel of ``group`` has machine code in numba's on-disk cache for
    the current source (a stale cache, from an older version of the kernels, does not count)."""
    _, names = K.WARM_UPS[group]
    try:
        return all(getattr(K, name)._cache._cache_file._load_index() for name in names)
    except (AttributeError, OSError):  # numba internals moved, or an unreadable cache: assume cold
        return False


def warm_up(*groups: str, say: Callable[[str], None] | None = None) -> float:
    """Compile (or load from the cache) the kernels of ``groups`` (``static``, ``dynamic``;
    default both). ``say`` (e.g. ``print``) hears one line before a compilation, with the
    expected time. Returns the seconds it took."""
    groups = groups or GROUPS
    unknown = [g for g in groups if g not in K.WARM_UPS]
    if unknown:
        raise ValueError(f"unknown kernel group(s) {unknown}; choose from {', '.join(GROUPS)}")
    started = time.perf_counter()
    groups = tuple(g for g in groups if g not in _warm)
    if not groups:
        return 0.0
    cold = [g for g in groups if not is_cached(g)]
    helper = None
    if len(cold) > 1 and (os.cpu_count() or 1) > 1:  # compile the last cold group beside this process
        helper = subprocess.Popen(
            [sys.executable, "-c", f"from sched_env import _kernels as K; K.WARM_UPS[{cold[-1]!r}][0]()"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    if cold and say is not None:
        seconds = [COLD_SECONDS[g] for g in cold]
        expected = max(seconds) if helper is not None else sum(seconds)
        say(
            f"compiling the {' and '.join(cold)} simulator kernels, once for this machine (about {expected} s on"
            " 2 cores; later runs load them from numba's cache in under a second) ..."
        )
    for group in groups:
        if helper is None or group != cold[-1]:
            K.WARM_UPS[group][0]()
    if helper is not None:
        helper.wait()  # then this loads what it compiled (or compiles, had it failed)
        K.WARM_UPS[cold[-1]][0]()
    _warm.update(groups)
    return time.perf_counter() - started


__all__ = ["GROUPS", "is_cached", "warm_up"]
