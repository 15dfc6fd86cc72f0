"""``sched-env instances list|show``: the benchmark catalogue with sizes and best-known bounds."""

from __future__ import annotations

import argparse
import json

from experiments.cli.common import DIR_HELP, UserError, existing_dir, load_instance


def add_commands(sub) -> None:
    p = sub.add_parser("instances", help="list or show benchmark instances")
    isub = p.add_subparsers(dest="instances_command", required=True, metavar="ACTION")
    q = isub.add_parser("list", help="list the catalogue with sizes and best-known bounds")
    q.add_argument("--family", help="only this family (ta, ft, la, abz, orb, swv, yn, dmu; flexible: mk,"
                   " hurink_edata, hurink_rdata, hurink_vdata, kacem, mfjs, bv, sd1)")  # fmt: skip
    q.add_argument("--dir", type=existing_dir, help=DIR_HELP)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=run_list)
    q = isub.add_parser("show", help="show one instance, its bounds and data")
    q.add_argument("name", help="catalogue name (ta01) or instance file")
    q.add_argument("--dir", type=existing_dir, help=DIR_HELP)
    q.add_argument("--json", action="store_true", help="print JSON: jobs, machines, bounds")
    q.set_defaults(func=run_show)


def _rows(family: str | None, directory: str | None) -> list[tuple[str, ...]]:
    import instances

    rows = []
    for name in instances.names(family, directory=directory):
        entry = instances.entry(name, directory=directory)
        b = entry.bounds
        rows.append((
            name, entry.family, f"{entry.n_jobs}x{entry.n_machines}", "" if b is None else str(b.lower),
            "" if b is None else str(b.upper), "" if b is None or b.optimum is None else str(b.optimum),
            entry.source if entry.source in ("generated", "bundled", "missing") else "file",
        ))  # fmt: skip
    return rows


def run_list(args: argparse.Namespace) -> int:
    import instances

    if args.family is not None and args.family.lower() not in instances.FAMILIES:
        raise UserError(f"--family {args.family}: no such family; choose one of {', '.join(instances.FAMILIES)}")
    rows = _rows(args.family, args.dir)
    if args.json:
        keys = ("name", "family", "size", "lower_bound", "upper_bound", "optimum", "data")
        print(json.dumps([dict(zip(keys, row)) for row in rows], indent=1))
        return 0
    header = ("name", "family", "size", "lower", "upper", "optimum", "data")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    missing = sum(r[-1] == "missing" for r in rows)
    hint = "; {} known by name only (set SCHED_ENV_INSTANCES or --dir to a folder of JSPLIB files to load them)"
    print(f"{len(rows)} instances" + (hint.format(missing) if missing else ""))
    return 0


def run_show(args: argparse.Namespace) -> int:
    import instances

    instance = load_instance(args.name, args.dir)
    try:
        bounds = instances.bounds(instance.name)
    except instances.UnknownInstanceError:
        bounds = None
    if args.json:
        data = instance.to_dict()
        data["simple_lower_bound"] = instance.simple_lower_bound()
        data["bounds"] = None if bounds is None else {
            "lower_bound": bounds.lower, "upper_bound": bounds.upper, "optimum": bounds.optimum
        }  # fmt: skip
        data["published"] = instances.published(instance.name)
        print(json.dumps(data))
        return 0
    flexible = f", {instance.flexibility:.2f} machines per operation" if instance.is_flexible else ""
    print(
        f"{instance.name}: {instance.n_jobs} jobs x {instance.n_machines} machines, {instance.n_operations} operations"
        + flexible
    )
    if bounds is not None:
        optimum = bounds.optimum if bounds.optimum is not None else "open"
        print(f"bounds: lower {bounds.lower}, upper (best known) {bounds.upper}, optimum {optimum}")
    for key, value in instances.published(instance.name).items():
        print(f"published: {key} {value:g}")
    print(f"simple lower bound (longest job / busiest machine): {instance.simple_lower_bound()}")
    print(instances.format_instance(instance, "fjs" if instance.is_flexible else "jsplib"), end="")
    return 0
