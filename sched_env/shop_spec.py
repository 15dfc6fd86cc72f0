"""A user's own shop as a stream generator: what ``sched-env fit-shop`` estimates from a shop's
event log, and what ``sched-env evolve --shop`` trains on and ``experiments.learn_shop`` runs.

A :class:`ShopSpec` says how work arrives and runs in one shop:

* ``equipment``: the machines, by name (index ``m`` in the scenarios is ``equipment[m]``);
* ``mean_interarrival``: work orders arrive as a Poisson process with this mean gap;
* ``templates``: the routings, each with its share of the orders. A routing is a list of
  operations; an operation lists its ``(machine, planned duration)`` options (one option: a
  classic operation; several: any of those machines can run it);
* ``noise``: per machine, the quantiles of real / planned duration (the real duration of an
  operation there is its planned one times a draw from this distribution);
* ``mtbf``, ``mttr``: per machine, the mean up-time between breakdowns and the mean repair time
  (exponential, as in the standard simulation); ``mtbf`` 0: the machine never breaks down;
* ``allowance``: the quantiles of (due date - release) / the order's planned work;
* ``priorities``: the share of orders of each priority (the weight of their tardiness).

Quantiles are ``QUANTILES`` evenly spaced points from the minimum to the maximum; a draw is the
piecewise-linear inverse of that distribution, so a uniform range is two numbers apart at both
ends and everything between. Streams and seeds work as in :mod:`sched_env.standard`: seed ``s``
of purpose ``train`` / ``validation`` / ``test`` never shares a stream with another purpose, and
``warmup`` jobs run before the ``recorded`` ones that are counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instances import InvalidScenarioError, JobShopInstance
from sched_env.events import BREAKDOWN, RecordedStream, Scenario, alternating_windows, stream_rng

#: Points of each fitted distribution (minimum, the deciles between, maximum).
QUANTILES = 11
FORMAT = "sched-env shop spec 1"


def draw(quantiles, rng: np.random.Generator, size) -> np.ndarray:
    """Draws from the piecewise-linear distribution with these evenly spaced quantiles."""
    q = np.asarray(quantiles, dtype=float)
    return np.interp(rng.random(size), np.linspace(0.0, 1.0, len(q)), q)


def quantiles_of(values, points: int = QUANTILES) -> list[float]:
    """The evenly spaced quantiles (minimum to maximum) of observed values."""
    return [round(float(v), 4) for v in np.quantile(np.asarray(values, dtype=float), np.linspace(0, 1, points))]


@dataclass(frozen=True)
class Template:
    """One routing: per operation its ``(machine, planned duration)`` options; ``share`` of the orders."""

    operations: tuple[tuple[tuple[int, int], ...], ...]
    share: float = 1.0

    @property
    def planned_work(self) -> float:
        """Planned work of an order: per operation the mean over its options."""
        return float(sum(np.mean([d for _, d in options]) for options in self.operations))


@dataclass(frozen=True)
class ShopSpec(RecordedStream):
    """A shop's stream generator (see the module docstring); ``save`` / ``load`` round-trip it (JSON)."""

    equipment: tuple[str, ...]
    mean_interarrival: float
    templates: tuple[Template, ...]
    noise: tuple[tuple[float, ...], ...]
    mtbf: tuple[float, ...]
    mttr: tuple[float, ...]
    allowance: tuple[float, ...]
    priorities: dict[int, float] = field(default_factory=lambda: {1: 1.0})
    label: str = "shop"
    warmup: int = 300
    recorded: int = 1500

    def __post_init__(self) -> None:
        M, problems = len(self.equipment), []
        if M < 1:
            problems.append("it needs at least one piece of equipment")
        if not (self.mean_interarrival > 0 and math.isfinite(self.mean_interarrival)):
            problems.append(f"mean_interarrival must be a positive number, got {self.mean_interarrival}")
        if not self.templates:
            problems.append("it needs at least one routing template")
        for t, template in enumerate(self.templates):
            if not template.operations or template.share <= 0:
                problems.append(f"template {t} needs operations and a share > 0")
            for options in template.operations:
                if not options or any(not 0 <= m < M or d < 1 for m, d in options):
                    problems.append(f"template {t}: every option is (machine 0..{M - 1}, planned duration >= 1)")
                    break
        if not (len(self.noise) == len(self.mtbf) == len(self.mttr) == M):
            problems.append(f"noise, mtbf and mttr need one entry per piece of equipment ({M})")
        if any(len(q) < 2 or min(q) <= 0 or list(q) != sorted(q) for q in self.noise):
            problems.append("each machine's noise is >= 2 increasing quantiles of real / planned duration, all > 0")
        if any(b < 0 or r < 0 or (b > 0) != (r > 0) for b, r in zip(self.mtbf, self.mttr)):
            problems.append("mtbf and mttr are both > 0 (breakdowns) or both 0 (none) per machine")
        if len(self.allowance) < 2 or min(self.allowance) < 0 or list(self.allowance) != sorted(self.allowance):
            problems.append("allowance is >= 2 increasing quantiles of (due - release) / planned work, all >= 0")
        if not self.priorities or any(int(w) < 1 or s < 0 for w, s in self.priorities.items()):
            problems.append("priorities map weights >= 1 to their shares")
        if self.warmup < 0 or self.recorded < 1:
            problems.append("warmup >= 0 and recorded >= 1 jobs")
        if problems:
            raise InvalidScenarioError(f"shop spec {self.label!r}: " + "; ".join(problems))

    # ------------------------------------------------------------- what the streams look like
    @property
    def name(self) -> str:
        return f"shop:{self.label}-w{self.warmup}-r{self.recorded}"

    @property
    def machines(self) -> int:
        return len(self.equipment)

    @property
    def flexible(self) -> bool:
        return any(len(options) > 1 for t in self.templates for options in t.operations)

    def _shares(self) -> np.ndarray:
        shares = np.array([t.share for t in self.templates], dtype=float)
        return shares / shares.sum()

    @property
    def mean_ops(self) -> float:
        return float(self._shares() @ [len(t.operations) for t in self.templates])

    @property
    def mean_duration(self) -> float:
        return float(self._shares() @ [t.planned_work for t in self.templates]) / self.mean_ops

    @property
    def utilisation(self) -> float:
        """Planned work arriving per unit of time over the machines' capacity (noise and downtime aside)."""
        return self.mean_ops * self.mean_duration / (self.mean_interarrival * self.machines)

    # ------------------------------------------------------------- streams
    def scenario(self, seed: int, purpose: str = "test") -> Scenario:
        """Stream ``seed`` of the ``purpose`` family (train / validation / test), in arrival order."""
        rng = stream_rng(purpose, seed, 17)
        n, M = self.n_jobs, self.machines
        arrivals = np.round(np.cumsum(rng.exponential(self.mean_interarrival, size=n))).astype(np.int64)
        chosen = rng.choice(len(self.templates), size=n, p=self._shares())
        factors = [draw(q, rng, 4 * n + 64) for q in self.noise]  # per machine, used in turn
        used = [0] * M
        jobs, real = [], []
        for t in chosen.tolist():
            jobs.append([list(options) for options in self.templates[t].operations])
            row = []
            for options in self.templates[t].operations:
                times = []
                for m, d in options:
                    if used[m] == len(factors[m]):
                        factors[m], used[m] = draw(self.noise[m], rng, 4 * n + 64), 0
                    times.append((m, max(1, int(round(d * factors[m][used[m]])))))
                    used[m] += 1
                row.append(times)
            real.append(row)
        work = np.array([self.templates[t].planned_work for t in chosen.tolist()])
        due = arrivals + np.round(draw(self.allowance, rng, n) * work).astype(np.int64)
        weights_list = sorted(self.priorities)
        shares = np.array([self.priorities[w] for w in weights_list], dtype=float)
        weights = np.asarray(weights_list, dtype=np.int64)[
            rng.choice(len(weights_list), size=n, p=shares / shares.sum())
        ]
        instance = JobShopInstance.from_alternatives(
            jobs, n_machines=M, release_dates=arrivals, due_dates=due, weights=weights,
            name=f"{self.name}#{purpose}{seed}",
        )  # fmt: skip
        realized = _realized_matrix(instance, real)
        horizon = int(arrivals[-1] + 20 * self.mean_ops * self.mean_duration)
        windows = [(m, s, e, BREAKDOWN) for m in range(M) if self.mtbf[m] > 0
                   for s, e in alternating_windows(rng, self.mtbf[m], self.mttr[m], horizon)]  # fmt: skip
        return Scenario(
            instance, realized_durations=realized, downtimes=np.array(windows, dtype=np.int64).reshape(-1, 4),
            interruption="resume", name=instance.name,
            metadata={"setting": self.name, "seed": int(seed), "purpose": purpose},
        )  # fmt: skip

    # ------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["templates"] = [{"share": t.share, "operations": [[list(o) for o in ops] for ops in t.operations]}
                             for t in self.templates]  # fmt: skip
        data["priorities"] = {str(w): s for w, s in sorted(self.priorities.items())}
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: Any, source: str = "shop spec") -> ShopSpec:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidScenarioError(f"{source}: not a shop spec (its 'format' must be {FORMAT!r});"
                                       " write one with `sched-env fit-shop`")  # fmt: skip
        try:
            templates = tuple(
                Template(tuple(tuple((int(m), int(d)) for m, d in ops) for ops in t["operations"]), float(t["share"]))
                for t in data["templates"]
            )
            return cls(
                equipment=tuple(str(e) for e in data["equipment"]), mean_interarrival=float(data["mean_interarrival"]),
                templates=templates, noise=tuple(tuple(float(v) for v in q) for q in data["noise"]),
                mtbf=tuple(float(v) for v in data["mtbf"]), mttr=tuple(float(v) for v in data["mttr"]),
                allowance=tuple(float(v) for v in data["allowance"]),
                priorities={int(w): float(s) for w, s in data["priorities"].items()},
                label=str(data.get("label", "shop")), warmup=int(data.get("warmup", 300)),
                recorded=int(data.get("recorded", 1500)),
            )  # fmt: skip
        except InvalidScenarioError as error:  # the fields parsed, their values are wrong: say in which file
            raise InvalidScenarioError(f"{source}: {error}" if source != "shop spec" else str(error)) from None
        except KeyError as error:
            raise InvalidScenarioError(
                f"{source}: the field {error} is missing; `sched-env fit-shop` writes them all"
            ) from None
        except (TypeError, ValueError) as error:
            raise InvalidScenarioError(f"{source}: a field has the wrong type or shape ({error})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ShopSpec:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidScenarioError(f"cannot read the shop spec {path}: {error}") from None
        return cls.from_dict(data, source=str(path))


def _realized_matrix(instance: JobShopInstance, real: list) -> np.ndarray:
    """Real durations as the Scenario wants them: (jobs, ops) for classic, (jobs, ops, machines) else."""
    if not instance.is_flexible:
        out = np.zeros((instance.n_jobs, instance.max_ops), dtype=np.int64)
        for j, row in enumerate(real):
            for k, times in enumerate(row):
                out[j, k] = times[0][1]
        return out
    out = np.full((instance.n_jobs, instance.max_ops, instance.n_machines), -1, dtype=np.int64)
    for j, row in enumerate(real):
        for k, times in enumerate(row):
            for m, d in times:
                out[j, k, m] = d
    return out
