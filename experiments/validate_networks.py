"""Choose among trained dispatchers on fresh validation streams: more of them than a run validates on.

A run keeps the checkpoint best on its few validation streams, so the seeds' own scores carry that
selection's noise. This scores each network on the same generated validation settings with fresh
validation seeds (never a test seed, never the seeds the runs chose on) and writes the ranking to
``experiments/results/NAME.md``.

    python -m experiments.validate_networks experiments/results/evolve_context/seed*.onnx --mix wide --seeds 2:10
    python -m experiments.validate_networks runs/my-shop-*/policy.onnx --shop my_shop.json --seeds 2:10 --rules wspt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agents.config import EVOLUTION_MIXES
from agents.evolve import REFERENCE_RULES, Evaluator, rule_tardiness, validation_ratio, validation_specs
from agents.loading import load_policy
from experiments.provenance import report_header
from sched_env._names import RULE_FIELDS, RULE_NAMES

RESULTS = Path(__file__).resolve().parent / "results"
RULE_ROW = " (rule)"  # a --rules row's name: the rule's, then this


def fresh_specs(mix: str, first: int, last: int, shop: str | None = None) -> list[tuple]:
    """The mix's (or the shop spec's) validation streams with seeds ``first..last-1`` (a finite
    episode's and a shop's: as many more as a run validates on per seed)."""
    runs_used = validation_specs(first, mix=mix, shop=shop)  # a list: a shop spec is not hashable
    return [spec for spec in validation_specs(last, mix=mix, shop=shop) if spec not in runs_used]


def congestion_quarters(tardiness: dict[str, np.ndarray], reference: np.ndarray, name: str) -> list[str]:
    """Where on one shop a network gains: its ratio to the reference on each quarter of the streams,
    ranked by the reference's mean weighted tardiness (the most congested quarter carries most of it)."""
    quarters = np.array_split(np.argsort(reference, kind="stable"), 4)
    shares = [reference[q].sum() / max(reference.sum(), 1e-9) for q in quarters]
    labels = ("lightest", "second", "third", "most congested")
    return [
        "",
        f"Where they gain: each quarter of the streams, ranked by {name}'s mean weighted tardiness, with its share"
        f" of {name}'s total; ratio: the network's total weighted tardiness there over {name}'s.",
        "",
        "| network | " + " | ".join(f"{label} ({share:.0%})" for label, share in zip(labels, shares)) + " |",
        "|---|" + "---:|" * len(quarters),
        *[
            f"| {_label(path)} | " + " | ".join(_ratio(wt[q].sum(), reference[q].sum()) for q in quarters) + " |"
            for path, wt in sorted(tardiness.items())
        ],
    ]


def rule_names(text: str) -> tuple[str, ...]:
    """``--rules``: dispatching rules by name, comma-separated; an unknown one is refused with the list."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in RULE_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rule {', '.join(unknown)}; rules: {', '.join(RULE_NAMES)}")
    return names


def seed_range(text: str) -> tuple[int, int]:
    """``--seeds FIRST:LAST`` with 0 <= FIRST < LAST."""
    try:
        first, last = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are FIRST:LAST, e.g. 2:10, got {text!r}") from None
    if not 0 <= first < last:
        raise argparse.ArgumentTypeError(f"seeds FIRST:LAST need 0 <= FIRST < LAST, got {text!r}")
    return first, last


def _label(row: str) -> str:
    """A network's file in code style; a rule's row (``--rules``) as it is."""
    return row if row.endswith(RULE_ROW) else f"`{row}`"


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.3f}" if reference > 0 else ("1" if value == 0 else "late where it is never late")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="+", help="ONNX files of priority networks (sched-env evolve)")
    parser.add_argument("--mix", default="wide", choices=EVOLUTION_MIXES)
    parser.add_argument(
        "--reference",
        default="atc",
        choices=sorted(REFERENCE_RULES),
        help="atc, or best: the better of ATC and WSPT on each setting",
    )
    parser.add_argument(
        "--loss-penalty",
        type=float,
        default=0.0,
        help="a setting worse than the reference counts 1 + this times (as the run chose)",
    )
    parser.add_argument("--shop", help="a shop spec (JSON, `sched-env fit-shop`): its validation streams, not a mix's")
    parser.add_argument("--seeds", type=seed_range, default="2:10",
                        help="validation seeds FIRST:LAST (the runs chose on 0 and 1)")  # fmt: skip
    parser.add_argument("--rules", type=rule_names, default=(),
                        help="rules to score beside the networks, comma-separated (e.g. wspt,covert): a row each")  # fmt: skip
    parser.add_argument("--name", default="validate_networks")
    args = parser.parse_args(argv)
    first, last = args.seeds
    specs = fresh_specs(args.mix, first, last, args.shop)
    reference = rule_tardiness(specs, REFERENCE_RULES[args.reference])
    scores, tardiness = {}, {}
    for path in args.networks:
        hidden, theta = load_policy(path).network
        tardiness[path] = Evaluator()(theta[None, :], hidden, specs)[0]
        scores[path] = validation_ratio(tardiness[path], specs, reference, args.loss_penalty)
        print(f"{path}: {scores[path]:.4f} x {args.reference}", flush=True)
    rows = dict(scores)
    for rule in args.rules:  # the rules a network is measured against, as rows of their own
        tardiness[rule + RULE_ROW] = rule_tardiness(specs, (RULE_FIELDS[rule],))[0]
        rows[rule + RULE_ROW] = validation_ratio(tardiness[rule + RULE_ROW], specs, reference, args.loss_penalty)
    reference_words = "ATC" if args.reference == "atc" else "the better of ATC and WSPT on that setting"
    penalty_words = f"; a setting's loss counts {1 + args.loss_penalty:g} times" if args.loss_penalty else ""
    lines = [
        *report_header("Trained dispatchers on fresh validation streams", "experiments.validate_networks", argv),
        f"{len(specs)} validation streams of "
        + (f"the shop `{Path(args.shop).name}`" if args.shop else f"the `{args.mix}` mix's validation settings")
        + f", seeds {first}-{last - 1} (as many more for a finite episode or a shop as a run validates on):"
        " none is a test stream or a stream the runs chose their checkpoints on. Ratio: geometric mean over the"
        " settings of the network's mean weighted tardiness over"
        f" {reference_words}'s (plus 1 % of a job's mean work){penalty_words}.",
        "",
        f"| network | validation ratio to {args.reference} |",
        "|---|---:|",
        *[f"| {_label(path)} | {score:.4f} |" for path, score in sorted(rows.items(), key=lambda item: item[1])],
        "",
        f"Best: `{min(scores, key=scores.get)}`.",
        *(congestion_quarters(tardiness, reference.min(axis=0), args.reference) if args.shop else []),
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if np.isfinite(list(scores.values())).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
