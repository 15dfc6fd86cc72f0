"""Where a result came from: the commit, the package versions and the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def write_report(out: str | Path, report: dict, markdown: str) -> None:
    """A benchmark's result as ``out``.json (the figures) and ``out``.md (the table), folders made."""
    import json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown)


def git_commit() -> str:
    """Short hash of the checkout's HEAD ('unknown' outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    versions = {}
    for package in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def machine_description() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


def report_header(title: str, module: str, argv: list[str] | None) -> list[str]:
    """A result file's first lines: its title, the command that made it (``python -m MODULE ...``),
    the commit and the machine."""
    import sys

    command = f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_description()
    return [f"# {title}", "", f"Command: `{command}`  ",
            f"Commit: {git_commit()}, machine: {machine['cpu']} ({machine['cores']} cores).", ""]  # fmt: skip
