"""Where a shop's tardiness comes from, and how much of it better dispatching could win back.

Runs fresh validation streams of a shop spec (``sched-env fit-shop``; never a test stream) four
ways: as specified; with the duration noise's spread taken out (every real duration is its planned
one times the machine's mean real / planned multiple, so the load stays the same); without
breakdowns; and without either. Each way twice: with the dispatchers seeing the planned durations,
as in service, and clairvoyant, seeing the real ones. The streams are the same in every row (the
variants change only the draws' values), so the rows differ by the source alone. Rules and
trained networks are the columns.

    python -m experiments.tardiness_sources --shop my_shop.json --rules atc,wspt --networks runs/my-shop/policy.onnx
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from agents.evolve import scenario_tardiness, shop_spec
from agents.loading import load_policy
from experiments.provenance import report_header
from experiments.validate_networks import fresh_specs, rule_names, seed_range
from instances import SchedEnvError
from sched_env import compiled as K
from sched_env.events import Scenario
from sched_env.shop_spec import ShopSpec

RESULTS = Path(__file__).resolve().parent / "results"


def mean_multiple(quantiles) -> float:
    """The mean of the piecewise-linear distribution with these evenly spaced quantiles."""
    q = np.asarray(quantiles, dtype=float)
    return float((q[:-1] + q[1:]).mean() / 2)


def shop_variants(spec: ShopSpec) -> dict[str, ShopSpec]:
    """The shop as specified, without the noise's spread, without breakdowns, and without either."""
    steady = tuple((mean_multiple(q),) * 2 for q in spec.noise)
    never = (0.0,) * spec.machines
    return {
        "as specified": spec,
        "noise at its mean": replace(spec, noise=steady),
        "no breakdowns": replace(spec, mtbf=never, mttr=never),
        "neither": replace(spec, noise=steady, mtbf=never, mttr=never),
    }


def clairvoyant(scenario: Scenario) -> Scenario:
    """The same stream with the real durations shown to the dispatchers as the planned ones."""
    jobs = scenario.jobs.replace(durations=scenario.realized_durations)
    return Scenario(jobs, realized_durations=scenario.realized_durations, downtimes=scenario.downtimes,
                    interruption=scenario.interruption, name=scenario.name, metadata=scenario.metadata)  # fmt: skip


def total_tardiness(spec: ShopSpec, scenarios: list[Scenario], dispatcher: str | tuple[int, np.ndarray]) -> float:
    """Summed mean weighted tardiness over the streams of a rule (by name) or a network ``(hidden, theta)``."""
    settings, n = [spec] * len(scenarios), len(scenarios)
    if isinstance(dispatcher, str):
        return float(scenario_tardiness(settings, scenarios, rules=[getattr(K.RULE, dispatcher)] * n).sum())
    theta = np.asarray(dispatcher[1], dtype=np.float64)
    return float(scenario_tardiness(settings, scenarios, params=np.repeat(theta[None, :], n, axis=0),
                                    hidden=dispatcher[0]).sum())  # fmt: skip


def sources_table(spec: ShopSpec, seeds: list[int], dispatchers: dict[str, str | tuple]) -> list[dict]:
    """One row per (variant, what the dispatchers see): each dispatcher's summed mean weighted tardiness."""
    rows = []
    for variant, shop in shop_variants(spec).items():
        planned = [shop.scenario(seed, "validation") for seed in seeds]
        for sight, scenarios in (("planned", planned), ("real (clairvoyant)", [clairvoyant(s) for s in planned])):
            totals = {name: total_tardiness(shop, scenarios, d) for name, d in dispatchers.items()}
            rows.append({"variant": variant, "sees": sight, **totals})
            print(variant, sight, {k: round(v, 1) for k, v in totals.items()}, flush=True)
    return rows


def markdown(rows: list[dict], names: list[str], reference: str, streams: int) -> list[str]:
    base = rows[0][reference]
    lines = [
        f"{streams} fresh validation streams of the shop (no test stream). Each cell: the dispatcher's total"
        f" weighted tardiness over the streams (the sum of the streams' means) as a share of `{reference}`'s on the"
        f" shop as specified with planned durations ({base:.1f}); in brackets, the ratio to `{reference}` in the"
        " same row.",
        "",
        "| shop | dispatchers see | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for row in rows:
        cells = [f"{row[n] / base:.3f} ({row[n] / row[reference]:.3f})" if row[reference] > 0 else "-" for n in names]
        lines.append(f"| {row['variant']} | {row['sees']} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shop", required=True, help="a shop spec (JSON, `sched-env fit-shop`)")
    parser.add_argument(
        "--rules", type=rule_names, default=("atc", "wspt"), help="rules, comma-separated (first: the reference)"
    )
    parser.add_argument("--networks", nargs="*", default=[], help="ONNX files of priority networks (sched-env evolve)")
    parser.add_argument(
        "--seeds",
        type=seed_range,
        default="2:4",
        help="validation seeds FIRST:LAST as in experiments.validate_networks",
    )
    parser.add_argument("--name", default="tardiness_sources")
    args = parser.parse_args(argv)
    dispatchers: dict[str, str | tuple] = {rule: rule for rule in args.rules}
    try:  # a missing or unreadable spec or model: its message, not a traceback
        spec = shop_spec(args.shop)
        dispatchers.update({path: load_policy(path, kind="dynamic").network for path in args.networks})
    except SchedEnvError as error:
        parser.error(str(error))
    if spec.flexible:
        parser.error(f"{args.shop} is a flexible shop; the clairvoyant runs need one machine per operation")
    seeds = [seed for _, seed, _ in fresh_specs("standard", *args.seeds, args.shop)]
    rows = sources_table(spec, seeds, dispatchers)
    lines = [
        *report_header("Where the shop's tardiness comes from", "experiments.tardiness_sources", argv),
        *markdown(rows, list(dispatchers), args.rules[0], len(seeds)),
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
