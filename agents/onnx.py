"""ONNX export of a trained policy: ``sched-env export-onnx CHECKPOINT --out policy.onnx``.

The graph takes ``jobs`` (batch, jobs, features) float32 and ``mask`` (batch, actions) float32
(a pair policy also ``pairs`` (batch, jobs, machines, 3), its actions being ``job * machines +
machine``) and returns ``logits`` (batch, actions) with the masking inside the graph (masked actions at
-1e8, as sb3-contrib does), so a caller needs only onnxruntime and numpy: the argmax is the
greedy action. Batch and job axes are dynamic. The file carries its provenance in the ONNX
metadata (``sched_env``: features, kind, training config, env options, the checkpoint's hash),
which :func:`agents.loading.load_policy` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agents.loading import PolicyLoadError, file_sha256, space_waits
from sched_env import compiled as K

OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path, *, opset: int = OPSET) -> Path:
    """Export the policy of an SB3 checkpoint (``.zip``) to ``out``; returns the path."""
    import onnx
    import torch
    from sb3_contrib import MaskablePPO

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise PolicyLoadError(f"checkpoint {checkpoint} does not exist")
    try:
        model = MaskablePPO.load(checkpoint, device="cpu")
    except Exception as error:
        raise PolicyLoadError(f"{checkpoint} is not a readable policy checkpoint ({error})") from None
    policy = model.policy
    if not hasattr(policy, "net"):
        raise PolicyLoadError(f"{checkpoint} holds a {type(policy).__name__}; only JobShopPolicy models export")
    net = policy.net.eval()
    meta = getattr(model, "sched_env", None) or {}
    if hasattr(net, "theta"):  # a priority net: the evolved dispatcher's graph, which the kernels run too
        from agents.evolve import export_onnx as export_priority

        info = {"config": meta.get("config", {}), "env_options": meta.get("env_options", {}),
                "checkpoint": checkpoint.name}  # fmt: skip
        from agents.loading import current_network

        theta = np.asarray(net.theta(), dtype=np.float64)
        if net.n_features != K.N_DYNAMIC_FEATURES:  # trained on fewer columns: padded, reads alike
            theta = current_network(0, theta, net.n_features)
        return export_priority(theta, 0, out, info)
    n_features = net.n_features
    n_jobs = 7
    wait = space_waits(policy.observation_space)  # the wait action shows in the model's own spaces
    env_options = {**meta.get("env_options", {}), **({"allow_wait": True} if wait else {})}

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, jobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.net(jobs, mask, wait)[0]

    class PairLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, jobs: torch.Tensor, pairs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.net(jobs, pairs, mask)[0]

    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {"jobs": {0: "batch", 1: "jobs"}, "mask": {0: "batch", 1: "actions"}, "logits": {0: "batch", 1: "actions"}}
    pairs = bool(getattr(policy, "pairs", False))
    if pairs:
        n_machines = 3
        example = (torch.rand(2, n_jobs, n_features), torch.rand(2, n_jobs, n_machines, net.n_pair_features),
                   torch.ones(2, n_jobs * n_machines))  # fmt: skip
        module, inputs = PairLogits(), ["jobs", "pairs", "mask"]
        axes["pairs"] = {0: "batch", 1: "jobs", 2: "machines"}
    else:
        example = (torch.rand(2, n_jobs, n_features), torch.ones(2, n_jobs + wait))
        module, inputs = Logits(), ["jobs", "mask"]
    torch.onnx.export(module, example, str(out), input_names=inputs, output_names=["logits"], dynamic_axes=axes,
                      opset_version=opset, dynamo=False)  # fmt: skip
    graph = onnx.load(str(out))
    kind = "flexible" if pairs else meta.get("kind", "static" if n_features == 10 else "dynamic")
    info = {
        "n_features": n_features, "kind": kind, "pairs": pairs, "config": meta.get("config", {}),
        "env_options": env_options, "checkpoint": checkpoint.name, "checkpoint_sha256": file_sha256(checkpoint),
    }  # fmt: skip
    entry = graph.metadata_props.add()
    entry.key, entry.value = "sched_env", json.dumps(info)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    return out
