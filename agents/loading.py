"""Load a trained policy: an SB3 zip (torch) or its ONNX export (ONNX Runtime only), or a
shipped one, as a :class:`LoadedPolicy` that scores observations.

    from agents.loading import load_policy
    policy = load_policy()                 # the shipped static-shop policy (ONNX if available)
    policy = load_policy(kind="dynamic")   # the shipped dynamic-shop policy
    policy = load_policy(kind="flexible")  # the shipped (job, machine) pair policy
    policy = load_policy(kind="dynamic-flexible")  # the pair policy of running flexible shops
    policy = load_policy("runs/static/best.zip")
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instances import SchedEnvError
from sched_env import compiled as K

MODELS = Path(__file__).resolve().parent / "models"
#: The shipped models: kind -> file stem in ``agents/models``.
SHIPPED = {"static": "static", "dynamic": "dynamic", "flexible": "flexible", "dynamic-flexible": "dynamic_flexible"}
#: Dynamic-shop models of older observations read the leading columns of today's: the per-job ones
#: (before the context columns), or those and the first 6 context columns (before ``shop_early``), or
#: the first 7 (before ``shop_draining``).
OLDER_DYNAMIC_FEATURES = (K.N_DYNAMIC_JOB_FEATURES, K.DF.shop_early, K.DF.shop_draining)
KIND_OF_FEATURES = {K.N_FEATURES: "static", K.N_DYNAMIC_FEATURES: "dynamic",
                    **dict.fromkeys(OLDER_DYNAMIC_FEATURES, "dynamic")}  # fmt: skip

#: ``score(jobs, mask)``, or ``score(jobs, mask, pairs)`` for a pair policy.
Scorer = Callable[..., np.ndarray]
#: The logit of a masked action (the value the networks and the exported graphs use).
MASKED_LOGIT = -1e8


class PolicyLoadError(SchedEnvError):
    """A policy file that is missing, unreadable or not a sched-env policy."""


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy ready to score observations: ``score(jobs (B, J, F) float32, mask (B, A)) ->
    masked logits (B, A)``, from torch or ONNX Runtime. ``kind`` is ``static`` (``JobShop-v0``'s
    features) or ``dynamic`` (``DynamicJobShop-v0``'s); ``env_options`` are
    the env options it was trained under (placement, action set, objective)."""

    name: str
    path: Path
    kind: str
    backend: str
    n_features: int
    sha256: str
    config: dict[str, Any]
    env_options: dict[str, Any]
    score: Scorer = dataclasses.field(repr=False)
    #: (hidden units, flat parameters) when the model is a priority network (``agents.evolve``):
    #: then the compiled kernels can run it too (``baselines.rules.dispatch_dynamic_network``).
    network: tuple[int, np.ndarray] | None = dataclasses.field(default=None, repr=False)
    #: Whether it scores (job, machine) pairs (``score(jobs, mask, pairs)``): the policy of
    #: flexible shops, which plans classic ones through pair actions too.
    pairs: bool = False

    @property
    def waits(self) -> bool:
        """Whether it was trained with the dynamic shop's wait action (its last logit)."""
        return bool(self.env_options.get("allow_wait", False))

    def describe(self) -> dict[str, Any]:
        """What /v1/model reports: file names, not paths (a server does not reveal its layout, nor the
        training machine's: a recipe's start network or shop spec is named by its file name alone)."""
        config = {key: Path(value).name if isinstance(value, str) and ("/" in value or "\\" in value) else value
                  for key, value in self.config.items()}  # fmt: skip
        return {"name": self.name, "file": Path(self.path).name, "kind": self.kind, "backend": self.backend,
                "n_features": self.n_features, "sha256": self.sha256, "config": config,
                "env_options": self.env_options}  # fmt: skip


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_path(kind: str, backend: str = "auto") -> Path:
    """The shipped model file of ``kind`` (``.onnx`` when ONNX Runtime is installed, else ``.zip``)."""
    if kind not in SHIPPED:
        raise PolicyLoadError(f"no shipped policy {kind!r}; the shipped ones are {', '.join(SHIPPED)}")
    stem = MODELS / SHIPPED[kind]
    onnx, zip_ = stem.with_suffix(".onnx"), stem.with_suffix(".zip")
    if backend == "onnx" or not zip_.exists() or (backend == "auto" and _has_onnxruntime() and onnx.exists()):
        return onnx  # the dynamic-shop policy ships as ONNX only (a priority network, no torch)
    return zip_


#: A registered model's name: a file stem, never a path.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class ModelFolder:
    """A folder of model files a server reads (``sched-env serve --models DIR``): ``NAME.onnx`` (or
    ``NAME.zip``) there is ``policy@NAME``. Looked up at each use, so a file copied in while the
    server runs is usable at once, and a replaced one is loaded again (cached per file version)."""

    path: Path

    def names(self) -> list[str]:
        return sorted(
            {f.stem for f in self.path.glob("*") if f.suffix in (".onnx", ".zip") and MODEL_NAME.match(f.stem)}
        )

    def load(self, name: str) -> LoadedPolicy:
        """The registered model ``name`` (ONNX first); a name is never read as a path."""
        if name in SHIPPED:
            return load_policy(kind=name)
        if not MODEL_NAME.match(name):
            raise PolicyLoadError(f"{name!r} is not a model name (letters, digits, '_' and '-'; no path)")
        for suffix in (".onnx", ".zip") if _has_onnxruntime() else (".zip", ".onnx"):
            file = self.path / f"{name}{suffix}"
            if file.is_file():
                return load_policy(file)
        known = ", ".join([*SHIPPED, *self.names()])
        raise PolicyLoadError(f"no model {name!r} is registered on this server; the models: {known} (copy"
                              f" {name}.onnx into the server's models folder to register one)")  # fmt: skip


def read_columns(n_features: int) -> Callable[[np.ndarray], np.ndarray]:
    """What a model over ``n_features`` columns reads of an observation: all of it, or, for a
    dynamic-shop model of an older observation, the columns that lead today's."""
    if n_features in OLDER_DYNAMIC_FEATURES:
        return lambda jobs: jobs[..., :n_features] if jobs.shape[-1] == K.N_DYNAMIC_FEATURES else jobs
    return lambda jobs: jobs


def current_network(hidden: int, parameters: np.ndarray, n_features: int) -> np.ndarray:
    """A priority network's flat parameters in today's layout: one made over fewer columns
    (``OLDER_DYNAMIC_FEATURES``) gets zero weights and zero gates on the new ones, so it scores alike."""
    if n_features == K.N_DYNAMIC_FEATURES:
        return parameters
    old, new, H, FJ = n_features, K.N_DYNAMIC_FEATURES, hidden, K.N_DYNAMIC_JOB_FEATURES
    old_context, base = old - FJ, old * H + 2 * H + old + 1
    # the layouts, as priority_network_sizes orders them: 0 plain, 1 with gates, 2 with pair weights too
    sizes = {base: 0} | ({base + FJ * old_context: 1, base + FJ * old_context + K.N_PAIR_FEATURES: 2}
                         if old_context else {})  # fmt: skip
    layout = sizes.get(parameters.shape[0])
    if old not in OLDER_DYNAMIC_FEATURES or layout is None:
        raise PolicyLoadError(f"a priority network over {old} features with {H} hidden units has"
                              f" {' or '.join(map(str, sizes))} parameters, not {parameters.shape[0]}")  # fmt: skip
    padded = np.zeros(K.priority_network_sizes(H)[layout])
    padded[: old * H] = parameters[: old * H]  # W1's rows: the new columns' rows stay 0
    padded[new * H : new * H + 2 * H] = parameters[old * H : old * H + 2 * H]  # b1, w2
    padded[new * H + 2 * H : new * H + 2 * H + old] = parameters[old * H + 2 * H : old * H + 2 * H + old]  # skip
    padded[new * H + 2 * H + new] = parameters[base - 1]  # bias
    new_base = new * H + 2 * H + new + 1
    if layout > 0:  # the gates (FJ x context): the new context columns' gates stay 0
        gates = parameters[base : base + FJ * old_context].reshape(FJ, old_context)
        padded[new_base : new_base + FJ * K.N_DYNAMIC_CONTEXT].reshape(FJ, K.N_DYNAMIC_CONTEXT)[:, :old_context] = gates
    if layout == 2:
        padded[-K.N_PAIR_FEATURES :] = parameters[-K.N_PAIR_FEATURES :]
    return padded


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_policy(path: str | Path | None = None, *, kind: str = "static", backend: str = "auto") -> LoadedPolicy:
    """Load a policy: an SB3 zip (needs torch) or an exported ``.onnx`` file (needs only
    onnxruntime); ``None`` (or ``"static"`` / ``"dynamic"``) loads a shipped model. Loaded
    models are cached per file, so deciders built again do not load again."""
    if backend not in ("auto", "torch", "onnx"):
        raise PolicyLoadError(f"backend must be auto, torch or onnx, got {backend!r}")
    if path is None or str(path) in SHIPPED:
        path = shipped_path(kind if path is None else str(path), backend)
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        hint = " (train one with `sched-env train`, or use the shipped models: policy@static, policy@dynamic)"
        raise PolicyLoadError(f"policy file {path} does not exist{hint}")
    if backend == "torch" and path.suffix == ".onnx":
        raise PolicyLoadError(f"{path} is an ONNX file; load the SB3 .zip for the torch backend")
    return _load_cached(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, _mtime: int) -> LoadedPolicy:
    file = Path(path)
    if file.suffix == ".onnx":
        return _load_onnx(file)
    return _load_zip(file)


def _load_zip(path: Path) -> LoadedPolicy:
    try:
        import torch
        from sb3_contrib import MaskablePPO
    except ImportError:
        raise PolicyLoadError(
            f"loading {path.name} needs torch and sb3-contrib (pip install 'sched-env[rl]'), or load its .onnx export"
        ) from None
    try:
        model = MaskablePPO.load(path, device="cpu")
    except Exception as error:  # a zip of another kind, truncated, or not a zip at all
        raise PolicyLoadError(f"{path} is not a readable sched-env policy ({type(error).__name__}: {error})") from None
    policy = model.policy
    if not hasattr(policy, "scores"):
        raise PolicyLoadError(f"{path} holds a {type(policy).__name__}, not sched-env's JobShopPolicy")
    policy.set_training_mode(False)
    meta = getattr(model, "sched_env", None) or {}
    n_features = int(policy.observation_space["jobs"].shape[-1])

    columns = read_columns(n_features)

    def score(jobs: np.ndarray, mask: np.ndarray, pairs: np.ndarray | None = None) -> np.ndarray:
        jobs = columns(jobs)
        with torch.inference_mode():
            extra = () if pairs is None else (torch.as_tensor(pairs),)
            return policy.scores(torch.as_tensor(jobs), torch.as_tensor(mask, dtype=torch.float32), *extra).numpy()

    waits = space_waits(policy.observation_space)
    options = {**meta.get("env_options", {}), **({"allow_wait": True} if waits else {})}
    return LoadedPolicy(
        path.stem, path, _kind(n_features, path, policy.pairs), "torch", n_features, file_sha256(path),
        meta.get("config", {}), options, score, pairs=policy.pairs,
    )  # fmt: skip


def _load_onnx(path: Path) -> LoadedPolicy:
    try:
        import onnxruntime as ort
    except ImportError:
        raise PolicyLoadError(f"loading {path.name} needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one decision at a time is latency-bound; threads only add overhead
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise PolicyLoadError(f"{path} is not a readable ONNX policy ({type(error).__name__}: {error})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "sched_env" not in meta:
        raise PolicyLoadError(f"{path} is an ONNX model but not one exported by `sched-env export-onnx`")
    info = json.loads(meta["sched_env"])
    n_features = int(info["n_features"])
    pairs = bool(info.get("pairs", False))
    columns = read_columns(n_features)

    def score(jobs: np.ndarray, mask: np.ndarray, pair_features: np.ndarray | None = None) -> np.ndarray:
        feeds = {
            "jobs": np.ascontiguousarray(columns(jobs), dtype=np.float32),
            "mask": np.asarray(mask, dtype=np.float32),
        }
        if pairs:
            if pair_features is None:
                raise PolicyLoadError(f"{path.name} scores (job, machine) pairs: it needs the observation's 'pairs'")
            feeds["pairs"] = np.ascontiguousarray(pair_features, dtype=np.float32)
        return session.run(["logits"], feeds)[0]

    network = None
    if "priority_network" in info:
        spec = info["priority_network"]
        hidden = int(spec["hidden"])
        network = (hidden, current_network(hidden, np.asarray(spec["parameters"], dtype=np.float64), n_features))
    return LoadedPolicy(
        path.stem, path, _kind(n_features, path, pairs), "onnx", n_features, file_sha256(path), info.get("config", {}),
        info.get("env_options", {}), score, network, pairs,
    )  # fmt: skip


def space_waits(space) -> bool:
    """Whether a model's observation space has the dynamic shop's wait action (its mask's extra entry)."""
    from sched_env.dynamic import offers_wait

    return offers_wait(space["jobs"].shape[0], space["action_mask"].shape[0])


def _kind(n_features: int, path: Path, pairs: bool = False) -> str:
    """``static`` or ``dynamic`` by the job features; a static-shop pair policy is ``flexible``."""
    if pairs and n_features == K.N_FEATURES:
        return "flexible"
    if n_features not in KIND_OF_FEATURES:
        raise PolicyLoadError(
            f"{path}: a policy over {n_features} features fits neither sched-env shop ({K.N_FEATURES} or"
            f" {K.N_DYNAMIC_FEATURES}); it was trained on an older observation: train or export it again"
        )
    return KIND_OF_FEATURES[n_features]
