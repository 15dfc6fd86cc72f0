"""A learned dispatcher for the long-run dynamic shop, trained by evolution strategies.

The policy is a priority network: every allowed job is scored from its dynamic features
(``DynamicJobShop-v0``'s columns: queues, WINQ, NPT, slack per operation, the ATC index, ...)
by ``w . x + v . tanh(softsign(x) W + b) + c``, and the highest score starts. With context (the
default) every per-job weight is also shifted by the shop's context columns (jobs and work per
machine, the share of late jobs, their mean critical ratio, the share of machines down, the machine
count, how early the shop is in its episode, whether it drains): ``(w + G ctx) . x``, so the
priority of a light shop can differ from a loaded one's, and a shift's first and last jobs' from a
long run's (``--early-only`` searches only the gates on ``shop_early``, ``--drain-only`` those on
``shop_draining``, on short episodes: ``--mix episodes``). On the
flexible mix (``--mix flexible``) it also picks the machine: each startable (job, machine) pair
scores the job's score plus ``u . pair features`` (duration there, machine free in, end there).
It starts as ATC or as the shipped network (gates 0: the same choices) and is improved
by antithetic evolution strategies with centred ranks and Adam (Salimans et al. 2017): each
generation perturbs the weights, runs every perturbation on the same few generated streams
(common random numbers) inside one compiled kernel call, and moves toward the perturbations
whose mean weighted tardiness, relative to ATC's on the same stream (``--reference best``: the better
of ATC and WSPT; ``--loss-penalty``: a loss counts more than a gain), was lowest. On a user's shop
(``--shop``) it is the generation's total weighted tardiness over ATC's: the ratio of means the shop
is judged by, where a few congested streams carry most of the tardiness. The step is constant, or
decays along a cosine over the run (``--final-learning-rate``) to settle on a network. Streams are
drawn from a mix of shops (``--mix``: standard, wide, broad, episodes, flexible or
flexible-episodes), never from the test seeds; the checkpoint kept is the one best on generated
validation streams.

    sched-env evolve --minutes 40 --seed 0 --out runs/evolve-0     # checkpoints, progress.csv, policy.onnx
    sched-env evolve --resume runs/evolve-0 --minutes 20           # continue the same run
    sched-env evolve --ray local ...                               # the rollouts on Ray workers

The network is shipped as ONNX (``agents/models/dynamic.onnx``): masked logits over the slots (a
flexible-mix network: over the (slot, machine) pairs), the same interface as every other sched-env
policy, run by onnxruntime alone, and by the kernels at the speed of a rule.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import EvolutionConfig
from instances import SchedEnvError
from sched_env import compiled as K
from sched_env.standard import STANDARD_SETTINGS, StandardSetting, run_streams, setting, weighted_tardiness_mean

F = K.N_DYNAMIC_FEATURES
FJ, C = K.N_DYNAMIC_JOB_FEATURES, K.N_DYNAMIC_CONTEXT
#: Shops the validation score reads: the standard settings and four it never trains on exactly.
VALIDATION_SETTINGS = STANDARD_SETTINGS + ("missing-0.80-2", "full-0.90-3-bl5-rtf1", "missing-0.95-6-m5",
                                           "missing-0.90-2.5-m15-r2000")  # fmt: skip


# ---------------------------------------------------------------------- the network
P = K.N_PAIR_FEATURES
#: A network that picks machines starts by ranking a job's startable machines by earliest end,
#: by this small weight: the job first, then the machine (the ``eet`` machine rule).
EARLIEST_END_START = -0.05


def n_parameters(hidden: int, context: bool = False, machines: bool = False) -> int:
    """The flat size of a network with ``hidden`` units, with or without the context gates, and
    with the pair weights of a network that picks machines (which has the gates too)."""
    return K.priority_network_sizes(hidden)[2 if machines else int(context)]


def has_gates(theta: np.ndarray, hidden: int) -> bool:
    return len(theta) in K.priority_network_sizes(hidden)[1:]


def initial_parameters(hidden: int, rng: np.random.Generator, start: str = "atc", context: bool = False,
                       machines: bool = False) -> np.ndarray:  # fmt: skip
    """Where a run starts: ``atc`` is ATC exactly (skip weight 1 on ``atc_priority``); ``shipped`` is
    the shipped dispatcher's priority (``agents/models/dynamic.onnx``), and a ``.onnx`` path that
    evolved network's. Hidden weights are random with output 0, and new context gates are 0, so the
    network starts as that priority; ``machines``: its pair weights start as earliest-end among a
    job's machines (or as the start network's own)."""
    theta = np.zeros(n_parameters(hidden, context, machines))
    if machines:
        theta[-P + K.PF.earliest_end] = EARLIEST_END_START
    theta[: F * hidden] = rng.normal(0.0, 1.0 / math.sqrt(F), F * hidden)
    skip = F * hidden + 2 * hidden
    if start == "atc":
        theta[skip + K.DF.atc_priority] = 1.0
    elif start == "shipped" or start.endswith(".onnx"):
        from agents.loading import load_policy

        shipped_hidden, parameters = load_policy(None if start == "shipped" else start, kind="dynamic").network
        shipped = unpack(np.asarray(parameters, dtype=np.float64), shipped_hidden)
        theta[skip : skip + F], theta[skip + F] = shipped["skip"], shipped["bias"][0]
        if (context or machines) and "gates" in shipped:
            theta[n_parameters(hidden) : n_parameters(hidden, True)] = shipped["gates"].ravel()
        if machines and "pairs" in shipped:
            theta[-P:] = shipped["pairs"]
    else:
        raise SchedEnvError(f"start must be 'atc', 'shipped' or a network's .onnx file, got {start!r}")
    return theta


def unpack(theta: np.ndarray, hidden: int) -> dict[str, np.ndarray]:
    """The weight matrices of a flat parameter vector (the kernels' layout); ``gates`` (FJ x C)
    only in a network with context gates."""
    H = hidden
    base = n_parameters(H)
    weights = {
        "W1": theta[: F * H].reshape(F, H), "b1": theta[F * H : F * H + H], "w2": theta[F * H + H : F * H + 2 * H],
        "skip": theta[F * H + 2 * H : F * H + 2 * H + F], "bias": theta[F * H + 2 * H + F : base],
    }  # fmt: skip
    if has_gates(theta, H):
        weights["gates"] = theta[base : base + FJ * C].reshape(FJ, C)
    if K.picks_machines(H, theta):
        weights["pairs"] = theta[base + FJ * C :]
    return weights


def score(theta: np.ndarray, hidden: int, jobs: np.ndarray) -> np.ndarray:
    """Scores (..., J) of feature rows (..., J, F): the network in numpy (the kernels' twin)."""
    w = unpack(theta, hidden)
    soft = jobs / (1.0 + np.abs(jobs))
    out = jobs @ w["skip"] + np.tanh(soft @ w["W1"] + w["b1"]) @ w["w2"] + w["bias"][0]
    if "gates" in w:  # each per-job weight moved by the context columns
        out = out + ((jobs[..., FJ:] @ w["gates"].T) * jobs[..., :FJ]).sum(-1)
    return out


def pair_scores(theta: np.ndarray, hidden: int, jobs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Scores (..., J, M) of (job, machine) pairs of a network that picks machines: the job's
    score plus the pair weights . the pair features (..., J, M, P) (the kernels' twin)."""
    return score(theta, hidden, jobs)[..., None] + pairs @ unpack(theta, hidden)["pairs"]


def export_onnx(theta: np.ndarray, hidden: int, out: str | Path, info: dict[str, Any]) -> Path:
    """The network as an ONNX graph ``(jobs (B, J, F), mask (B, J)) -> logits (B, J)`` with the
    masking inside (masked slots at -1e8) and ``info`` in its ``sched_env`` metadata; a network
    that picks machines is a pair policy, ``(jobs, pairs (B, J, M, P), mask (B, J * M)) -> logits
    (B, J * M)``, action ``job * M + machine``, as the flexible env's."""
    import onnx
    from onnx import TensorProto, helper

    theta = np.asarray(theta, dtype=np.float64)
    nodes, inits = _score_graph(unpack(theta, hidden), hidden)
    inputs = [helper.make_tensor_value_info("jobs", TensorProto.FLOAT, ["batch", "jobs", F])]
    machines = K.picks_machines(hidden, theta)
    if machines:
        inputs.append(helper.make_tensor_value_info("pairs", TensorProto.FLOAT, ["batch", "jobs", "machines", P]))
    inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "actions"]))
    graph = helper.make_graph(
        nodes, "sched_env_priority_network", inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "actions"])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sched-env evolve")
    model.ir_version = 8
    entry = model.metadata_props.add()
    network = {"hidden": hidden, "parameters": [float(x) for x in theta]}
    meta = {"n_features": F, "kind": "dynamic", "pairs": machines, **info, "priority_network": network}
    entry.key, entry.value = "sched_env", json.dumps(meta)
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def _score_graph(weights: dict[str, np.ndarray], hidden: int) -> tuple[list, list]:
    """The ONNX nodes and initialisers of :func:`score` (and :func:`pair_scores`), masked."""
    from onnx import helper, numpy_helper

    from agents.loading import MASKED_LOGIT

    w = {k: v.astype(np.float32) for k, v in weights.items()}
    tensor = numpy_helper.from_array
    inits = [
        tensor(w["skip"].reshape(F, 1), "skip"), tensor(w["bias"], "bias"),
        tensor(np.array([-1], dtype=np.int64), "last_axis"), tensor(np.array(MASKED_LOGIT, dtype=np.float32), "masked"),
        tensor(np.array(0.0, dtype=np.float32), "zero"),
    ]  # fmt: skip
    nodes = [helper.make_node("MatMul", ["jobs", "skip"], ["from_skip"])]
    summed = "from_skip"
    if hidden:
        inits += [tensor(w["W1"], "W1"), tensor(w["b1"], "b1"), tensor(w["w2"].reshape(hidden, 1), "w2")]
        nodes += [
            helper.make_node("Softsign", ["jobs"], ["soft"]),
            helper.make_node("MatMul", ["soft", "W1"], ["hidden_in"]),
            helper.make_node("Add", ["hidden_in", "b1"], ["hidden_pre"]),
            helper.make_node("Tanh", ["hidden_pre"], ["hidden"]),
            helper.make_node("MatMul", ["hidden", "w2"], ["from_hidden"]),
            helper.make_node("Add", ["from_hidden", summed], ["with_hidden"]),
        ]
        summed = "with_hidden"
    if "gates" in w:  # (context columns @ gates^T) * job columns, summed: the per-job weights' shift
        inits += [tensor(np.ascontiguousarray(w["gates"].T), "gates_t"), tensor(np.array([0], dtype=np.int64), "start"),
                  tensor(np.array([FJ], dtype=np.int64), "split"), tensor(np.array([F], dtype=np.int64), "end")]  # fmt: skip
        nodes += [
            helper.make_node("Slice", ["jobs", "start", "split", "last_axis"], ["job_columns"]),
            helper.make_node("Slice", ["jobs", "split", "end", "last_axis"], ["context_columns"]),
            helper.make_node("MatMul", ["context_columns", "gates_t"], ["gate_shift"]),
            helper.make_node("Mul", ["gate_shift", "job_columns"], ["gated_terms"]),
            helper.make_node("ReduceSum", ["gated_terms", "last_axis"], ["from_gates"], keepdims=1),
            helper.make_node("Add", ["from_gates", summed], ["with_gates"]),
        ]
        summed = "with_gates"
    nodes.append(helper.make_node("Add", [summed, "bias"], ["scored"]))  # (B, J, 1)
    if "pairs" in w:  # + pairs (B, J, M, P) @ u, flattened to actions job * M + machine
        inits += [tensor(w["pairs"].reshape(P, 1), "u"), tensor(np.array([0, -1], dtype=np.int64), "flat")]
        nodes += [
            helper.make_node("MatMul", ["pairs", "u"], ["pair_in"]),
            helper.make_node("Squeeze", ["pair_in", "last_axis"], ["pair_terms"]),
            helper.make_node("Add", ["pair_terms", "scored"], ["pair_scored"]),
            helper.make_node("Reshape", ["pair_scored", "flat"], ["scores"]),
        ]
    else:
        nodes.append(helper.make_node("Squeeze", ["scored", "last_axis"], ["scores"]))
    nodes += [
        helper.make_node("Greater", ["mask", "zero"], ["allowed"]),
        helper.make_node("Where", ["allowed", "scores", "masked"], ["logits"]),
    ]
    return nodes, inits


# ---------------------------------------------------------------------- streams and fitness
def training_setting(config: EvolutionConfig, rng: np.random.Generator):
    """One shop of the training mix, or the user's shop (``config.shop``); never a test stream:
    streams use the ``train`` seeds."""
    if config.shop:
        return shop_spec(config.shop).scaled(config.train_warmup, config.train_recorded)
    if config.mix == "wide":
        return wide_setting(rng, config.train_warmup, config.train_recorded)
    if config.mix == "broad":
        return broad_setting(rng, config.train_warmup, config.train_recorded)
    if config.mix == "episodes":
        return episode_setting(rng)
    if config.mix == "flexible":
        return flexible_setting(rng, config.train_warmup, config.train_recorded)
    if config.mix == "flexible-episodes":
        return flexible_episode_setting(rng)
    broken = rng.random() < config.breakdown_probability
    return StandardSetting(
        routing="full" if rng.random() < 0.4 else "missing",
        utilisation=round(float(rng.uniform(*config.utilisation)), 3),
        allowance=round(float(rng.uniform(*config.allowance)), 2),
        breakdown_level=float(rng.choice([0.025, 0.05])) if broken else 0.0,
        repair_factor=float(rng.choice([1.0, 5.0, 10.0])) if broken else 0.0,
        machines=int(rng.choice(config.machines)),
        max_duration=int(rng.choice([49, 99, 99])),
        warmup=config.train_warmup,
        recorded=config.train_recorded,
    )


def wide_setting(rng: np.random.Generator, warmup: int, recorded: int) -> StandardSetting:
    """One shop of the wide mix: 3-30 machines, both routings, utilisation 0.70-0.98, due-date
    allowance 1.2-8 (log-uniform), no breakdowns, the standard ones, frequent-and-short or
    rare-and-long ones, longest operation 19-199, and three streams in ten a finite episode of
    20-300 jobs from an empty shop. Long streams are shortened on shops with many operations
    per job, so that every stream costs about the same."""
    machines = int(rng.integers(3, 31))
    routing = "full" if rng.random() < 0.4 else "missing"
    level, repair = breakdown_pattern(rng, ["none", "none", "standard", "frequent-short", "rare-long"])
    shop = StandardSetting(
        routing=routing, utilisation=round(float(rng.uniform(0.70, 0.98)), 2),
        allowance=round(float(np.exp(rng.uniform(np.log(1.2), np.log(8.0)))), 2), breakdown_level=level,
        repair_factor=repair, machines=machines, max_duration=int(rng.choice([19, 49, 99, 199])),
    )  # fmt: skip
    if rng.random() < 0.3:
        return replace(shop, warmup=0, recorded=int(rng.integers(20, 301)), finite=True)
    share = min(1.0, 8.0 / shop.mean_ops)
    return shop.scaled(max(50, round(warmup * share)), max(200, round(recorded * share)))


def breakdown_pattern(rng: np.random.Generator, patterns: list[str]) -> tuple[float, float]:
    """(breakdown level, repair factor) of a pattern drawn from ``patterns``: none, the standard
    ones (Holthaus), frequent-and-short or rare-and-long."""
    pattern = str(rng.choice(patterns))
    return {  # every pattern's numbers are drawn, whichever is taken: the wide mix's streams stay as they were
        "none": (0.0, 0.0),
        "standard": (float(rng.choice([0.025, 0.05])), float(rng.choice([1.0, 5.0, 10.0]))),
        "frequent-short": (round(float(rng.uniform(0.03, 0.10)), 3), round(float(rng.uniform(0.25, 1.0)), 2)),
        "rare-long": (round(float(rng.uniform(0.02, 0.06)), 3), round(float(rng.uniform(10.0, 25.0)), 1)),
    }[pattern]


#: The wide mix's validation settings: drawn once from the mix itself (never a published setting).
WIDE_VALIDATION = tuple(wide_setting(np.random.default_rng((2026, i)), 1000, 5000).name for i in range(16))


def episode_setting(rng: np.random.Generator) -> StandardSetting:
    """A short finite episode as a shift sees it: 20-60 jobs, 0-10 of them waiting at time 0, tight
    due dates (allowance 1.2-3), utilisation 0.75-0.95, duration noise up to 20 % in three of five,
    3-30 machines, the wide mix's breakdown patterns."""
    n = int(rng.integers(20, 61))
    level, repair = breakdown_pattern(rng, ["none", "none", "standard", "frequent-short", "rare-long"])
    return StandardSetting(
        routing="full" if rng.random() < 0.5 else "missing", utilisation=round(float(rng.uniform(0.75, 0.95)), 2),
        allowance=round(float(np.exp(rng.uniform(np.log(1.2), np.log(3.0)))), 2), breakdown_level=level,
        repair_factor=repair, machines=int(rng.integers(3, 31)), max_duration=int(rng.choice([19, 49, 99, 199])),
        warmup=0, recorded=n, finite=True, initial=int(rng.integers(0, 11)),
        noise=round(float(rng.uniform(0.0, 0.2)), 2) if rng.random() < 0.6 else 0.0,
    )  # fmt: skip


def loaded_setting(rng: np.random.Generator, warmup: int, recorded: int) -> StandardSetting:
    """A loaded long-run shop, where WSPT is hard to beat: utilisation 0.88-0.98, allowance 1.2-4,
    breakdowns in four of five (standard, frequent-and-short or rare-and-long), 3-30 machines."""
    level, repair = breakdown_pattern(rng, ["none", "standard", "standard", "frequent-short", "rare-long"])
    shop = StandardSetting(
        routing="full" if rng.random() < 0.4 else "missing", utilisation=round(float(rng.uniform(0.88, 0.98)), 2),
        allowance=round(float(np.exp(rng.uniform(np.log(1.2), np.log(4.0)))), 2), breakdown_level=level,
        repair_factor=repair, machines=int(rng.integers(3, 31)), max_duration=int(rng.choice([19, 49, 99, 199])),
    )  # fmt: skip
    share = min(1.0, 8.0 / shop.mean_ops)
    return shop.scaled(max(50, round(warmup * share)), max(200, round(recorded * share)))


def broad_setting(rng: np.random.Generator, warmup: int, recorded: int) -> StandardSetting:
    """One shop of the broad mix: the wide mix half of the time, a short episode that starts with work
    waiting (:func:`episode_setting`) a quarter, a loaded shop (:func:`loaded_setting`) a quarter."""
    draw = rng.random()
    if draw < 0.5:
        return wide_setting(rng, warmup, recorded)
    return episode_setting(rng) if draw < 0.75 else loaded_setting(rng, warmup, recorded)


#: The broad mix's validation settings: the wide mix's, 8 short episodes and 8 loaded shops drawn once.
BROAD_VALIDATION = (
    WIDE_VALIDATION + tuple(episode_setting(np.random.default_rng((2028, i))).name for i in range(8))
    + tuple(loaded_setting(np.random.default_rng((2029, i)), 1000, 5000).name for i in range(8))
)  # fmt: skip
#: The episodes mix's validation settings: 16 short episodes drawn once (the broad mix's 8 among them).
EPISODE_VALIDATION = tuple(episode_setting(np.random.default_rng((2028, i))).name for i in range(16))


def flexible_setting(rng: np.random.Generator, warmup: int, recorded: int) -> StandardSetting:
    """One shop of the flexible mix, where the network picks the machine too: 5-15 machines, both
    routings, each operation on up to 2-3 machines, speed spread 0.1-0.3, utilisation 0.90-0.99
    (alternatives take load off the route: a flexible shop is late only when loaded), allowance
    1.5-6, the standard breakdowns in four streams in ten."""
    broken = rng.random() < 0.4
    return StandardSetting(
        routing="full" if rng.random() < 0.4 else "missing", utilisation=round(float(rng.uniform(0.90, 0.99)), 2),
        allowance=round(float(rng.uniform(1.5, 6.0)), 2),
        breakdown_level=float(rng.choice([0.025, 0.05])) if broken else 0.0,
        repair_factor=float(rng.choice([1.0, 5.0, 10.0])) if broken else 0.0, machines=int(rng.integers(5, 16)),
        max_duration=int(rng.choice([49, 99, 99])), warmup=warmup, recorded=recorded,
        alternatives=int(rng.integers(2, 4)), speed_spread=round(float(rng.uniform(0.1, 0.3)), 2),
    )  # fmt: skip


#: The flexible mix's validation settings, drawn once from the mix (none of FLEXIBLE_SETTINGS).
FLEXIBLE_VALIDATION = tuple(flexible_setting(np.random.default_rng((2027, i)), 300, 1500).name for i in range(8))


def flexible_episode_setting(rng: np.random.Generator) -> StandardSetting:
    """A short episode of a flexible shop (:func:`episode_setting` with alternatives): 20-60 jobs, 0-10
    waiting at time 0, allowance 1.2-3, utilisation 0.80-0.99, 5-20 machines, each operation on up to 2-3
    machines, speed spread 0.1-0.3, duration noise up to 20 % in three of five, the standard breakdowns
    in two of five."""
    n = int(rng.integers(20, 61))
    broken = rng.random() < 0.4
    return StandardSetting(
        routing="full" if rng.random() < 0.5 else "missing", utilisation=round(float(rng.uniform(0.80, 0.99)), 2),
        allowance=round(float(np.exp(rng.uniform(np.log(1.2), np.log(3.0)))), 2),
        breakdown_level=float(rng.choice([0.025, 0.05])) if broken else 0.0,
        repair_factor=float(rng.choice([1.0, 5.0, 10.0])) if broken else 0.0, machines=int(rng.integers(5, 21)),
        max_duration=int(rng.choice([49, 99, 99])), warmup=0, recorded=n, finite=True,
        initial=int(rng.integers(0, 11)), noise=round(float(rng.uniform(0.0, 0.2)), 2) if rng.random() < 0.6 else 0.0,
        alternatives=int(rng.integers(2, 4)), speed_spread=round(float(rng.uniform(0.1, 0.3)), 2),
    )  # fmt: skip


#: The flexible episodes mix's validation settings: 16 drawn once.
FLEXIBLE_EPISODE_VALIDATION = tuple(flexible_episode_setting(np.random.default_rng((2031, i))).name for i in range(16))


def shop_spec(path: str):
    """The user's shop spec (``sched-env fit-shop``) a run trains on, read once per process."""
    return setting(f"shop:{path}")


def _streams(specs: list[tuple]):
    """The settings and scenarios of stream specs ``(setting or its name, seed, purpose)``."""
    settings = [setting(name) for name, _, _ in specs]
    return settings, [s.scenario(seed, purpose) for s, (_, seed, purpose) in zip(settings, specs)]


def scenario_tardiness(settings, scenarios, *, rules=None, params=None, hidden: int = 0) -> np.ndarray:
    """Mean weighted tardiness of each stream ``scenarios[i]`` of ``settings[i]``, run to its end by
    rule id ``rules[i]`` or by the network ``params[i]`` (all in one kernel call)."""
    runs = run_streams(scenarios, rules=rules, params=params, hidden=hidden)
    return np.array([weighted_tardiness_mean(s, c, end) for s, c, (_, end, _) in zip(settings, scenarios, runs)])


def stream_tardiness(networks: np.ndarray, hidden: int, specs: list[tuple[str, int, str]]) -> np.ndarray:
    """Mean weighted tardiness (networks x streams) of every network on every stream ``(setting,
    seed, purpose)``. A module-level function: Ray workers run it."""
    settings, scenarios = _streams(specs)
    n, b = len(networks), len(scenarios)
    wt = scenario_tardiness(settings * n, scenarios * n, params=np.repeat(networks, b, axis=0), hidden=hidden)
    return wt.reshape(n, b)


#: The rules a run measures itself against (``--reference``): ATC, or the better of ATC and WSPT (the
#: best rules of the standard simulation: WSPT where the shop is loaded and due dates tight).
REFERENCE_RULES = {"atc": ("atc",), "best": ("atc", "wspt")}


def rule_tardiness(specs: list[tuple[str, int, str]], rules: tuple[str, ...] = ("atc",)) -> np.ndarray:
    """Each rule's (rows) mean weighted tardiness on each stream (columns): the fitness's reference."""
    settings, scenarios = _streams(specs)
    rows = [scenario_tardiness(settings, scenarios, rules=[getattr(K.RULE, rule)] * len(scenarios)) for rule in rules]
    return np.array(rows, dtype=float)


class Evaluator:
    """Runs networks on streams here (one parallel kernel call) or split over a TaskPool."""

    def __init__(self, pool=None, chunks: int = 1) -> None:
        self.pool, self.chunks = pool, max(1, chunks)

    def __call__(self, networks: np.ndarray, hidden: int, specs) -> np.ndarray:
        if self.pool is None:
            return stream_tardiness(networks, hidden, specs)
        parts = np.array_split(np.arange(len(networks)), min(self.chunks, len(networks)))
        tasks = [(networks[p], hidden, specs) for p in parts if len(p)]
        return np.concatenate(self.pool.map(stream_tardiness, tasks, ordered=True))


def log_ratio(wt: np.ndarray, reference: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """log((wt + floor) / (reference + floor)) per stream: 0 is the reference, negative is better."""
    return np.log((wt + floor) / (reference + floor))


def penalised(log_ratios: np.ndarray, penalty: float) -> np.ndarray:
    """A log ratio with a loss (above 0: worse than the reference) counted ``1 + penalty`` times: a
    run may then not buy large gains on light shops with small losses on loaded ones."""
    return log_ratios + penalty * np.maximum(log_ratios, 0.0)


# ---------------------------------------------------------------------- the run
@dataclass
class RunState:
    """Everything a resumed run needs: the mean, Adam's moments, the counters, the best so far."""

    theta: np.ndarray
    m: np.ndarray
    v: np.ndarray
    generation: int = 0
    minutes: float = 0.0
    best_theta: np.ndarray | None = None
    best_score: float = math.inf
    scales: np.ndarray | None = None  # per-parameter search scale (see :func:`parameter_scales`)

    def save(self, path: Path, config: EvolutionConfig) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp, theta=self.theta, m=self.m, v=self.v, generation=self.generation, minutes=self.minutes,
            best_theta=self.best_theta if self.best_theta is not None else self.theta, best_score=self.best_score,
            scales=self.scales, config=json.dumps(asdict(config)),
        )  # fmt: skip
        tmp.replace(path)  # never a half-written checkpoint

    @classmethod
    def load(cls, path: Path) -> tuple[RunState, EvolutionConfig]:
        if not path.is_file():
            raise SchedEnvError(f"no checkpoint at {path}; start a run with `sched-env evolve --out DIR` first")
        data = np.load(path)
        raw = json.loads(str(data["config"]))
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k != "extra"}  # older runs: unread
        raw.setdefault("context", False)  # runs from before the context gates had none
        state = cls(data["theta"], data["m"], data["v"], int(data["generation"]), float(data["minutes"]),
                    data["best_theta"], float(data["best_score"]), data["scales"])  # fmt: skip
        config = EvolutionConfig(**raw)
        if len(state.theta) != n_parameters(config.hidden, config.context, config.picks_machines):
            raise SchedEnvError(f"{path} holds a network of {len(state.theta)} parameters, made for an older observation"
                                f" than today's {F} columns: start a new run (sched-env evolve --out DIR)")  # fmt: skip
        return state, config


#: Validation streams of a user's shop per validation seed. One shop's streams vary a lot: on 8, the
#: learn-your-shop runs' best validation read 0.914-0.939 x ATC and their test 0.958-0.975; on 32,
#: 0.957-0.974 and 0.959-0.977 (``training_learn_shop_v32.md``): a figure the user can trust.
SHOP_VALIDATION_STREAMS = 16


def validation_specs(seeds: int, length: tuple[int, int] = (1000, 5000), shop: str | None = None,
                     mix: str = "standard") -> list[tuple]:  # fmt: skip
    """The validation streams: each validation setting ``seeds`` times (a finite episode ``10 x
    seeds`` times), or the user's shop (``shop``, a spec file) ``SHOP_VALIDATION_STREAMS x seeds``
    times, at its own length."""
    if shop:
        return [(shop_spec(shop), seed, "validation") for seed in range(SHOP_VALIDATION_STREAMS * seeds)]
    if mix == "flexible":  # drawn at 300 + 1 500 jobs: rescaled as the wide mix's
        settings = [StandardSetting.parse(name) for name in FLEXIBLE_VALIDATION]
        settings = [s.scaled(max(1, round(s.warmup * length[0] / 1000)), max(1, round(s.recorded * length[1] / 5000)))
                    for s in settings]  # fmt: skip
        return [(s.name, seed, "validation") for s in settings for seed in range(2 * seeds)]
    if mix in ("wide", "broad", "episodes", "flexible-episodes"):
        names = {"wide": WIDE_VALIDATION, "broad": BROAD_VALIDATION, "episodes": EPISODE_VALIDATION,
                 "flexible-episodes": FLEXIBLE_EPISODE_VALIDATION}[mix]  # fmt: skip
        settings = [StandardSetting.parse(name) for name in names]  # drawn at 1 000 + 5 000: rescaled
        settings = [s if s.finite else s.scaled(max(1, round(s.warmup * length[0] / 1000)),
                                                max(1, round(s.recorded * length[1] / 5000))) for s in settings]  # fmt: skip
        return [(s.name, seed, "validation") for s in settings for seed in range(seeds * (10 if s.finite else 1))]
    names = [StandardSetting.parse(n).scaled(*length).name for n in VALIDATION_SETTINGS]
    return [(name, seed, "validation") for name in names for seed in range(seeds)]


def validation_score(evaluate: Evaluator, theta: np.ndarray, hidden: int, specs, reference: np.ndarray,
                     penalty: float = 0.0) -> float:  # fmt: skip
    """Geometric mean over the validation settings of (network's mean WT / the reference's), the
    reference being the best of the rules (``reference``: rules x streams) on each setting; with a
    ``penalty``, a setting's loss counts ``1 + penalty`` times (:func:`penalised`)."""
    return validation_ratio(evaluate(theta[None, :], hidden, specs)[0], specs, reference, penalty)


def validation_ratio(wt: np.ndarray, specs, reference: np.ndarray, penalty: float = 0.0) -> float:
    """:func:`validation_score` of a network whose weighted tardiness on ``specs`` is ``wt``."""
    names = [setting(name).name for name, _, _ in specs]
    ratios = []
    for name in dict.fromkeys(names):
        rows = [i for i, n in enumerate(names) if n == name]
        shop = setting(specs[rows[0]][0])
        floor = 0.01 * shop.mean_ops * shop.mean_duration + 1e-9  # an episode where the rules are never late
        ratios.append((wt[rows].mean() + floor) / (reference[:, rows].mean(axis=1).min() + floor))
    return float(np.exp(np.mean(penalised(np.log(ratios), penalty))))


def learning_rate(config: EvolutionConfig, done: float) -> float:
    """The Adam step after ``done`` (0 to 1) of the run: constant, or a cosine down to ``final_learning_rate``."""
    if config.final_learning_rate is None:
        return config.learning_rate
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(done, 0.0), 1.0)))
    return config.final_learning_rate + (config.learning_rate - config.final_learning_rate) * cosine


def generation_step(state: RunState, config: EvolutionConfig, evaluate: Evaluator, done: float = 0.0) -> float:
    """One ES generation: perturb, run on shared streams, step Adam (``done``: the share of the run
    behind, for the step's schedule). Returns the centre's fitness."""
    rng = np.random.default_rng((config.seed, state.generation))  # resumable: generation g always draws the same
    specs = []
    for _ in range(config.streams):
        s = training_setting(config, rng)
        specs.append((s, int(rng.integers(2**31)), "train"))
    reference = rule_tardiness(specs, REFERENCE_RULES[config.reference]).min(axis=0)
    shops = [setting(name) for name, _, _ in specs]
    floor = np.array([0.01 * shop.mean_ops * shop.mean_duration for shop in shops])
    noise = rng.standard_normal((config.pairs, len(state.theta)))
    scaled = config.sigma * noise * state.scales  # the search runs in per-feature standard units
    networks = np.concatenate([state.theta[None, :], state.theta + scaled, state.theta - scaled])
    wt = evaluate(networks, config.hidden, specs)
    if config.shop:  # one shop: the ratio of the means over the streams, as its validation and test read it
        ratios = log_ratio(wt.sum(axis=1, keepdims=True), reference.sum(), floor.sum())
    else:  # a mix: every shop counts alike, whatever its scale
        ratios = log_ratio(wt, reference, floor)
    fitness = penalised(ratios, config.loss_penalty).mean(axis=1)
    ranks = np.argsort(np.argsort(fitness[1:])) / (2 * config.pairs - 1) - 0.5  # centred ranks, lower is better
    gradient = ((ranks[: config.pairs] - ranks[config.pairs :])[:, None] * noise).sum(0) / (config.pairs * config.sigma)
    state.generation += 1
    beta1, beta2, t = 0.9, 0.999, state.generation
    state.m = beta1 * state.m + (1 - beta1) * gradient
    state.v = beta2 * state.v + (1 - beta2) * gradient**2
    step = learning_rate(config, done) * (state.m / (1 - beta1**t)) / (np.sqrt(state.v / (1 - beta2**t)) + 1e-8)
    state.theta = state.theta - step * state.scales
    return float(fitness[0])


def parameter_scales(hidden: int, seed: int = 0, config: EvolutionConfig | None = None) -> np.ndarray:
    """How far to move each parameter per unit of the search: 1 / the spread of the feature it
    weighs (measured on the allowed jobs of ATC-dispatched training streams), so a step changes
    every feature's share of the score alike; 0 for the bias and for columns constant among
    allowed jobs (they cannot change a choice)."""
    from sched_env.dynamic import BatchDynamicJobShopEnv

    rng = np.random.default_rng((seed, 7))
    config = config or EvolutionConfig()
    scenarios = [training_setting(config, rng).scaled(100, 300).scenario(int(rng.integers(2**31)), "train")
                 for _ in range(4)]  # fmt: skip
    batch = BatchDynamicJobShopEnv(len(scenarios), scenarios, max_jobs=320)
    obs, _ = batch.reset(options={"scenarios": scenarios})
    rows, pair_rows, finished = [], [], np.zeros(len(scenarios), dtype=bool)
    while not finished.all():
        if "pairs" in obs:  # a flexible shop: the pair mask, per job and machine
            allowed = obs["action_mask"][:, : batch.layout.J * batch.layout.M].reshape(obs["pairs"].shape[:3])
            rows.append(obs["jobs"][allowed.any(-1)])
            pair_rows.append(obs["pairs"][allowed > 0])
        else:
            rows.append(obs["jobs"][obs["action_mask"] > 0])
        obs, _, done, _, _ = batch.step(batch.rule_choices(K.RULE.atc))
        finished |= done
    observed = np.concatenate(rows)
    spread = observed.std(axis=0)
    spread[FJ:] = 0.0  # the context columns are the same for every job of a decision: alone they choose nothing
    scales = np.ones(n_parameters(hidden, config.context, config.picks_machines))
    skip = F * hidden + 2 * hidden
    scales[skip : skip + F] = np.where(spread > 1e-3, 1.0 / np.maximum(spread, 0.05), 0.0)
    scales[skip + F] = 0.0
    if config.context:  # a gate weighs the product of a job column and a context column
        terms = (observed[:, :FJ, None] * observed[:, None, FJ:]).std(axis=0)
        usable = (spread[:FJ, None] > 1e-3) & (terms > 1e-3)
        scales[n_parameters(hidden) : n_parameters(hidden, True)] = np.where(usable, 1.0 / np.maximum(terms, 0.05),
                                                                            0.0).ravel()  # fmt: skip
    elif config.picks_machines:  # the gates a pair network carries stay 0
        scales[n_parameters(hidden) : n_parameters(hidden, True)] = 0.0
    if config.picks_machines:  # the pair weights, in units of their features' spread
        spread = np.concatenate(pair_rows).std(axis=0) if pair_rows else np.ones(P)
        scales[-P:] = 1.0 / np.maximum(spread, 0.05)
    if config.early_only or config.drain_only:  # every parameter but those gates stays where it started
        searched = np.zeros((FJ, C), dtype=bool)
        searched[:, K.DF.shop_early - FJ] = config.early_only
        searched[:, K.DF.shop_draining - FJ] = config.drain_only
        keep = np.ones_like(scales, dtype=bool)
        keep[n_parameters(hidden) : n_parameters(hidden, True)] = ~searched.ravel()
        scales[keep] = 0.0
    return scales


def export_best(state: RunState, config: EvolutionConfig, out: Path) -> Path:
    info = {"config": {"algo": "evolution-strategies", **asdict(config)}, "env_options": {"objective": "total_weighted_tardiness"},
            "checkpoint": "checkpoint.npz", "generation": state.generation, "validation_score": state.best_score}  # fmt: skip
    return export_onnx(state.best_theta if state.best_theta is not None else state.theta, config.hidden,
                       out / "policy.onnx", info)  # fmt: skip


def train(config: EvolutionConfig, out: str | Path, *, resume: bool = False, ray_address: str | None = None,
          say=print) -> Path:  # fmt: skip
    """Run (or continue) an ES run in ``out``: ``checkpoint.npz`` every ``validate_every``
    generations, ``progress.csv`` (generation, minutes, train fitness, validation ratio to
    ATC), ``policy.onnx`` (the best validated network). Returns the ONNX path."""
    from sched_env.parallel import TaskPool

    out = Path(out)
    checkpoint = out / "checkpoint.npz"
    minutes, generations = config.minutes, config.generations
    if resume:
        state, config = RunState.load(checkpoint)
        config.minutes, config.generations = minutes, generations  # this call's budget and the run's length
    else:
        config.check()
        out.mkdir(parents=True, exist_ok=True)
        if config.shop:  # the run keeps its own copy of the spec it trains on
            config.shop = str(shop_spec(config.shop).save(out / "shop.json").resolve())
        theta = initial_parameters(config.hidden, np.random.default_rng(config.seed), config.start, config.context,
                                   config.picks_machines)  # fmt: skip
        scales = parameter_scales(config.hidden, config.seed, config)
        state = RunState(theta, np.zeros_like(theta), np.zeros_like(theta), scales=scales)
    specs = validation_specs(config.validation_seeds, tuple(config.validation_length), config.shop, config.mix)
    reference = rule_tardiness(specs, REFERENCE_RULES[config.reference])
    started = time.perf_counter()
    progress = out / "progress.csv"
    new_file = not progress.exists()
    pool = TaskPool(parallel=2, ray_address=ray_address) if ray_address else None
    with open(progress, "a", newline="") as handle, pool or contextlib.nullcontext():
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["generation", "minutes", "train_log_ratio", "validation_ratio"])
        evaluate = Evaluator(pool, chunks=8)
        base = state.minutes

        def validate() -> None:  # keep the best network, checkpoint, log
            ratio = validation_score(evaluate, state.theta, config.hidden, specs, reference, config.loss_penalty)
            if ratio < state.best_score:
                state.best_score, state.best_theta = ratio, state.theta.copy()
            state.save(checkpoint, config)
            writer.writerow([state.generation, round(state.minutes, 2), "", round(ratio, 4)])
            handle.flush()
            say(f"generation {state.generation} ({state.minutes:.1f} min): validation {ratio:.4f} x {config.reference}"
                f" (best {state.best_score:.4f})")  # fmt: skip

        try:
            while True:
                elapsed = (time.perf_counter() - started) / 60
                state.minutes = base + elapsed
                last = elapsed >= minutes or state.generation >= config.generations
                if last or state.generation % config.validate_every == 0:  # the last generation is always validated
                    validate()
                if last:
                    break
                done = max(state.generation / config.generations, state.minutes / (base + minutes))
                fitness = generation_step(state, config, evaluate, done)
                writer.writerow([state.generation, round(base + (time.perf_counter() - started) / 60, 2),
                                 round(fitness, 4), ""])  # fmt: skip
        except KeyboardInterrupt:  # Ctrl-C: the last whole generation is kept, the best network exported
            state.minutes = base + (time.perf_counter() - started) / 60
            state.save(checkpoint, config)
            path = export_best(state, config, out)
            raise EvolutionInterruptedError(
                f"interrupted at generation {state.generation}; saved {checkpoint} and the best network so far as"
                f" {path}. Continue with: sched-env evolve --resume {out}"
            ) from None
    return export_best(state, config, out)


class EvolutionInterruptedError(SchedEnvError):
    """Ctrl-C stopped a run after checkpointing it (the command exits with 130)."""

    interrupted = True
