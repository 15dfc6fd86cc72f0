"""Run module-level functions over many tasks: on a local spawn process pool or a Ray cluster.

One piece of machinery for benchmark cells, training sweeps and a training run's rollouts::

    with TaskPool(parallel=2, ray_address="local") as pool:   # "local" starts Ray here
        results = pool.map(function, [(a, b), (c, d)])        # in completion order

Ray and the pool are started once per ``with`` block, so a training loop pays for them once.
Ctrl-C (to the process or its whole group) stops the map at once: local workers ignore SIGINT and
are killed by the parent, and :class:`MapInterrupted` carries the results completed so far.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from instances import SchedEnvError


class MapInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`TaskPool.map`; ``results`` are the tasks completed before it."""

    def __init__(self, results: list) -> None:
        super().__init__(f"interrupted after {len(results)} completed tasks")
        self.results = results


def _ignore_interrupts() -> None:
    """A local worker's initializer: Ctrl-C is the parent's to handle (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TaskPool:
    """``parallel`` local worker processes (spawned: numba's threads make fork unsafe), or the Ray
    cluster at ``ray_address`` (``"local"`` starts one with ``parallel`` CPUs here)."""

    def __init__(self, *, parallel: int = 1, ray_address: str | None = None) -> None:
        self.parallel, self.ray_address = max(1, int(parallel)), ray_address
        self._ray = None
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> TaskPool:
        if self.ray_address:
            try:
                import ray
            except ImportError:
                raise SchedEnvError("--ray needs Ray: pip install 'sched-env[ray]'") from None
            if self.ray_address == "local":
                ray.init(num_cpus=self.parallel, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            else:
                try:
                    ray.init(address=self.ray_address, log_to_driver=False, ignore_reinit_error=True)
                except (ConnectionError, RuntimeError, ValueError) as error:
                    raise SchedEnvError(f"cannot reach the Ray cluster at {self.ray_address}: {error}") from None
            self._ray = ray
        else:
            self._pool = ProcessPoolExecutor(max_workers=self.parallel, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_ignore_interrupts)  # fmt: skip
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None
        if self._pool is not None:
            if exc and exc[0] is not None:  # interrupted or failed: stop the running tasks, do not wait for them
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.kill()
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map(self, function: Callable, tasks: list[tuple], progress: Callable[[int], None] | None = None,
            ordered: bool = False) -> list:  # fmt: skip
        """``function(*task)`` for every task; results in completion order (``ordered``: task order)."""
        progress = progress or (lambda n: None)
        results: list = []
        try:
            return self._map(function, tasks, progress, ordered, results)
        except KeyboardInterrupt:
            raise MapInterrupted(results) from None

    def _map(self, function, tasks, progress, ordered: bool, results: list) -> list:
        if self._ray is not None:
            remote = self._ray.remote(num_cpus=1)(function)
            refs = [remote.remote(*task) for task in tasks]
            if ordered:
                results.extend(self._ray.get(refs))
                progress(len(results))
                return results
            pending = list(refs)
            while pending:
                done, pending = self._ray.wait(pending, num_returns=1)
                results.extend(self._ray.get(done))
                progress(1)
            return results
        if self._pool is None:
            raise RuntimeError("use TaskPool inside a with block")
        futures = [self._pool.submit(function, *task) for task in tasks]
        if ordered:
            results.extend(f.result() for f in futures)
            progress(len(results))
            return results
        for future in as_completed(futures):
            results.append(future.result())
            progress(1)
        return results


def map_tasks(
    function, tasks: list[tuple], *, parallel: int = 1, ray_address: str | None = None, progress=None
) -> list:
    """``function(*task)`` for every task in one :class:`TaskPool`; results in completion order.
    ``function`` must be importable by name (a module-level function)."""
    with TaskPool(parallel=parallel, ray_address=ray_address) as pool:
        return pool.map(function, tasks, progress)
