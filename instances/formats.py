"""Readers and writers: JSPLIB/OR-Library text, Taillard's two-block text, Brandimarte's
flexible ``.fjs`` text, and JSON.

Every reader reports a malformed file as :class:`InvalidInstanceError` naming the file and
line; every writer's output reads back to an equal instance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from instances.errors import InvalidInstanceError
from instances.instance import JobShopInstance

PathLike = str | os.PathLike


class _Lines:
    """Numbered, non-blank, non-comment lines of a text, for readers that name the line at fault."""

    def __init__(self, text: str, source: str, comment: str | None) -> None:
        self.source = source
        self.items: list[tuple[int, str]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or (comment and stripped.startswith(comment)):
                continue
            self.items.append((number, stripped))
        self.position = 0
        self.last_line = len(text.splitlines())

    def error(self, line: int | None, message: str) -> InvalidInstanceError:
        where = f"{self.source}:{line}" if line else self.source
        return InvalidInstanceError(f"{where}: {message}")

    def next(self, expected: str) -> tuple[int, str]:
        if self.position >= len(self.items):
            raise self.error(self.last_line, f"file ends early: expected {expected}")
        item = self.items[self.position]
        self.position += 1
        return item

    def integers(self, expected: str, count: int | None = None) -> tuple[int, list[int]]:
        number, line = self.next(expected)
        values = []
        for token in line.split():
            try:
                values.append(int(token))
            except ValueError:
                raise self.error(number, f"{token!r} is not an integer ({expected})") from None
        if count is not None and len(values) != count:
            raise self.error(number, f"expected {count} integers ({expected}), found {len(values)}")
        return number, values

    def expect_end(self) -> None:
        if self.position < len(self.items):
            number, line = self.items[self.position]
            raise self.error(number, f"unexpected extra content {line[:40]!r} after the last job")


def _check_header(lines: _Lines, number: int, values: list[int]) -> tuple[int, int]:
    if len(values) < 2:
        raise lines.error(number, f"expected a header 'n_jobs n_machines', found {len(values)} integer(s)")
    n_jobs, n_machines = values[0], values[1]
    if n_jobs < 1 or n_machines < 1:
        raise lines.error(number, f"n_jobs and n_machines must be >= 1, got {n_jobs} and {n_machines}")
    return n_jobs, n_machines


def _build(lines: _Lines, machines, durations, n_machines, name, metadata, first_job_line) -> JobShopInstance:
    try:
        return JobShopInstance(machines, durations, n_machines=n_machines, name=name, metadata=metadata)
    except InvalidInstanceError as error:  # name the line of the job at fault
        message = str(error)
        if message.startswith("job "):
            job = int(message.split()[1])
            raise lines.error(first_job_line[job], message) from None
        raise lines.error(None, message) from None


# ---------------------------------------------------------------------------- JSPLIB
def parse_jsplib(text: str, *, name: str = "instance", source: str = "<text>") -> JobShopInstance:
    """Parse the JSPLIB / OR-Library format: '#' comments, 'n m', then one line per job of
    ``machine duration`` pairs (machines from 0)."""
    lines = _Lines(text, source, comment="#")
    if not lines.items:
        raise lines.error(None, "file is empty (no 'n_jobs n_machines' header)")
    number, header = lines.integers("the header 'n_jobs n_machines'")
    if len(header) != 2:
        raise lines.error(number, f"expected a header 'n_jobs n_machines', found {len(header)} integer(s)")
    n_jobs, n_machines = _check_header(lines, number, header)
    machines = np.empty((n_jobs, n_machines), dtype=np.int64)
    durations = np.empty((n_jobs, n_machines), dtype=np.int64)
    job_lines = []
    for job in range(n_jobs):
        number, values = lines.integers(f"job {job}: {n_machines} 'machine duration' pairs", count=2 * n_machines)
        job_lines.append(number)
        machines[job] = values[0::2]
        durations[job] = values[1::2]
    lines.expect_end()
    comments = [line.strip("# ").rstrip() for line in text.splitlines() if line.strip().startswith("#")]
    comments = [c for c in comments if c and set(c) != {"+"}]
    metadata = {"format": "jsplib"}
    if comments:
        metadata["comments"] = comments
    return _build(lines, machines, durations, n_machines, name, metadata, job_lines)


def format_jsplib(instance: JobShopInstance) -> str:
    """The instance in JSPLIB text (a '#' header with its name, then 'n m' and the jobs)."""
    _require_writable(instance, "JSPLIB")
    out = [f"# instance {instance.name}", f"{instance.n_jobs} {instance.n_machines}"]
    for job in range(instance.n_jobs):
        out.append(" ".join(f"{m} {d}" for m, d in instance.operations(job)))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- Taillard
def parse_taillard(text: str, *, name: str = "instance", source: str = "<text>") -> JobShopInstance:
    """Parse Taillard's format: an optional title line, 'n m [time_seed machine_seed ub lb]',
    a 'Times' block (n rows of m durations) and a 'Machines' block (machines from 1)."""
    lines = _Lines(text, source, comment="#")
    if not lines.items:
        raise lines.error(None, "file is empty (expected 'n m', 'Times' and 'Machines' blocks)")
    number, line = lines.items[0]
    if not line.split()[0].lstrip("-").isdigit():  # a title such as "Nb of jobs, Nb of Machines, ..."
        lines.position = 1
    number, header = lines.integers("the header 'n_jobs n_machines ...'")
    n_jobs, n_machines = _check_header(lines, number, header)
    blocks = {}
    job_lines: list[int] = []
    for block in ("Times", "Machines"):
        number, line = lines.next(f"the line '{block}'")
        if line.lower() != block.lower():
            raise lines.error(number, f"expected the line '{block}', found {line[:40]!r}")
        rows = []
        for job in range(n_jobs):
            number, values = lines.integers(f"{block} of job {job}: {n_machines} integers", count=n_machines)
            for op, value in enumerate(values):
                if block == "Machines" and not 1 <= value <= n_machines:
                    raise lines.error(
                        number,
                        f"job {job} operation {op}: machine {value} is out of range; Taillard numbers machines 1..{n_machines}",
                    )
                if block == "Times" and value < 0:
                    raise lines.error(
                        number, f"job {job} operation {op}: duration {value} is negative; durations must be >= 0"
                    )
            rows.append(values)
            if block == "Times":
                job_lines.append(number)
        blocks[block] = np.array(rows, dtype=np.int64)
    lines.expect_end()
    metadata: dict = {"format": "taillard"}
    if len(header) >= 4:
        metadata["time_seed"], metadata["machine_seed"] = header[2], header[3]
    return _build(lines, blocks["Machines"] - 1, blocks["Times"], n_machines, name, metadata, job_lines)


def format_taillard(instance: JobShopInstance) -> str:
    """The instance in Taillard's two-block text (machines written from 1)."""
    _require_writable(instance, "Taillard")
    header = f"{instance.n_jobs} {instance.n_machines}"
    if "time_seed" in instance.metadata and "machine_seed" in instance.metadata:
        header += f" {instance.metadata['time_seed']} {instance.metadata['machine_seed']}"
    out = ["Nb of jobs, Nb of Machines, Time seed, Machine seed", header, "Times"]
    out += [" ".join(str(int(d)) for d in row) for row in instance.durations]
    out.append("Machines")
    out += [" ".join(str(int(m) + 1) for m in row) for row in instance.machines]
    return "\n".join(out) + "\n"


def _require_writable(instance: JobShopInstance, fmt: str) -> None:
    if instance.is_flexible:
        raise InvalidInstanceError(
            f"{fmt} text has one machine per operation; {instance.name!r} is flexible: write it as .fjs or JSON"
        )
    if not np.all(instance.n_ops == instance.n_machines):
        raise InvalidInstanceError(
            f"{fmt} text needs every job to have n_machines={instance.n_machines} operations;"
            f" {instance.name!r} has jobs of {sorted(set(instance.n_ops.tolist()))} operations."
            " Write it as JSON instead (write_instance(..., 'x.json'))."
        )
    if any(getattr(instance, key) is not None for key in ("release_dates", "due_dates", "weights")):
        raise InvalidInstanceError(
            f"{fmt} text cannot hold release/due dates or weights; write {instance.name!r} as JSON instead"
        )


# ---------------------------------------------------------------------------- Brandimarte .fjs
def parse_fjs(text: str, *, name: str = "instance", source: str = "<text>") -> JobShopInstance:
    """Parse Brandimarte's flexible format (the one ``fjsplib`` reads): 'n_jobs n_machines
    [mean alternatives]', then per job one line: its operation count, then per operation the
    number k of machines that can run it and k pairs 'machine duration' (machines from 1)."""
    lines = _Lines(text, source, comment="#")
    if not lines.items:
        raise lines.error(None, "file is empty (no 'n_jobs n_machines' header)")
    number, line = lines.next("the header 'n_jobs n_machines [mean alternatives]'")
    tokens = line.split()
    try:
        header = [int(t) for t in tokens[:2]]
        [float(t) for t in tokens[2:3]]
    except ValueError:
        raise lines.error(
            number, f"expected a header 'n_jobs n_machines [mean alternatives]', found {line[:40]!r}"
        ) from None
    if len(tokens) not in (2, 3):
        raise lines.error(
            number, f"expected a header 'n_jobs n_machines [mean alternatives]', found {len(tokens)} numbers"
        )
    n_jobs, n_machines = _check_header(lines, number, header)
    jobs = []
    for job in range(n_jobs):
        number, values = lines.integers(f"job {job}: its operation count, then each operation's alternatives")
        jobs.append(_fjs_job(lines, number, values, job, n_machines))
    lines.expect_end()
    try:
        return JobShopInstance.from_alternatives(jobs, n_machines=n_machines, name=name, metadata={"format": "fjs"})
    except InvalidInstanceError as error:
        raise lines.error(None, str(error)) from None


def _fjs_job(lines: _Lines, number: int, values: list[int], job: int, n_machines: int) -> list[list[tuple[int, int]]]:
    """One ``.fjs`` job line as its operations' alternatives (machines from 0), or an error
    naming the line, job and operation."""
    if not values or values[0] < 1:
        raise lines.error(number, f"job {job}: the line must start with its number of operations (>= 1)")
    position, ops = 1, []
    for op in range(values[0]):
        where = f"job {job} operation {op}"
        if position >= len(values):
            raise lines.error(number, f"{where}: the line ends early (too few numbers for {values[0]} operations)")
        count = values[position]
        if count < 1:
            raise lines.error(
                number, f"{where}: it has {count} alternatives; every operation needs at least one machine"
            )
        pairs = values[position + 1 : position + 1 + 2 * count]
        if len(pairs) < 2 * count:
            raise lines.error(number, f"{where}: the line ends early (expected {count} 'machine duration' pairs)")
        alternatives, seen = [], set()
        for machine, duration in zip(pairs[0::2], pairs[1::2]):
            if not 1 <= machine <= n_machines:
                raise lines.error(
                    number, f"{where}: machine {machine} is out of range; .fjs numbers machines 1..{n_machines}"
                )
            if machine in seen:
                raise lines.error(number, f"{where}: machine {machine} is listed twice")
            if duration < 0:
                raise lines.error(number, f"{where}: duration {duration} is negative; durations must be >= 0")
            seen.add(machine)
            alternatives.append((machine - 1, duration))
        ops.append(alternatives)
        position += 1 + 2 * count
    if position != len(values):
        raise lines.error(number, f"job {job}: {len(values) - position} number(s) after its last operation")
    return ops


def format_fjs(instance: JobShopInstance) -> str:
    """The instance in Brandimarte's ``.fjs`` text (machines written from 1); a classic
    instance is written with one alternative per operation."""
    if any(getattr(instance, key) is not None for key in ("release_dates", "due_dates", "weights")):
        raise InvalidInstanceError(
            f".fjs text cannot hold release/due dates or weights; write {instance.name!r} as JSON instead"
        )
    out = [f"{instance.n_jobs} {instance.n_machines} {instance.flexibility:.2f}"]
    for job in range(instance.n_jobs):
        fields = [str(int(instance.n_ops[job]))]
        for op in range(int(instance.n_ops[job])):
            alternatives = instance.alternatives(job, op)
            fields.append(str(len(alternatives)))
            fields += [f"{machine + 1} {duration}" for machine, duration in alternatives]
        out.append(" ".join(fields))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- JSON
def parse_json(text: str, *, name: str | None = None, source: str = "<text>") -> JobShopInstance:
    """Parse the JSON form of :meth:`JobShopInstance.to_dict`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInstanceError(f"{source}:{error.lineno}: not valid JSON ({error.msg})") from None
    try:
        instance = JobShopInstance.from_dict(data)
    except InvalidInstanceError as error:
        raise InvalidInstanceError(f"{source}: {error}") from None
    except (TypeError, ValueError) as error:
        raise InvalidInstanceError(f"{source}: malformed instance object ({error})") from None
    if name is not None and "name" not in data:
        instance = instance.replace(name=name)
    return instance


# ---------------------------------------------------------------------------- files
FORMATS = ("jsplib", "taillard", "fjs", "json")


def detect_format(text: str, path: PathLike | None = None) -> str:
    """'json' for .json files or text starting with '{', 'fjs' for .fjs files, 'taillard' when
    a 'Times' line exists, else 'jsplib'."""
    if (path is not None and Path(path).suffix.lower() == ".json") or text.lstrip().startswith("{"):
        return "json"
    if path is not None and Path(path).suffix.lower() == ".fjs":
        return "fjs"
    if any(line.strip().lower() == "times" for line in text.splitlines()):
        return "taillard"
    return "jsplib"


def parse_instance(text: str, *, fmt: str | None = None, name: str = "instance", source: str = "<text>"):
    """Parse text in a given (or detected) format."""
    fmt = fmt or detect_format(text)
    if fmt == "jsplib":
        return parse_jsplib(text, name=name, source=source)
    if fmt == "taillard":
        return parse_taillard(text, name=name, source=source)
    if fmt == "fjs":
        return parse_fjs(text, name=name, source=source)
    if fmt == "json":
        return parse_json(text, name=name, source=source)
    raise InvalidInstanceError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_instance(path: PathLike, *, fmt: str | None = None, name: str | None = None) -> JobShopInstance:
    """Read an instance file; the format is detected unless given, the name defaults to the stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidInstanceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInstanceError(f"{path}: cannot read it as text ({error})") from None
    fmt = fmt or detect_format(text, path)
    return parse_instance(text, fmt=fmt, name=name or path.stem, source=str(path))


def format_instance(instance: JobShopInstance, fmt: str = "jsplib") -> str:
    if fmt == "jsplib":
        return format_jsplib(instance)
    if fmt == "taillard":
        return format_taillard(instance)
    if fmt == "fjs":
        return format_fjs(instance)
    if fmt == "json":
        return json.dumps(instance.to_dict(), indent=1) + "\n"
    raise InvalidInstanceError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_instance(instance: JobShopInstance, path: PathLike, fmt: str | None = None) -> Path:
    """Write an instance; the format defaults to JSON for '.json' paths, .fjs for '.fjs' paths and
    flexible instances, else JSPLIB."""
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = fmt or ("json" if suffix == ".json" else "fjs" if suffix == ".fjs" or instance.is_flexible else "jsplib")
    path.write_text(format_instance(instance, fmt))
    return path
