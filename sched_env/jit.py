"""How sched-env compiles: the one decorator every numba kernel of the project uses (its flags set
here, once), and named index tables for kernel arrays whose slots are scalars.

``cache=True`` writes machine code to numba's on-disk cache (``__pycache__`` or
``$NUMBA_CACHE_DIR``) so that only a machine's first run compiles; ``nogil`` lets threads (two
searches, a web server) run kernels side by side; ``boundscheck=False`` because inputs are
checked at the Python boundary, never inside a kernel.
"""

from __future__ import annotations

from collections import namedtuple

from numba import njit

KERNEL_FLAGS = {"cache": True, "nogil": True, "boundscheck": False}
#: ``@kernel`` compiles a function with :data:`KERNEL_FLAGS`.
kernel = njit(**KERNEL_FLAGS)


def index_table(name: str, fields: tuple[str, ...]):
    """A namedtuple instance mapping each field to its slot (0, 1, ...): ``C = index_table("Counter",
    ("moves", "best"))`` gives ``ctr[C.best]``; a kernel reads it as a compile-time constant."""
    return namedtuple(name, fields)(*range(len(fields)))


__all__ = ["KERNEL_FLAGS", "index_table", "kernel"]
