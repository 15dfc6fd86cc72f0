"""Compile kernels before they are needed, beside the work that does not need them, and say so.

numba compiles a kernel on its first call and caches the machine code on disk (``__pycache__`` or
``$NUMBA_CACHE_DIR``), so only the very first run on a machine pays; later processes load a group
in a fraction of a second. Kernels come in *groups* (:data:`GROUPS`): the static shop, the dynamic
shop, and the groups other layers register (the tabu search's: :func:`register`). A program
compiles only the groups it uses: :func:`warm_up` compiles (or loads) them in this process, and
:func:`compile_beside` starts compiling cold groups in helper processes that fill the same cache
while this process works on something else (a 2-core machine compiles two groups at once).
Helpers are stopped when the program ends, also on Ctrl-C: none is left behind.
"""

from __future__ import annotations

import atexit
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class KernelGroup:
    """Kernels compiled together: ``warm`` (``module:function``) compiles them on a tiny problem;
    ``entries`` are the kernels of ``module`` callers call (the others are inside them)."""

    name: str
    warm: str
    module: str
    entries: tuple[str, ...]
    cold_s: float  # measured compile seconds on a 2-core machine with an empty cache

    def run(self) -> None:
        module, function = self.warm.split(":")
        getattr(importlib.import_module(module), function)()


GROUPS: dict[str, KernelGroup] = {
    "static": KernelGroup("static", "sched_env._kernels:warm_static", "sched_env._kernels",
                          ("reset_batch", "step_batch", "rollout_rules", "sample_valid_actions"), 12),
    "dynamic": KernelGroup("dynamic", "sched_env._kernels:warm_dynamic", "sched_env._kernels",
                           ("dynamic_step_shop", "dynamic_wait_shop", "dynamic_step_batch", "rollout_dynamic_rules",
                            "rollout_dynamic_scored"), 19),
}  # fmt: skip
_warm: set[str] = set()  # groups this process has compiled or loaded already
_helpers: dict[str, subprocess.Popen] = {}  # groups compiling in a helper process now


def register(group: KernelGroup) -> None:
    """Add a layer's kernel group (e.g. ``baselines.tabu`` registers ``tabu``)."""
    GROUPS[group.name] = group


def _group(name: str) -> KernelGroup:
    if name not in GROUPS:
        raise ValueError(f"unknown kernel group {name!r}; choose from {', '.join(GROUPS)}")
    return GROUPS[name]


def is_cached(name: str) -> bool:
    """Whether every entry kernel of group ``name`` has machine code in numba's on-disk cache for
    the current source (a stale cache, from an older version of the kernels, does not count)."""
    group = _group(name)
    try:
        module = importlib.import_module(group.module)
        return all(getattr(module, entry)._cache._cache_file._load_index() for entry in group.entries)
    except (AttributeError, OSError):  # numba internals moved, or an unreadable cache: assume cold
        return False


def compile_beside(*names: str) -> list[str]:
    """Start compiling the cold groups among ``names`` in helper processes (one each); returns
    the groups now compiling. :func:`warm_up` of such a group waits for its helper, then loads."""
    started = []
    for name in names:
        group = _group(name)
        if name in _warm or name in _helpers or is_cached(name):
            continue
        module, function = group.warm.split(":")
        code = f"import {module}; {module}.{function}()"
        _helpers[name] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)  # fmt: skip
        started.append(name)
    return started


@atexit.register
def stop_helpers() -> None:
    """Stop every helper still compiling (the program ends, or was interrupted)."""
    for helper in _helpers.values():
        if helper.poll() is None:
            helper.kill()
            helper.wait()
    _helpers.clear()


def warm_up(*names: str, say: Callable[[str], None] | None = None) -> float:
    """Compile (or load from the cache) the kernels of groups ``names`` (default: the simulator's,
    ``static`` and ``dynamic``); a group compiling in a helper is waited for, then loaded. ``say``
    (e.g. ``print``) hears one line before a compilation, with the expected time. On a multi-core
    machine two cold groups compile at once (the last in a helper). Returns the seconds it took."""
    names = names or ("static", "dynamic")
    for name in names:
        _group(name)
    started = time.perf_counter()
    todo = [n for n in names if n not in _warm]
    if not todo:
        return 0.0
    cold = [n for n in todo if n not in _helpers and not is_cached(n)]
    if len(cold) > 1 and (os.cpu_count() or 1) > 1:
        compile_beside(cold[-1])
    if say is not None and (cold or any(n in _helpers for n in todo)):
        waiting = [n for n in todo if n in cold or n in _helpers]
        seconds = max(GROUPS[n].cold_s for n in waiting)
        say(f"compiling the {' and '.join(waiting)} kernels, once for this machine (up to about {seconds:.0f} s on"
            " 2 cores; later runs load them from numba's cache in under a second) ...")  # fmt: skip
    try:
        for name in sorted(todo, key=lambda n: n in _helpers):  # own compiling first, then wait for helpers
            helper = _helpers.pop(name, None)
            if helper is not None:
                helper.wait()  # then this loads what it compiled (or compiles, had it failed)
            GROUPS[name].run()
            _warm.add(name)
    except BaseException:  # Ctrl-C while compiling: no helper outlives the program
        stop_helpers()
        raise
    return time.perf_counter() - started


__all__ = ["GROUPS", "KernelGroup", "compile_beside", "is_cached", "register", "stop_helpers", "warm_up"]
